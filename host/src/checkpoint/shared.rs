//! Incremental RocksDB checkpoints: SST files shared between checkpoints in the job's
//! `shared/` folder, reference-counted, and read back into canonical state.
//!
//! A RocksDB checkpoint is a folder of hard links: immutable SST files plus a few small
//! files (`CURRENT`, `MANIFEST-*`, `OPTIONS-*`) that say which SST files make the
//! database. An operator subtask remembers which of its SST files it has already copied
//! ([`Uploads`]); checkpoint *n* copies only the others into `shared/`, and its private
//! files into `chk-<n>/<op>-<i>.rocksdb/`.
//!
//! Invariant: a shared file exists while some checkpoint, completed or in flight, refers
//! to it. The [`Registry`] records which checkpoints refer to which file; a file is
//! reused only by *pinning* it for the new checkpoint under the registry's lock, which
//! fails once the file has been released, and it is deleted when its last checkpoint is
//! discarded. After a crash the registry is rebuilt from the completed checkpoints'
//! metadata, and shared files none of them lists (copies of checkpoints that never
//! completed) are deleted.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::files::{CheckpointError, check_recorded, completed, read_metadata, sync_dir};
use super::metadata::{
    FileCheck, NamedState, NamedTtl, RocksDbFiles, SharedFile, StateFile, TakenAt,
};
use crate::folder::Folder;
use crate::state::snapshot::{Snapshot, StateInfo};
use crate::state::ttl::{Now, Ttl, TtlUpdate};
use crate::state::{KeyedCopy, StateKind, TimeDomain};

/// The folder of shared files inside a job's checkpoint folder.
pub const SHARED: &str = "shared";

/// Which checkpoints refer to which shared file.
#[derive(Debug, Default)]
pub struct Registry {
    /// Rebuilt from disk yet?
    loaded: bool,
    /// Per shared file, the checkpoints that refer to it; never empty.
    pins: HashMap<String, BTreeSet<u64>>,
    /// Checkpoints discarded in this process: nothing may be pinned for them again.
    released: HashSet<u64>,
}

impl Registry {
    /// Pins `file` for `checkpoint`: a new file, or one still pinned by another. False if
    /// the checkpoint was discarded, or if the file is not new and no longer pinned.
    fn pin(&mut self, file: &str, checkpoint: u64, new: bool) -> bool {
        if self.released.contains(&checkpoint) {
            return false;
        }
        match self.pins.get_mut(file) {
            Some(pins) => {
                pins.insert(checkpoint);
                true
            }
            None if new => {
                self.pins
                    .insert(file.to_string(), BTreeSet::from([checkpoint]));
                true
            }
            None => false,
        }
    }

    /// Unpins every file of `checkpoint`; returns the files nothing refers to any more.
    fn release(&mut self, checkpoint: u64) -> Vec<String> {
        self.released.insert(checkpoint);
        let mut unused = Vec::new();
        self.pins.retain(|file, pins| {
            pins.remove(&checkpoint);
            if pins.is_empty() {
                unused.push(file.clone());
            }
            !pins.is_empty()
        });
        unused
    }
}

/// The shared folder of one job and its registry.
#[derive(Debug)]
pub struct SharedFiles {
    root: PathBuf,
    registry: Mutex<Registry>,
}

impl SharedFiles {
    /// The shared folder of the job whose checkpoint folder is `root`.
    pub fn new(root: &Path) -> SharedFiles {
        SharedFiles {
            root: root.to_path_buf(),
            registry: Mutex::new(Registry::default()),
        }
    }

    fn dir(&self) -> PathBuf {
        self.root.join(SHARED)
    }

