//! The checkpoint directory of one job: writing state files and metadata durably,
//! finding the latest completed checkpoint, and deleting what is no longer retained.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::channel_state::ChannelState;
use super::files::{
    CheckpointError, METADATA, check_recorded, ids, io_error, read_metadata, sync_dir, write_synced,
};
use super::metadata::{CanonicalFile, Metadata, StateFile};
use super::shared::{SHARED, SharedFiles, Uploads};
use crate::state::KeyedCopy;
use crate::state::operator::OperatorState;
use crate::state::snapshot::Snapshot;

const SINK_OUTPUT: &str = "sink-output";

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

    /// Where sink `sink` keeps output that checkpoints commit elsewhere (an exactly-once
    /// Kafka sink's pending parts): `<job>/sink-output/<sink>/`.
    pub fn sink_output(&self, sink: &str) -> PathBuf {
        self.root.join(SINK_OUTPUT).join(sink)
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
        self.write_file(id, file, bytes).map(StateFile::Canonical)
    }

    /// Writes `bytes` as `file` of checkpoint `id`, durably; returns what the metadata
    /// records of it.
    pub fn write_file(
        &self,
        id: u64,
        file: &str,
        bytes: &[u8],
    ) -> Result<CanonicalFile, CheckpointError> {
        write_file_in(&self.checkpoint_dir(id), file, bytes)
    }

    /// Writes one subtask's state into checkpoint `id` from a RocksDB checkpoint folder,
    /// copying only the SST files that `uploads` says are not in a retained checkpoint.
    pub fn write_incremental(
        &self,
        id: u64,
        name: &str,
        copy: &KeyedCopy,
        native: &Path,
        uploads: &mut Uploads,
    ) -> Result<StateFile, CheckpointError> {
        let dir = self.checkpoint_dir(id);
        (self.shared).write(&dir, id, name, copy, native, uploads)
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
    ///
    /// A writer of an aborted checkpoint may still be adding a file to the folder while it
    /// is deleted; the deletion is tried again then. A file written after it is harmless:
    /// a folder without `_metadata` is never restored, and is deleted with the others.
    pub fn discard(&self, id: u64) -> Result<(), CheckpointError> {
        self.shared.release(id)?;
        let dir = self.checkpoint_dir(id);
        let mut tries = 0;
        loop {
            match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty && tries < 10 => {
                    tries += 1;
                    std::thread::yield_now();
                }
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_error(format!("cannot delete {}", dir.display()))(e));
                }
                _ => return Ok(()),
            }
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
                *file = StateFile::Canonical(write_file_in(&to, &name, &snapshot.encode())?);
            }
        }
        let files = metadata.operator_states.values_mut().flatten();
        for file in files.chain(metadata.channel_states.values_mut().flatten()) {
            let (_, bytes) = read_checked(&from, &file.file)?;
            file.file = write_file_in(&to, &file.file.file, &bytes)?;
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
        for folder in [SHARED, SINK_OUTPUT] {
            let path = self.root.join(folder);
            match fs::remove_dir_all(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_error(format!("cannot delete {}", path.display()))(e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Reads one operator subtask's state of the checkpoint in `dir`, checking every file
/// against its metadata (size and CRC) and its own header and checksum.
pub fn read_state_file(dir: &Path, file: &StateFile) -> Result<Snapshot, CheckpointError> {
    match file {
        StateFile::Canonical(file) => read_canonical(dir, file),
        StateFile::Rocksdb(files) => super::shared::read(dir, files),
    }
}

/// Reads one operator subtask's operator state of the checkpoint in `dir`, checked
/// against its metadata and its own checksum.
pub fn read_operator_state(
    dir: &Path,
    file: &CanonicalFile,
) -> Result<OperatorState, CheckpointError> {
    read_decoded(dir, file, OperatorState::decode)
}

/// Reads one task's channel state of the checkpoint in `dir`, checked against its
/// metadata and its own checksum.
pub fn read_channel_state(
    dir: &Path,
    file: &CanonicalFile,
) -> Result<ChannelState, CheckpointError> {
    read_decoded(dir, file, ChannelState::decode)
}

/// Writes `bytes` as `file` in `dir` (created if need be), durably.
fn write_file_in(dir: &Path, file: &str, bytes: &[u8]) -> Result<CanonicalFile, CheckpointError> {
    fs::create_dir_all(dir).map_err(io_error(format!("cannot create {}", dir.display())))?;
    let path = dir.join(file);
    write_synced(&path, bytes).map_err(io_error(format!("cannot write {}", path.display())))?;
    Ok(CanonicalFile {
        file: file.to_string(),
        bytes: bytes.len() as u64,
        crc32c: crc32c::crc32c(bytes),
    })
}

/// Checks every file `metadata` lists for the checkpoint in `dir` against its recorded
/// size and CRC, without decoding any: whether the checkpoint is intact on disk.
pub fn verify(dir: &Path, metadata: &Metadata) -> Result<(), CheckpointError> {
    let files = metadata.operator_states.values().flatten();
    for file in files.chain(metadata.channel_states.values().flatten()) {
        read_checked(dir, &file.file)?;
    }
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
    read_decoded(dir, file, Snapshot::decode)
}

/// A file's contents, checked against the size and CRC recorded for it, then decoded
/// (which checks its own header and checksum).
fn read_decoded<T, E: std::fmt::Display>(
    dir: &Path,
    file: &CanonicalFile,
    decode: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Result<T, CheckpointError> {
    let (path, bytes) = read_checked(dir, file)?;
    decode(&bytes).map_err(|e| CheckpointError::State {
        path,
        reason: e.to_string(),
    })
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
            operator_states: Default::default(),
            sinks: Default::default(),
            channel_states: Default::default(),
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
                ttl: None,
            }],
            groups: vec![GroupEntries {
                group: KeyGroup(1),
                entries: vec![Entry {
                    state: 0,
                    key: b"k".to_vec(),
                    data: SlotData::Value(b"v".to_vec()),
                }],
                timers: Vec::new(),
            }],
            taken_at: crate::state::ttl::Now::NEVER,
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
