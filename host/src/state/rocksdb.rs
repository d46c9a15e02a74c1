//! The RocksDB state backend: keyed state larger than memory, in one local RocksDB per
//! operator subtask.
//!
//! Keys are ordered by key group first — `[key group u16][state u32][key length u32][key]`
//! then a tag: `v` (value), `l` (list, one encoded value) or `m` + user key (one map
//! entry) — so a key group, a key's slot and a map are each one contiguous key range.
//! Timers are `[key group][u32::MAX][domain][timestamp][key]`, the timestamp big-endian
//! with its sign bit flipped, so a group's timers of a domain are in firing order and
//! the due ones are a range scan.
//! Entries of TTL states carry their stamps (`state::ttl`); a compaction filter drops
//! those expired at the moment the task last gave it ([`StateBackend::expire`]), so
//! they disappear as RocksDB rewrites its files, without being read. (A list is one
//! RocksDB value: it goes once all its elements expired; reads leave out the others.)
//! The write-ahead log is off: durability comes from checkpoints, and a subtask's
//! database is rebuilt from the latest checkpoint after any failure.
//!
//! A snapshot is a RocksDB checkpoint (hard links to immutable SST files, taken in
//! milliseconds) that the writer thread opens read-only and turns into canonical
//! entries.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ::rocksdb::{
    DB, DBCompressionType, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions,
};

use super::snapshot::{Entry, GroupEntries, SlotData, Timer};
use super::ttl::{Now, Ttl};
use super::{
    BackendSnapshot, DueTimer, KeyGroup, KeyGroupRange, Result, Scope, StateBackend, StateError,
    StateId, TimeDomain,
};

/// The state id part of every timer's key: never a registered state's.
const TIMERS: u32 = u32::MAX;
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
    /// Per domain, no pending timer is earlier than this: scans for due timers seek
    /// here, past the deleted keys of the timers already fired (a scan from the start
    /// of the range would step over every one of them until a compaction).
    timers_from: [i64; 2],
    /// What the compaction filter drops.
    expiring: Arc<RwLock<Expiring>>,
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
        let expiring = Arc::new(RwLock::new(Expiring::default()));
        let mut options = options();
        let rules = Arc::clone(&expiring);
        options.set_compaction_filter("weir-ttl", move |_level: u32, key: &[u8], value: &[u8]| {
            let rules = rules.read().unwrap_or_else(|e| e.into_inner());
            match rules.drops(key, value) {
                true => ::rocksdb::compaction_filter::Decision::Remove,
                false => ::rocksdb::compaction_filter::Decision::Keep,
            }
        });
        let db = DB::open(&options, dir).map_err(storage)?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(RocksDbBackend {
            db,
            range,
            write,
            snapshots: AtomicU64::new(0),
            timers_from: [i64::MIN; 2],
            expiring,
            folder,
        })
    }

    fn check(&self, scope: Scope<'_>) -> Result<()> {
        self.check_group(scope.key_group)
    }

    fn check_group(&self, key_group: KeyGroup) -> Result<()> {
        if self.range.contains(key_group) {
            Ok(())
        } else {
            Err(StateError::KeyGroupOutOfRange {
                key_group,
                range: self.range,
            })
        }
    }

    /// A group's timers of `domain` in firing order, as `(timestamp, key)`, read as the
    /// iterator is.
    fn group_timers(
        &self,
        group: KeyGroup,
        domain: TimeDomain,
    ) -> impl Iterator<Item = Result<(i64, Vec<u8>)>> + '_ {
        let prefix = timers_prefix(group, domain);
        let from = timer_key(group, domain, self.timers_from[domain as usize], b"");
        // Bounded, so that a seek in an empty group stops at its end instead of stepping
        // over the next group's deleted timers.
        let mut end = prefix.clone();
        *end.last_mut().expect("a domain byte") += 1;
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(end);
        let iterator = (self.db).iterator_opt(IteratorMode::From(&from, Direction::Forward), read);
        iterator.map(move |item| {
            let (stored, _) = item.map_err(storage)?;
            let timer = stored.get(prefix.len()..).and_then(parse_timer);
            let (timestamp, key) = timer
                .ok_or_else(|| StateError::Storage("a malformed timer in the store".into()))?;
            Ok((timestamp, key.to_vec()))
        })
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

/// The TTL states, by state id, and the moment the compaction filter judges them at.
#[derive(Debug, Default)]
struct Expiring {
    ttls: Vec<Option<Ttl>>,
    now: Option<Now>,
}

