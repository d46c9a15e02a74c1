//! The checkpoint directory of one job: writing state files and metadata durably,
//! finding the latest completed checkpoint, and deleting what is no longer retained.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::metadata::{CanonicalFile, Metadata, MetadataError, StateFile};
use super::shared::{SHARED, SharedFiles, Uploads};
use crate::state::snapshot::{Snapshot, SnapshotError, StateInfo};

const METADATA: &str = "_metadata";

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

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> CheckpointError {
    let what = what.into();
    move |error| CheckpointError::Io { what, error }
}

/// The checkpoints of one job: `<dir>/<job>/`. Clones share one registry of the
/// job's shared files.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    shared: Arc<SharedFiles>,
}

impl Store {
    /// The store of `job` under `dir`.
    pub fn new(dir: &Path, job: &str) -> Store {
        let root = dir.join(job);
        Store {
            shared: Arc::new(SharedFiles::new(&root)),
            root,
        }
    }

    /// The job's checkpoint folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of checkpoint `id`.
    pub fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("chk-{id}"))
    }

    /// Writes one subtask's encoded state (a snapshot file's bytes) into checkpoint `id`,
    /// durably.
    pub fn write_state(
        &self,
        id: u64,
        file: &str,
        bytes: &[u8],
    ) -> Result<StateFile, CheckpointError> {
        let dir = self.checkpoint_dir(id);
        fs::create_dir_all(&dir).map_err(io_error(format!("cannot create {}", dir.display())))?;
        let path = dir.join(file);
        write_synced(&path, bytes).map_err(io_error(format!("cannot write {}", path.display())))?;
        Ok(StateFile::Canonical(CanonicalFile {
            file: file.to_string(),
            bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
        }))
    }

    /// Writes one subtask's state into checkpoint `id` from a RocksDB checkpoint folder,
    /// copying only the SST files that `uploads` says are not in a retained checkpoint.
    pub fn write_incremental(
        &self,
        id: u64,
        name: &str,
        states: &[StateInfo],
        native: &Path,
        uploads: &mut Uploads,
    ) -> Result<StateFile, CheckpointError> {
        self.shared
            .write(&self.checkpoint_dir(id), id, name, states, native, uploads)
    }

    /// Completes checkpoint `metadata.checkpoint`: its metadata is written last and
    /// atomically (temp file, fsync, rename, directory fsync).
    pub fn complete(&self, metadata: &Metadata) -> Result<(), CheckpointError> {
        let dir = self.checkpoint_dir(metadata.checkpoint);
        fs::create_dir_all(&dir).map_err(io_error(format!("cannot create {}", dir.display())))?;
        let temp = dir.join(format!("{METADATA}.inprogress"));
        write_synced(&temp, &metadata.encode())
            .map_err(io_error(format!("cannot write {}", temp.display())))?;
        let path = dir.join(METADATA);
        fs::rename(&temp, &path).map_err(io_error(format!("cannot rename {}", temp.display())))?;
        sync_dir(&dir).map_err(io_error(format!("cannot sync {}", dir.display())))
    }

    /// Numbers of the `chk-<n>` folders, ascending.
    fn ids(&self) -> Result<Vec<u64>, CheckpointError> {
        ids(&self.root)
    }

    /// Whether checkpoint `id` was completed (has metadata).
    fn is_complete(&self, id: u64) -> bool {
        self.checkpoint_dir(id).join(METADATA).is_file()
    }

    /// The next checkpoint number: after every existing one, complete or not.
    pub fn next_id(&self) -> Result<u64, CheckpointError> {
        Ok(self.ids()?.last().map_or(1, |last| last + 1))
    }

    /// The completed checkpoints' numbers, newest first.
    pub fn completed_newest_first(&self) -> Result<Vec<u64>, CheckpointError> {
        let mut ids = self.ids()?;
        ids.retain(|id| self.is_complete(*id));
        ids.reverse();
        Ok(ids)
    }

    /// The latest completed checkpoint's folder, if any.
    pub fn latest_dir(&self) -> Result<Option<PathBuf>, CheckpointError> {
        let latest = self
            .ids()?
            .into_iter()
            .rev()
            .find(|id| self.is_complete(*id));
        Ok(latest.map(|id| self.checkpoint_dir(id)))
    }

    /// Deletes checkpoint `id`'s folder, and the shared files only it referred to.
    pub fn discard(&self, id: u64) -> Result<(), CheckpointError> {
        self.shared.release(id)?;
        let dir = self.checkpoint_dir(id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_error(format!("cannot delete {}", dir.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// Moves damaged checkpoint `id` out of the way, to `<root>/damaged/chk-<id>`, so that
    /// it is never found again but can still be looked at.
    pub fn set_aside(&self, id: u64) -> Result<PathBuf, CheckpointError> {
        let damaged = self.root.join("damaged");
        fs::create_dir_all(&damaged)
            .map_err(io_error(format!("cannot create {}", damaged.display())))?;
        let to = damaged.join(format!("chk-{id}"));
        let from = self.checkpoint_dir(id);
        fs::rename(&from, &to)
            .and_then(|()| sync_dir(&self.root))
            .map_err(io_error(format!("cannot move {} aside", from.display())))?;
        Ok(to)
    }

    /// Keeps the newest `retain` completed checkpoints and anything newer than the
    /// newest completed one (possibly in progress); deletes the rest.
    pub fn retain(&self, retain: usize) -> Result<(), CheckpointError> {
        let ids = self.ids()?;
        let completed: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| self.is_complete(*id))
            .collect();
        let Some(&newest) = completed.last() else {
            return Ok(());
        };
        let kept: Vec<u64> = completed
            .iter()
            .rev()
            .take(retain.max(1))
            .copied()
            .collect();
        for id in ids {
            if id < newest && !kept.contains(&id) {
                self.discard(id)?;
            }
        }
        Ok(())
    }

    /// Copies completed checkpoint `id` into `<root>/savepoints/sp-<id>`, a
    /// self-contained folder that the host never deletes (metadata copied last).
    pub fn save(&self, id: u64) -> Result<PathBuf, CheckpointError> {
        let from = self.checkpoint_dir(id);
        let to = self.root.join("savepoints").join(format!("sp-{id}"));
        fs::create_dir_all(&to).map_err(io_error(format!("cannot create {}", to.display())))?;
        let mut metadata = read_metadata(&from)?;
        for (operator, files) in &mut metadata.operators {
            for (subtask, file) in files.iter_mut().enumerate() {
                // Savepoints are canonical: readable by any backend, at any parallelism.
                let snapshot = read_state_file(&from, file)?;
                let name = format!("{operator}-{subtask}.state");
                let bytes = snapshot.encode();
                let path = to.join(&name);
                write_synced(&path, &bytes)
                    .map_err(io_error(format!("cannot write {}", path.display())))?;
                *file = StateFile::Canonical(CanonicalFile {
                    file: name,
                    bytes: bytes.len() as u64,
                    crc32c: crc32c::crc32c(&bytes),
                });
            }
        }
        let temp = to.join(format!("{METADATA}.inprogress"));
        write_synced(&temp, &metadata.encode())
            .map_err(io_error(format!("cannot write {}", temp.display())))?;
        fs::rename(&temp, to.join(METADATA))
            .map_err(io_error(format!("cannot rename {}", temp.display())))?;
        sync_dir(&to).map_err(io_error(format!("cannot sync {}", to.display())))?;
        Ok(to)
    }

    /// Deletes every checkpoint of the job and the shared folder (savepoints stay).
    pub fn discard_all(&self) -> Result<(), CheckpointError> {
        for id in self.ids()? {
            self.discard(id)?;
        }
        let shared = self.root.join(SHARED);
        match fs::remove_dir_all(&shared) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_error(format!("cannot delete {}", shared.display()))(e))
            }
            _ => Ok(()),
        }
    }
}