    /// The registry, rebuilt from the completed checkpoints on first use.
    fn registry(&self) -> Result<std::sync::MutexGuard<'_, Registry>, CheckpointError> {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if !registry.loaded {
            self.load(&mut registry)?;
            registry.loaded = true;
        }
        Ok(registry)
    }

    /// Pins the shared files of every completed checkpoint on disk and deletes the
    /// shared files that none lists. If any metadata cannot be read, nothing is deleted:
    /// a file of a checkpoint that cannot be read is not proven unused.
    fn load(&self, registry: &mut Registry) -> Result<(), CheckpointError> {
        let mut all_read = true;
        for (id, dir) in completed(&self.root)? {
            let Ok(metadata) = read_metadata(&dir) else {
                all_read = false;
                continue;
            };
            for file in metadata.operators.values().flatten() {
                if let StateFile::Rocksdb(files) = file {
                    for shared in &files.shared {
                        registry.pin(&shared.file.name, id, true);
                    }
                }
            }
        }
        let dir = self.dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                return Err(CheckpointError::Io {
                    what: format!("cannot list {}", dir.display()),
                    error,
                });
            }
        };
        if all_read {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !registry.pins.contains_key(&name) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Unpins checkpoint `id`'s files and deletes those no other checkpoint refers to.
    pub fn release(&self, id: u64) -> Result<(), CheckpointError> {
        let unused = self.registry()?.release(id);
        for file in unused {
            let path = self.dir().join(&file);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(CheckpointError::Io {
                        what: format!("cannot delete {}", path.display()),
                        error: e,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes checkpoint `id` of one operator subtask from a RocksDB checkpoint folder:
    /// private files into `<checkpoint dir>/<name>.rocksdb/`, SST files `uploads` does not
    /// already hold into the shared folder.
    pub fn write(
        &self,
        checkpoint_dir: &Path,
        id: u64,
        name: &str,
        copy: &KeyedCopy,
        native: &Path,
        uploads: &mut Uploads,
    ) -> Result<StateFile, CheckpointError> {
        let (states, taken_at) = (&copy.states, copy.taken_at);
        let io = |what: String| move |error| CheckpointError::Io { what, error };
        let mut files: Vec<String> = fs::read_dir(native)
            .map_err(io(format!("cannot list {}", native.display())))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()
            .map_err(io(format!("cannot list {}", native.display())))?;
        files.sort();
        let (ssts, private): (Vec<String>, Vec<String>) =
            files.into_iter().partition(|f| f.ends_with(".sst"));

        // Reuse what is still pinned, under the registry's lock.
        let mut shared = Vec::new();
        let mut fresh = Vec::new();
        {
            let mut registry = self.registry()?;
            for local in ssts {
                match uploads.files.get(&local) {
                    Some(file) if registry.pin(&file.file.name, id, false) => {
                        shared.push(file.clone());
                    }
                    _ => fresh.push(local),
                }
            }
        }

        let mut copied = 0;
        let shared_dir = self.dir();
        fs::create_dir_all(&shared_dir)
            .map_err(io(format!("cannot create {}", shared_dir.display())))?;
        for local in fresh {
            // Named by checkpoint too: a name, once released, is never written again,
            // so a late deletion of a released file cannot hit a fresh copy.
            let name = format!("{}-{id}-{local}", uploads.prefix);
            let to = shared_dir.join(&name);
            let file = copy_synced(&native.join(&local), &to, name)?;
            if !self.registry()?.pin(&file.name, id, true) {
                let _ = fs::remove_file(&to);
                return Err(CheckpointError::Io {
                    what: format!("checkpoint {id} was aborted while writing {}", to.display()),
                    error: io::ErrorKind::Interrupted.into(),
                });
            }
            copied += file.bytes;
            let file = SharedFile { file, local };
            uploads.files.insert(file.local.clone(), file.clone());
            shared.push(file);
        }
        sync_dir(&shared_dir).map_err(io(format!("cannot sync {}", shared_dir.display())))?;

        let dir_name = format!("{name}.rocksdb");
        let dir = checkpoint_dir.join(&dir_name);
        fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let mut checks = Vec::new();
        for file in private {
            let check = copy_synced(&native.join(&file), &dir.join(&file), file)?;
            copied += check.bytes;
            checks.push(check);
        }
        sync_dir(&dir).map_err(io(format!("cannot sync {}", dir.display())))?;
        sync_dir(checkpoint_dir)
            .map_err(io(format!("cannot sync {}", checkpoint_dir.display())))?;
        shared.sort_by(|a, b| a.local.cmp(&b.local));
        Ok(StateFile::Rocksdb(RocksDbFiles {
            dir: dir_name,
            states: states
                .iter()
                .map(|s| NamedState {
                    name: s.name.clone(),
                    kind: s.kind.name().to_string(),
                    ttl: s.ttl.map(|ttl| NamedTtl {
                        ms: ttl.ttl_ms,
                        domain: ttl.domain.name().to_string(),
                        update: ttl.update.name().to_string(),
                    }),
                })
                .collect(),
            private: checks,
            shared,
            copied,
            taken_at: states.iter().any(|s| s.ttl.is_some()).then_some(TakenAt {
                watermark: taken_at.watermark,
                processing: taken_at.processing,
            }),
        }))
    }
}

/// The SST files one operator subtask's database has copied to the shared folder, by
/// their name in the database. One per database: RocksDB numbers files per database.
#[derive(Debug)]
pub struct Uploads {
    /// Makes shared names unique across subtasks and databases.
    prefix: String,
    files: HashMap<String, SharedFile>,
}

impl Uploads {
    /// An empty record for a new database of subtask `subtask` of operator `operator`.
    pub fn new(operator: &str, subtask: usize) -> Uploads {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Uploads {
            prefix: format!(
                "{operator}-{subtask}-{:x}{:x}",
                now.as_micros(),
                std::process::id()
            ),
            files: HashMap::new(),
        }
    }
}

/// Copies `from` to `to`, syncs it, and returns its size and checksum under `name`.
fn copy_synced(from: &Path, to: &Path, name: String) -> Result<FileCheck, CheckpointError> {
    let copied = || -> io::Result<(u64, u32)> {
        let mut output = File::create(to)?;
        let sum = sum(&mut File::open(from)?, |chunk| output.write_all(chunk))?;
        output.sync_all()?;
        Ok(sum)
    };
    let (bytes, crc32c) = copied().map_err(|error| CheckpointError::Io {
        what: format!("cannot copy {} to {}", from.display(), to.display()),
        error,
    })?;
    Ok(FileCheck {
        name,
        bytes,
        crc32c,
    })
}

/// Checks `path` against its recorded size and checksum.
fn check(path: &Path, expected: &FileCheck) -> Result<(), CheckpointError> {
    let actual = File::open(path)
        .and_then(|mut file| sum(&mut file, |_| Ok(())))
        .map_err(|e| CheckpointError::State {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
    check_recorded(path, actual, (expected.bytes, expected.crc32c))
}

/// The folders of a checkpoint's private files and of the job's shared files.
fn folders(dir: &Path, files: &RocksDbFiles) -> (PathBuf, PathBuf) {
    let shared = dir
        .parent()
        .map(|root| root.join(SHARED))
        .unwrap_or_else(|| PathBuf::from(SHARED));
    (dir.join(&files.dir), shared)
}

/// Checks every file of one subtask's incremental checkpoint (size and CRC).
pub(super) fn verify(dir: &Path, files: &RocksDbFiles) -> Result<(), CheckpointError> {
    let (private, shared) = folders(dir, files);
    for file in &files.private {
        check(&private.join(&file.name), file)?;
    }
    for file in &files.shared {
        check(&shared.join(&file.file.name), &file.file)?;
    }
    Ok(())
}

/// Reads `input` to its end in 1 MB chunks, handing each to `each`: its size and CRC-32C.
fn sum(
    input: &mut impl Read,
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<(u64, u32)> {
    let (mut bytes, mut crc) = (0u64, 0u32);
    let mut buffer = vec![0; 1 << 20];
    loop {
        let n = input.read(&mut buffer)?;
        if n == 0 {
            return Ok((bytes, crc));
        }
        crc = crc32c::crc32c_append(crc, &buffer[..n]);
        bytes += n as u64;
        each(&buffer[..n])?;
    }
}

/// Reads an incremental RocksDB checkpoint of the checkpoint in `dir` (a `chk-<n>` folder
/// whose parent holds `shared/`) into a canonical snapshot. Every file is checked against
/// its recorded size and checksum first.
pub fn read(dir: &Path, files: &RocksDbFiles) -> Result<Snapshot, CheckpointError> {
    let (private, shared) = folders(dir, files);
    // RocksDB opens a database from one folder: gather the files there under their
    // database names, as hard links where the file system allows.
    let work = scratch(dir)?;
    for file in &files.private {
        let from = private.join(&file.name);
        check(&from, file)?;
        link_or_copy(&from, &work.path().join(&file.name))?;
    }
    for file in &files.shared {
        let from = shared.join(&file.file.name);
        check(&from, &file.file)?;
        link_or_copy(&from, &work.path().join(&file.local))?;
    }
    let states = files
        .states
        .iter()
        .map(|s| {
            let unknown = |what: &str, value: &str| CheckpointError::State {
                path: private.clone(),
                reason: format!("state `{}` has an unknown {what} `{value}`", s.name),
            };
            let ttl = match &s.ttl {
                None => None,
                Some(t) => Some(Ttl {
                    ttl_ms: t.ms,
                    domain: [TimeDomain::Event, TimeDomain::Processing]
                        .into_iter()
                        .find(|d| d.name() == t.domain)
                        .ok_or_else(|| unknown("TTL time domain", &t.domain))?,
                    update: [TtlUpdate::OnCreateAndWrite, TtlUpdate::OnReadAndWrite]
                        .into_iter()
                        .find(|u| u.name() == t.update)
                        .ok_or_else(|| unknown("TTL update policy", &t.update))?,
                }),
            };
            Ok(StateInfo {
                name: s.name.clone(),
                kind: StateKind::from_name(&s.kind).ok_or_else(|| unknown("kind", &s.kind))?,
                ttl,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    #[cfg(not(feature = "rocksdb"))]
    let groups: Result<Vec<crate::state::snapshot::GroupEntries>, _> =
        Err(crate::state::WITHOUT_ROCKSDB);
    #[cfg(feature = "rocksdb")]
    let groups = crate::state::rocksdb::read_checkpoint(work.path());
    let groups = groups.map_err(|e| CheckpointError::State {
        path: private.clone(),
        reason: format!("the database does not open: {e}"),
    })?;
    if let Some(bad) = groups
        .iter()
        .flat_map(|g| &g.entries)
        .find(|e| e.state as usize >= states.len())
    {
        return Err(CheckpointError::State {
            path: private,
            reason: format!("an entry names state {} of {}", bad.state, states.len()),
        });
    }
    let taken_at = files.taken_at.map_or(Now::NEVER, |at| Now {
        watermark: at.watermark,
        processing: at.processing,
    });
    let mut snapshot = Snapshot {
        states,
        groups,
        taken_at,
    };
    snapshot.drop_expired();
    Ok(snapshot)
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), CheckpointError> {
    fs::hard_link(from, to)
        .or_else(|_| fs::copy(from, to).map(|_| ()))
        .map_err(|error| CheckpointError::Io {
            what: format!("cannot copy {} to {}", from.display(), to.display()),
            error,
        })
}

/// A scratch folder next to the checkpoint (same file system: hard links work).
fn scratch(dir: &Path) -> Result<Folder, CheckpointError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        ".restore-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.parent().unwrap_or(dir).join(name);
    Folder::create(path.clone()).map_err(|error| CheckpointError::Io {
        what: format!("cannot create {}", path.display()),
        error,
    })
}

#[cfg(test)]
#[cfg(feature = "rocksdb")]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::Metadata;
    use crate::checkpoint::storage::{Store, read_state_file};
    use crate::state::rocksdb::RocksDbBackend;
    use crate::state::{KeyGroup, KeyGroupRange, Scope, StateBackend, StateId};

    const MAX_PARALLELISM: u16 = 128;

    fn put(backend: &mut RocksDbBackend, key: u32, version: u32) {
        let key = format!("key-{key}");
        // Varied bytes, so that compression does not make the state trivially small.
        let value: Vec<u8> = (0..100u32)
            .map(|i| (i.wrapping_mul(31) ^ version ^ key.len() as u32) as u8)
            .chain(key.bytes())
            .collect();
        let scope = Scope {
            state: StateId(0),
            key_group: KeyGroup::of(key.as_bytes(), MAX_PARALLELISM),
            key: key.as_bytes(),
        };
        backend.value_put(scope, &value).unwrap();
    }

    fn states() -> Vec<StateInfo> {
        vec![StateInfo {
            name: "count".into(),
            kind: StateKind::Value,
            ttl: None,
        }]
    }

    fn copy_of(backend: &RocksDbBackend) -> KeyedCopy {
        KeyedCopy {
            states: states(),
            backend: backend.snapshot(),
            taken_at: Now::NEVER,
        }
    }

    /// Takes and completes checkpoint `id`; returns its state file and the state it
    /// must restore.
    fn checkpoint(
        store: &Store,
        backend: &RocksDbBackend,
        id: u64,
        uploads: &mut Uploads,
    ) -> (StateFile, Snapshot) {
        let copy = copy_of(backend);
        let file = store
            .write_incremental(
                id,
                "op-0",
                &copy,
                copy.backend.native_files().unwrap(),
                uploads,
            )
            .unwrap();
        store
            .complete(&Metadata {
                job: "j".into(),
                checkpoint: id,
                max_parallelism: MAX_PARALLELISM,
                sources: Default::default(),
                operators: [("op".to_string(), vec![file.clone()])].into(),
                operator_states: Default::default(),
                sinks: Default::default(),
                channel_states: Default::default(),
            })
            .unwrap();
        let expected = Snapshot {
            states: states(),
            groups: backend.snapshot().into_groups().unwrap(),
            ..Snapshot::default()
        };
        (file, expected)
    }

    fn shared_files(store: &Store) -> BTreeSet<String> {
        fs::read_dir(store.root().join(SHARED))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn referenced(file: &StateFile) -> BTreeSet<String> {
        match file {
            StateFile::Rocksdb(files) => files.shared.iter().map(|s| s.file.name.clone()).collect(),
            StateFile::Canonical(_) => panic!("expected an incremental checkpoint"),
        }
    }

    #[test]
    fn a_small_update_copies_far_fewer_bytes_and_retained_checkpoints_stay_restorable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "j");
        let mut backend =
            RocksDbBackend::create(&dir.path().join("db"), KeyGroupRange::all(MAX_PARALLELISM))
                .unwrap();
        let mut uploads = Uploads::new("op", 0);
        for key in 0..50_000 {
            put(&mut backend, key, 0);
        }
        let (first, _) = checkpoint(&store, &backend, 1, &mut uploads);
        for key in 0..10 {
            put(&mut backend, key, 1);
        }
        let (second, expected) = checkpoint(&store, &backend, 2, &mut uploads);
        assert!(
            second.copied() * 20 < first.copied(),
            "the second checkpoint copied {} bytes, the first {}",
            second.copied(),
            first.copied()
        );
        assert!(
            second.bytes() > first.copied(),
            "it still refers to all the state"
        );

        // Only the newest is retained: what it refers to stays, the rest goes.
        store.retain(1).unwrap();
        assert!(!store.checkpoint_dir(1).exists());
        assert_eq!(shared_files(&store), referenced(&second));
        let dir2 = store.checkpoint_dir(2);
        assert_eq!(read_state_file(&dir2, &second).unwrap(), expected);

        // An aborted checkpoint takes only its own new files with it.
        for key in 10..20 {
            put(&mut backend, key, 1);
        }
        let copy = copy_of(&backend);
        store
            .write_incremental(
                3,
                "op-0",
                &copy,
                copy.backend.native_files().unwrap(),
                &mut uploads,
            )
            .unwrap();
        store.discard(3).unwrap();
        assert_eq!(shared_files(&store), referenced(&second));
        assert_eq!(read_state_file(&dir2, &second).unwrap(), expected);

        // The next checkpoint copies again what the aborted one had copied.
        let (fourth, expected) = checkpoint(&store, &backend, 4, &mut uploads);
        assert!(fourth.copied() > 0);
        store.retain(1).unwrap();
        assert_eq!(shared_files(&store), referenced(&fourth));
        assert_eq!(
            read_state_file(&store.checkpoint_dir(4), &fourth).unwrap(),
            expected
        );
    }

    #[test]
    fn after_a_crash_unreferenced_shared_files_are_deleted_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "j");
        let mut backend =
            RocksDbBackend::create(&dir.path().join("db"), KeyGroupRange::all(MAX_PARALLELISM))
                .unwrap();
        for key in 0..1000 {
            put(&mut backend, key, 0);
        }
        let (file, expected) = checkpoint(&store, &backend, 1, &mut Uploads::new("op", 0));
        // A checkpoint in flight when the process died copied a file, never completed.
        let orphan = store.root().join(SHARED).join("op-0-dead-000042.sst");
        fs::write(&orphan, b"half a file").unwrap();

        let restarted = Store::new(dir.path(), "j");
        restarted.discard(2).unwrap();
        assert!(!orphan.exists());
        assert_eq!(shared_files(&restarted), referenced(&file));
        let chk = restarted.checkpoint_dir(1);
        assert_eq!(read_state_file(&chk, &file).unwrap(), expected);

        let sst = store
            .root()
            .join(SHARED)
            .join(referenced(&file).first().unwrap());
        let mut bytes = fs::read(&sst).unwrap();
        bytes[100] ^= 1;
        fs::write(&sst, bytes).unwrap();
        let err = read_state_file(&chk, &file).unwrap_err().to_string();
        assert!(
            err.contains(&*sst.to_string_lossy()) && err.contains("damaged"),
            "{err}"
        );
    }

    #[test]
    fn a_file_is_reused_only_while_pinned_and_never_for_a_discarded_checkpoint() {
        let mut registry = Registry::default();
        assert!(!registry.pin("a", 1, false), "unknown files are not reused");
        assert!(registry.pin("a", 1, true));
        assert!(registry.pin("a", 2, false));
        assert_eq!(registry.release(1), Vec::<String>::new());
        assert_eq!(registry.release(2), ["a"]);
        assert!(!registry.pin("a", 3, false), "a released file is gone");
        assert!(!registry.pin("b", 2, true), "checkpoint 2 was discarded");
    }
}