impl Expiring {
    /// Whether the compaction filter drops the stored pair `key`, `value`: an entry of
    /// a TTL state expired at `now` (a list once all its elements are).
    fn drops(&self, key: &[u8], value: &[u8]) -> bool {
        let Some(now) = &self.now else {
            return false;
        };
        let Some(StoreKey { state, tag, .. }) = parse_key(key) else {
            return false;
        };
        let Some(Some(ttl)) = (state != TIMERS)
            .then(|| self.ttls.get(state as usize))
            .flatten()
        else {
            return false;
        };
        match tag {
            b'l' => decode_list(value)
                .is_ok_and(|l| !l.is_empty() && l.iter().all(|e| ttl.expired(e, now))),
            _ => ttl.expired(value, now),
        }
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

/// `[group][TIMERS][domain]`: the prefix of a group's timers of one domain.
fn timers_prefix(group: KeyGroup, domain: TimeDomain) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(7 + 8 + 16);
    prefix.extend_from_slice(&group.0.to_be_bytes());
    prefix.extend_from_slice(&TIMERS.to_be_bytes());
    prefix.push(domain as u8);
    prefix
}

fn timer_key(group: KeyGroup, domain: TimeDomain, timestamp: i64, key: &[u8]) -> Vec<u8> {
    let mut stored = timers_prefix(group, domain);
    stored.extend_from_slice(&((timestamp as u64) ^ (1 << 63)).to_be_bytes());
    stored.extend_from_slice(key);
    stored
}

/// A timer key's `[timestamp][key]` part.
fn parse_timer(bytes: &[u8]) -> Option<(i64, &[u8])> {
    let (timestamp, key) = bytes.split_first_chunk::<8>()?;
    Some(((u64::from_be_bytes(*timestamp) ^ (1 << 63)) as i64, key))
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

    fn timer_set(
        &mut self,
        key_group: KeyGroup,
        domain: TimeDomain,
        timestamp: i64,
        key: &[u8],
    ) -> Result<()> {
        self.check_group(key_group)?;
        let from = &mut self.timers_from[domain as usize];
        *from = (*from).min(timestamp);
        self.put(&timer_key(key_group, domain, timestamp, key), &[])
    }

    fn timer_delete(
        &mut self,
        key_group: KeyGroup,
        domain: TimeDomain,
        timestamp: i64,
        key: &[u8],
    ) -> Result<()> {
        self.check_group(key_group)?;
        let stored = timer_key(key_group, domain, timestamp, key);
        self.db.delete_opt(stored, &self.write).map_err(storage)
    }

    fn timers_due(
        &mut self,
        domain: TimeDomain,
        up_to: i64,
        limit: usize,
    ) -> Result<Vec<DueTimer>> {
        let groups = (self.range.iter()).map(|group| (group, self.group_timers(group, domain)));
        let due = super::first_due(domain, groups, up_to, limit)?;
        let mut batch = WriteBatch::default();
        for (group, timer) in &due {
            batch.delete(timer_key(*group, domain, timer.timestamp, &timer.key));
        }
        self.db.write_opt(batch, &self.write).map_err(storage)?;
        // What fired is the earliest there was.
        if let Some((_, last)) = due.last() {
            self.timers_from[domain as usize] = last.timestamp;
        }
        Ok(due)
    }

    fn next_timer(&self, domain: TimeDomain) -> Result<Option<i64>> {
        let mut next: Option<i64> = None;
        for group in self.range.iter() {
            if let Some((timestamp, _)) = self.group_timers(group, domain).next().transpose()? {
                next = Some(next.map_or(timestamp, |n| n.min(timestamp)));
            }
        }
        Ok(next)
    }

    fn expire(&mut self, ttls: &[(StateId, Ttl)], now: Now, _budget: usize) -> Result<()> {
        let mut rules = self.expiring.write().unwrap_or_else(|e| e.into_inner());
        let states = ttls
            .iter()
            .map(|(id, _)| id.0 as usize + 1)
            .max()
            .unwrap_or(0);
        rules.ttls.clear();
        rules.ttls.resize(states, None);
        for &(id, ttl) in ttls {
            rules.ttls[id.0 as usize] = Some(ttl);
        }
        rules.now = Some(now);
        Ok(())
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
            for timer in &group.timers {
                let stored = timer_key(group.group, timer.domain, timer.timestamp, &timer.key);
                batch.put(stored, []);
            }
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
        let malformed = || StateError::Storage("a malformed key in the state store".into());
        let (group, state) = key
            .split_first_chunk::<2>()
            .and_then(|(group, rest)| Some((group, rest.split_first_chunk::<4>()?)))
            .map(|(group, (state, _))| (KeyGroup(u16::from_be_bytes(*group)), *state))
            .ok_or_else(malformed)?;
        if groups.last().is_none_or(|g| g.group != group) {
            groups.push(GroupEntries {
                group,
                ..GroupEntries::default()
            });
        }
        if u32::from_be_bytes(state) == TIMERS {
            let (&domain, rest) = key[6..].split_first().ok_or_else(malformed)?;
            let domain = match domain {
                0 => TimeDomain::Event,
                1 => TimeDomain::Processing,
                _ => return Err(malformed()),
            };
            let (timestamp, timer_key) = parse_timer(rest).ok_or_else(malformed)?;
            let timers = &mut groups.last_mut().expect("pushed above").timers;
            timers.push(Timer {
                domain,
                timestamp,
                key: timer_key.to_vec(),
            });
            continue;
        }
        let StoreKey {
            state,
            key: user_key,
            tag,
            rest,
        } = parse_key(&key).ok_or_else(malformed)?;
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

/// The parts of a store key after its group: `[group][state][len][key][tag][rest]`.
struct StoreKey<'a> {
    state: u32,
    key: &'a [u8],
    tag: u8,
    /// The user key of a map entry.
    rest: &'a [u8],
}

fn parse_key(bytes: &[u8]) -> Option<StoreKey<'_>> {
    let (_group, rest) = bytes.split_first_chunk::<2>()?;
    let (state, rest) = rest.split_first_chunk::<4>()?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    let key = rest.get(..len)?;
    let (&tag, tail) = rest.get(len..)?.split_first()?;
    Some(StoreKey {
        state: u32::from_be_bytes(*state),
        key,
        tag,
        rest: tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ttl::{self, TtlUpdate};

    #[test]
    fn a_compaction_drops_expired_ttl_entries_without_reading_them() {
        let dir = std::env::temp_dir().join(format!("weir-ttl-compaction-{}", std::process::id()));
        let mut b = RocksDbBackend::create(&dir, KeyGroupRange::all(128)).unwrap();
        let ttl = Ttl {
            ttl_ms: 1_000,
            domain: TimeDomain::Event,
            update: TtlUpdate::OnCreateAndWrite,
        };
        let (value, map, list, plain) = (StateId(0), StateId(1), StateId(2), StateId(3));
        // Even keys written at event time 0 (expired at 1000), odd ones at 5000.
        for i in 0..1_000u32 {
            let key = format!("user-{i}");
            let stamp = if i % 2 == 0 { 0 } else { 5_000 };
            let scope = |state| Scope {
                state,
                key_group: KeyGroup::of(key.as_bytes(), 128),
                key: key.as_bytes(),
            };
            let entry = ttl::stamped(stamp, b"v");
            b.value_put(scope(value), &entry).unwrap();
            b.map_put(scope(map), vec![(b"a".to_vec(), entry.clone())])
                .unwrap();
            // A list goes once all its elements expired.
            let elements = vec![ttl::stamped(0, b"e"), entry.clone()];
            b.list_replace(scope(list), elements).unwrap();
            b.value_put(scope(plain), &entry).unwrap();
            b.timer_set(scope(value).key_group, TimeDomain::Event, 0, key.as_bytes())
                .unwrap();
        }
        b.db.flush().unwrap();
        let live = |b: &RocksDbBackend| b.db.iterator(IteratorMode::Start).count();
        assert_eq!(live(&b), 5_000);
        // Nothing has a TTL until the task says so.
        b.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        assert_eq!(live(&b), 5_000);
        let now = Now {
            watermark: Some(2_000),
            processing: 0,
        };
        let ttls = [(value, ttl), (map, ttl), (list, ttl)];
        b.expire(&ttls, now, 0).unwrap();
        b.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        // Gone: 500 values and 500 map entries and 500 lists; kept: the live half,
        // the state without TTL and every timer.
        assert_eq!(live(&b), 5_000 - 3 * 500);
        let key = b"user-0";
        let scope = Scope {
            state: plain,
            key_group: KeyGroup::of(key, 128),
            key,
        };
        assert!(b.value_get(scope).unwrap().is_some());
    }
}
