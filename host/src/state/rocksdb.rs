//! The RocksDB state backend: keyed state larger than memory, in one local RocksDB per
//! operator subtask.
//!
//! Keys are ordered by key group first — `[key group u16][state u32][key length u32][key]`
//! then a tag: `v` (value), `l` (list, one encoded value) or `m` + user key (one map
//! entry) — so a key group, a key's slot and a map are each one contiguous key range.
//! The write-ahead log is off: durability comes from checkpoints, and a subtask's
//! database is rebuilt from the latest checkpoint after any failure.
//!
//! A snapshot is a RocksDB checkpoint (hard links to immutable SST files, taken in
//! milliseconds) that the writer thread opens read-only and turns into canonical
//! entries.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ::rocksdb::{
    DB, DBCompressionType, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};

use super::snapshot::{Entry, GroupEntries, SlotData};
use super::{
    BackendSnapshot, KeyGroup, KeyGroupRange, Result, Scope, StateBackend, StateError, StateId,
};
use crate::folder::Folder;

/// Keyed state in a local RocksDB database.
pub struct RocksDbBackend {
    /// Declared before `folder`: fields drop in order, so the database is closed
    /// before its folder is deleted.
    db: DB,
    range: KeyGroupRange,
    write: WriteOptions,
    /// Numbers snapshot folders, so that one being read is never reused.
    snapshots: AtomicU64,
    /// The database's folder: working state, rebuilt from checkpoints, never kept.
    folder: Folder,
}

fn storage(e: ::rocksdb::Error) -> StateError {
    StateError::Storage(e.to_string())
}

fn options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_compression_type(DBCompressionType::Lz4);
    options
}

impl RocksDbBackend {
    /// A fresh, empty database in `dir` (anything there is deleted first) for `range`.
    pub fn create(dir: &Path, range: KeyGroupRange) -> Result<RocksDbBackend> {
        let folder = Folder::create(dir.to_path_buf())
            .map_err(|e| StateError::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let db = DB::open(&options(), dir).map_err(storage)?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(RocksDbBackend {
            db,
            range,
            write,
            snapshots: AtomicU64::new(0),
            folder,
        })
    }

    fn check(&self, scope: Scope<'_>) -> Result<()> {
        if self.range.contains(scope.key_group) {
            Ok(())
        } else {
            Err(StateError::KeyGroupOutOfRange {
                key_group: scope.key_group,
                range: self.range,
            })
        }
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put_opt(key, value, &self.write).map_err(storage)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(storage)
    }

    /// Every `(key, value)` whose key starts with `prefix`, in order.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (key, value) = item.map_err(storage)?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }
}

/// `[group][state][key length][key]`: the prefix of one key's slot in one state.
fn slot_prefix(scope: Scope<'_>) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(10 + scope.key.len() + 1);
    prefix.extend_from_slice(&scope.key_group.0.to_be_bytes());
    prefix.extend_from_slice(&scope.state.0.to_be_bytes());
    prefix.extend_from_slice(&(scope.key.len() as u32).to_be_bytes());
    prefix.extend_from_slice(scope.key);
    prefix
}

fn tagged(scope: Scope<'_>, tag: u8) -> Vec<u8> {
    let mut key = slot_prefix(scope);
    key.push(tag);
    key
}

fn map_key(scope: Scope<'_>, user_key: &[u8]) -> Vec<u8> {
    let mut key = tagged(scope, b'm');
    key.extend_from_slice(user_key);
    key
}

fn encode_list(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for element in elements {
        out.extend_from_slice(&(element.len() as u32).to_be_bytes());
        out.extend_from_slice(element);
    }
    out
}

fn decode_list(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut elements = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| StateError::Storage("a list value is truncated".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(StateError::Storage("a list element is truncated".into()));
        }
        elements.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
    Ok(elements)
}

impl StateBackend for RocksDbBackend {
    fn key_groups(&self) -> KeyGroupRange {
        self.range
    }

    fn value_get(&self, scope: Scope<'_>) -> Result<Option<Vec<u8>>> {
        self.check(scope)?;
        self.get(&tagged(scope, b'v'))
    }

    fn value_put(&mut self, scope: Scope<'_>, value: &[u8]) -> Result<()> {
        self.check(scope)?;
        self.put(&tagged(scope, b'v'), value)
    }