/// Numbers of the `chk-<n>` folders in a job's checkpoint folder, ascending.
fn ids(root: &Path) -> Result<Vec<u64>, CheckpointError> {
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

/// Reads one operator subtask's state of the checkpoint in `dir`, checking every file
/// against its metadata (size and CRC) and its own header and checksum.
pub fn read_state_file(dir: &Path, file: &StateFile) -> Result<Snapshot, CheckpointError> {
    match file {
        StateFile::Canonical(file) => read_canonical(dir, file),
        StateFile::Rocksdb(files) => super::shared::read(dir, files),
    }
}

/// Checks every file `metadata` lists for the checkpoint in `dir` against its recorded
/// size and CRC, without decoding any: whether the checkpoint is intact on disk.
pub fn verify(dir: &Path, metadata: &Metadata) -> Result<(), CheckpointError> {
    for file in metadata.operators.values().flatten() {
        match file {
            StateFile::Canonical(file) => {
                read_checked(dir, file)?;
            }
            StateFile::Rocksdb(files) => super::shared::verify(dir, files)?,
        }
    }
    Ok(())
}

/// A canonical state file's bytes, checked against the size and CRC recorded for it.
fn read_checked(dir: &Path, file: &CanonicalFile) -> Result<(PathBuf, Vec<u8>), CheckpointError> {
    let path = dir.join(&file.file);
    let bytes = fs::read(&path).map_err(|e| CheckpointError::State {
        path: path.clone(),
        reason: format!("cannot read it: {e}"),
    })?;
    let actual = (bytes.len() as u64, crc32c::crc32c(&bytes));
    check_recorded(&path, actual, (file.bytes, file.crc32c))?;
    Ok((path, bytes))
}

fn read_canonical(dir: &Path, file: &CanonicalFile) -> Result<Snapshot, CheckpointError> {
    let (path, bytes) = read_checked(dir, file)?;
    Snapshot::decode(&bytes).map_err(|e: SnapshotError| CheckpointError::State {
        path,
        reason: e.to_string(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeyGroup;
    use crate::state::StateKind;
    use crate::state::snapshot::{Entry, GroupEntries, SlotData, StateInfo};

    fn metadata(id: u64) -> Metadata {
        Metadata {
            job: "j".into(),
            checkpoint: id,
            max_parallelism: 128,
            sources: Default::default(),
            operators: Default::default(),
            sinks: Default::default(),
        }
    }

    #[test]
    fn only_checkpoints_with_metadata_are_restored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "j");
        assert_eq!(store.latest_dir().unwrap(), None);
        assert_eq!(store.next_id().unwrap(), 1);
        store.complete(&metadata(1)).unwrap();
        // Checkpoint 2 wrote state but never completed.
        store
            .write_state(2, "op-0.state", &Snapshot::default().encode())
            .unwrap();
        assert_eq!(store.latest_dir().unwrap(), Some(store.checkpoint_dir(1)));
        assert_eq!(store.next_id().unwrap(), 3);
    }

    #[test]
    fn state_files_are_checked_against_their_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "j");
        let snapshot = Snapshot {
            states: vec![StateInfo {
                name: "s".into(),
                kind: StateKind::Value,
            }],
            groups: vec![GroupEntries {
                group: KeyGroup(1),
                entries: vec![Entry {
                    state: 0,
                    key: b"k".to_vec(),
                    data: SlotData::Value(b"v".to_vec()),
                }],
            }],
        };
        let file = store
            .write_state(1, "op-0.state", &snapshot.encode())
            .unwrap();
        assert_eq!(
            read_state_file(&store.checkpoint_dir(1), &file).unwrap(),
            snapshot
        );
        let path = store.checkpoint_dir(1).join("op-0.state");
        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = read_state_file(&store.checkpoint_dir(1), &file)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("op-0.state") && err.contains("damaged"),
            "{err}"
        );
        fs::write(&path, &bytes[..10]).unwrap();
        assert!(
            read_state_file(&store.checkpoint_dir(1), &file)
                .unwrap_err()
                .to_string()
                .contains("size 10 differs")
        );
    }

    #[test]
    fn damaged_metadata_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "j");
        store.complete(&metadata(1)).unwrap();
        let path = store.checkpoint_dir(1).join(METADATA);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = read_metadata(&store.checkpoint_dir(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("chk-1/_metadata") && err.contains("checksum"),
            "{err}"
        );
    }

    #[test]
    fn retention_keeps_the_newest_completed_and_anything_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "j");
        for id in 1..=4 {
            store.complete(&metadata(id)).unwrap();
        }
        store
            .write_state(5, "op-0.state", &Snapshot::default().encode())
            .unwrap();
        store.retain(2).unwrap();
        assert_eq!(store.ids().unwrap(), [3, 4, 5]);
        store.discard_all().unwrap();
        assert_eq!(store.ids().unwrap(), Vec::<u64>::new());
    }
}
