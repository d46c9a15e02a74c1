//! Durable files of a job's checkpoint folder, below the store and the shared-file
//! registry: writing and syncing, checking a file against what the metadata recorded,
//! reading metadata, and listing the `chk-<n>` folders.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::metadata::{Metadata, MetadataError};

/// A checkpoint's metadata file: its presence is what makes the checkpoint complete.
pub const METADATA: &str = "_metadata";

/// Why a checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("{what}: {error}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The I/O error.
        error: io::Error,
    },
    /// The metadata file is damaged.
    #[error("{path}: {error}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: MetadataError,
    },
    /// A state file is damaged or does not match its metadata.
    #[error("{path}: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

pub(super) fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> CheckpointError {
    let what = what.into();
    move |error| CheckpointError::Io { what, error }
}

/// Numbers of the `chk-<n>` folders in a job's checkpoint folder, ascending.
pub(super) fn ids(root: &Path) -> Result<Vec<u64>, CheckpointError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(format!("cannot list {}", root.display()))(e)),
    };
    let mut ids: Vec<u64> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The completed checkpoints in a job's checkpoint folder: number and folder.
pub(super) fn completed(root: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    Ok(ids(root)?
        .into_iter()
        .map(|id| (id, root.join(format!("chk-{id}"))))
        .filter(|(_, dir)| dir.join(METADATA).is_file())
        .collect())
}

/// Reads the metadata of the checkpoint in `dir`, checking it.
pub fn read_metadata(dir: &Path) -> Result<Metadata, CheckpointError> {
    let path = dir.join(METADATA);
    let bytes = fs::read(&path).map_err(io_error(format!("cannot read {}", path.display())))?;
    Metadata::decode(&bytes).map_err(|error| CheckpointError::Metadata { path, error })
}

/// Compares a file's `(size, CRC-32C)` with what the metadata recorded for it.
pub(super) fn check_recorded(
    path: &Path,
    (bytes, crc): (u64, u32),
    (expected_bytes, expected_crc): (u64, u32),
) -> Result<(), CheckpointError> {
    let reason = if bytes != expected_bytes {
        format!("size {bytes} differs from the {expected_bytes} bytes recorded")
    } else if crc != expected_crc {
        "checksum differs from the one recorded: the file is damaged".into()
    } else {
        return Ok(());
    };
    Err(CheckpointError::State {
        path: path.to_path_buf(),
        reason,
    })
}

/// Writes `bytes` to `path` and syncs the file.
pub fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Syncs a directory, so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