    fn list_get(&self, scope: Scope<'_>) -> Result<Vec<Vec<u8>>> {
        self.check(scope)?;
        match self.get(&tagged(scope, b'l'))? {
            Some(bytes) => decode_list(&bytes),
            None => Ok(Vec::new()),
        }
    }

    fn list_append(&mut self, scope: Scope<'_>, elements: Vec<Vec<u8>>) -> Result<()> {
        let mut list = self.list_get(scope)?;
        list.extend(elements);
        self.list_replace(scope, list)
    }

    fn list_replace(&mut self, scope: Scope<'_>, elements: Vec<Vec<u8>>) -> Result<()> {
        self.check(scope)?;
        let key = tagged(scope, b'l');
        if elements.is_empty() {
            return self.db.delete_opt(&key, &self.write).map_err(storage);
        }
        self.put(&key, &encode_list(&elements))
    }

    fn map_get(&self, scope: Scope<'_>, user_key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check(scope)?;
        self.get(&map_key(scope, user_key))
    }

    fn map_put(&mut self, scope: Scope<'_>, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        self.check(scope)?;
        let mut batch = WriteBatch::default();
        for (user_key, value) in entries {
            batch.put(map_key(scope, &user_key), value);
        }
        self.db.write_opt(batch, &self.write).map_err(storage)
    }

    fn map_remove(&mut self, scope: Scope<'_>, user_key: &[u8]) -> Result<()> {
        self.check(scope)?;
        self.db
            .delete_opt(map_key(scope, user_key), &self.write)
            .map_err(storage)
    }

    fn map_entries(&self, scope: Scope<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.check(scope)?;
        let prefix = tagged(scope, b'm');
        Ok(self
            .scan(&prefix)?
            .into_iter()
            .map(|(key, value)| (key[prefix.len()..].to_vec(), value))
            .collect())
    }

    fn map_is_empty(&self, scope: Scope<'_>) -> Result<bool> {
        self.check(scope)?;
        let prefix = tagged(scope, b'm');
        let first = self
            .db
            .iterator(IteratorMode::From(&prefix, Direction::Forward))
            .next();
        match first {
            Some(item) => Ok(!item.map_err(storage)?.0.starts_with(&prefix)),
            None => Ok(true),
        }
    }

    fn clear(&mut self, scope: Scope<'_>) -> Result<()> {
        self.check(scope)?;
        let mut batch = WriteBatch::default();
        batch.delete(tagged(scope, b'v'));
        batch.delete(tagged(scope, b'l'));
        batch.delete_range(tagged(scope, b'm'), tagged(scope, b'n'));
        self.db.write_opt(batch, &self.write).map_err(storage)
    }

    fn keys(&self, state: StateId) -> Result<Vec<(KeyGroup, Vec<u8>)>> {
        let mut keys: Vec<(KeyGroup, Vec<u8>)> = Vec::new();
        for group in self.range.iter() {
            let mut prefix = group.0.to_be_bytes().to_vec();
            prefix.extend_from_slice(&state.0.to_be_bytes());
            let start = keys.len();
            let iterator = self
                .db
                .iterator(IteratorMode::From(&prefix, Direction::Forward));
            for item in iterator {
                let (stored, _) = item.map_err(storage)?;
                if !stored.starts_with(&prefix) {
                    break;
                }
                let key = parse_key(&stored)
                    .ok_or_else(|| StateError::Storage("a malformed key in the store".into()))?
                    .key;
                // A map's entries share their key: keep it once.
                if keys.len() == start || keys.last().is_some_and(|(_, last)| last != key) {
                    keys.push((group, key.to_vec()));
                }
            }
            // Stored by key length first: the same order as the other backend's.
            keys[start..].sort_unstable();
        }
        Ok(keys)
    }

    fn snapshot(&self) -> Box<dyn BackendSnapshot> {
        let dir = self.folder.path().with_extension(format!(
            "snapshot-{}",
            self.snapshots.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let taken = ::rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(&dir))
            .map(|()| dir.clone())
            .map_err(|e| e.to_string());
        Box::new(RocksDbSnapshot { taken })
    }

    fn restore(&mut self, groups: &[GroupEntries]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for group in groups.iter().filter(|g| self.range.contains(g.group)) {
            for entry in &group.entries {
                let scope = Scope {
                    state: super::StateId(entry.state),
                    key_group: group.group,
                    key: &entry.key,
                };
                match &entry.data {
                    SlotData::Value(v) => batch.put(tagged(scope, b'v'), v),
                    SlotData::List(l) => batch.put(tagged(scope, b'l'), encode_list(l)),
                    SlotData::Map(m) => {
                        for (user_key, value) in m {
                            batch.put(map_key(scope, user_key), value);
                        }
                    }
                }
            }
        }
        self.db.write_opt(batch, &self.write).map_err(storage)
    }
}

/// A RocksDB checkpoint of the backend (deleted when dropped), read on the writer
/// thread: into entries, or file by file for an incremental checkpoint.
struct RocksDbSnapshot {
    taken: std::result::Result<PathBuf, String>,
}

impl BackendSnapshot for RocksDbSnapshot {
    fn into_groups(self: Box<Self>) -> Result<Vec<GroupEntries>> {
        let dir = self
            .taken
            .as_ref()
            .map_err(|e| StateError::Storage(e.clone()))?;
        read_checkpoint(dir)
    }

    fn native_files(&self) -> Option<&Path> {
        self.taken.as_deref().ok()
    }
}

impl Drop for RocksDbSnapshot {
    fn drop(&mut self) {
        if let Ok(dir) = &self.taken {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Reads a RocksDB checkpoint folder (written by this backend) into canonical entries:
/// the non-empty key groups in order, entries sorted by state id, then key.
pub fn read_checkpoint(dir: &Path) -> Result<Vec<GroupEntries>> {
    let db = DB::open_for_read_only(&options(), dir, false).map_err(storage)?;
    let mut groups: Vec<GroupEntries> = Vec::new();
    for item in db.iterator(IteratorMode::Start) {
        let (key, value) = item.map_err(storage)?;
        let StoreKey {
            group,
            state,
            key: user_key,
            tag,
            rest,
        } = parse_key(&key)
            .ok_or_else(|| StateError::Storage("a malformed key in the state store".into()))?;
        if groups.last().is_none_or(|g| g.group != group) {
            groups.push(GroupEntries {
                group,
                entries: Vec::new(),
            });
        }
        let entries = &mut groups.last_mut().expect("pushed above").entries;
        match tag {
            b'v' => entries.push(Entry {
                state,
                key: user_key.to_vec(),
                data: SlotData::Value(value.into_vec()),
            }),
            b'l' => entries.push(Entry {
                state,
                key: user_key.to_vec(),
                data: SlotData::List(decode_list(&value)?),
            }),
            _ => {
                let same_slot = entries.last().is_some_and(|e| {
                    e.state == state && e.key == user_key && matches!(e.data, SlotData::Map(_))
                });
                if !same_slot {
                    entries.push(Entry {
                        state,
                        key: user_key.to_vec(),
                        data: SlotData::Map(Vec::new()),
                    });
                }
                if let Some(Entry {
                    data: SlotData::Map(map),
                    ..
                }) = entries.last_mut()
                {
                    map.push((rest.to_vec(), value.into_vec()));
                }
            }
        }
    }
    for group in &mut groups {
        group
            .entries
            .sort_by(|a, b| (a.state, &a.key).cmp(&(b.state, &b.key)));
    }
    Ok(groups)
}

/// The parts of a store key: `[group][state][len][key][tag][rest]`.
struct StoreKey<'a> {
    group: KeyGroup,
    state: u32,
    key: &'a [u8],
    tag: u8,
    /// The user key of a map entry.
    rest: &'a [u8],
}

fn parse_key(bytes: &[u8]) -> Option<StoreKey<'_>> {
    let (group, rest) = bytes.split_first_chunk::<2>()?;
    let (state, rest) = rest.split_first_chunk::<4>()?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    let key = rest.get(..len)?;
    let (&tag, tail) = rest.get(len..)?.split_first()?;
    Some(StoreKey {
        group: KeyGroup(u16::from_be_bytes(*group)),
        state: u32::from_be_bytes(*state),
        key,
        tag,
        rest: tail,
    })
}
