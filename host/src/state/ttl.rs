//! State time-to-live: a state registered with a [`Ttl`] forgets each entry (a value, a
//! list element, a map entry) `ttl_ms` after it was last written (or read, by its
//! [`TtlUpdate`]), in processing time or in event time.
//!
//! Stored form: every entry of a TTL state is its bytes behind an 8-byte little-endian
//! stamp, the time of its last update in the TTL's domain. An entry is expired once the
//! clock of its domain reaches `stamp + ttl_ms` (event time: the task's watermark, so
//! that a replay expires what the first run expired; before the first watermark nothing
//! expires). Stamps are kept in snapshots, so a restored entry expires when it would
//! have; expired entries are never returned, and are left out of snapshots, cleaned
//! incrementally by the memory backend and dropped by RocksDB's compaction filter.

use super::{Result, Scope, StateBackend, TimeDomain};

/// Bytes of the stamp before every entry of a TTL state.
pub const STAMP_BYTES: usize = 8;

/// A state's time-to-live, as registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// How long an entry lives after its last update, in milliseconds.
    pub ttl_ms: u64,
    /// The clock it follows.
    pub domain: TimeDomain,
    /// What renews an entry's life.
    pub update: TtlUpdate,
}

/// What renews a TTL entry's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlUpdate {
    /// Creating or writing it (Flink's `OnCreateAndWrite`).
    OnCreateAndWrite,
    /// Also reading it (Flink's `OnReadAndWrite`).
    OnReadAndWrite,
}

impl TtlUpdate {
    /// The policy's name as users see it (`host state`).
    pub fn name(self) -> &'static str {
        match self {
            TtlUpdate::OnCreateAndWrite => "create-and-write",
            TtlUpdate::OnReadAndWrite => "read-and-write",
        }
    }
}

impl std::fmt::Display for Ttl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ttl {} ms of {}, renewed on {}",
            self.ttl_ms,
            self.domain.name(),
            self.update.name()
        )
    }
}

/// The clocks TTL follows, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// The task's watermark (event time), if one has come.
    pub watermark: Option<i64>,
    /// The host's wall clock, in milliseconds since the Unix epoch.
    pub processing: i64,
}

impl Now {
    /// A moment at which nothing has expired.
    pub const NEVER: Now = Now {
        watermark: None,
        processing: i64::MIN,
    };

    /// The time in `domain`, if it has one yet.
    pub fn of(&self, domain: TimeDomain) -> Option<i64> {
        match domain {
            TimeDomain::Event => self.watermark,
            TimeDomain::Processing => Some(self.processing),
        }
    }
}

/// `value` behind the stamp `stamp`.
pub fn stamped(stamp: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(STAMP_BYTES + value.len());
    out.extend_from_slice(&stamp.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// A stored entry's stamp and bytes (`None`: shorter than a stamp, which no TTL state
/// writes).
pub fn split(stored: &[u8]) -> Option<(i64, &[u8])> {
    let (stamp, value) = stored.split_first_chunk::<STAMP_BYTES>()?;
    Some((i64::from_le_bytes(*stamp), value))
}

impl Ttl {
    /// Whether an entry stamped `stamp` has expired at `now`.
    pub fn expired_at(&self, stamp: i64, now: &Now) -> bool {
        let ttl = i64::try_from(self.ttl_ms).unwrap_or(i64::MAX);
        now.of(self.domain)
            .is_some_and(|now| stamp.saturating_add(ttl) <= now)
    }

    /// Whether the stored entry `stored` has expired at `now` (one without a whole
    /// stamp is kept: it is not ours to judge).
    pub fn expired(&self, stored: &[u8], now: &Now) -> bool {
        split(stored).is_some_and(|(stamp, _)| self.expired_at(stamp, now))
    }
}

/// One key's slot in one state, read and written through its TTL (if it has one): what
/// the `state` import serves. Without a TTL every call goes straight to the backend;
/// with one, writes stamp entries with `stamp`, reads strip stamps, leave out expired
/// entries (removing them from the backend) and, under [`TtlUpdate::OnReadAndWrite`],
/// stamp what they return again.
pub struct Slot<'a> {
    /// The backend holding the slot.
    pub backend: &'a mut dyn StateBackend,
    /// The slot.
    pub scope: Scope<'a>,
    /// The state's TTL, the moment it is judged at, and the stamp of this call's writes.
    pub ttl: Option<(Ttl, Now, i64)>,
}

impl Slot<'_> {
    /// Value layout: the value, if any.
    pub fn value_get(&mut self) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        Ok(self.value_get_into(&mut out)?.then_some(out))
    }

    /// Value layout: appends the value, if any, to `out`; whether there was one.
    pub fn value_get_into(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        let Some((ttl, now, stamp)) = self.ttl else {
            return self.backend.value_get_into(self.scope, out);
        };
        let Some(stored) = self.backend.value_get(self.scope)? else {
            return Ok(false);
        };
        if ttl.expired(&stored, &now) {
            self.backend.clear(self.scope)?;
            return Ok(false);
        }
        let value = unstamped(&stored);
        out.extend_from_slice(value);
        if ttl.update == TtlUpdate::OnReadAndWrite {
            self.backend.value_put(self.scope, &stamped(stamp, value))?;
        }
        Ok(true)
    }

    /// Value layout: replaces the value.
    pub fn value_put(&mut self, value: &[u8]) -> Result<()> {
        match self.ttl {
            None => self.backend.value_put(self.scope, value),
            Some((_, _, stamp)) => self.backend.value_put(self.scope, &stamped(stamp, value)),
        }
    }

    /// Any layout: removes the slot.
    pub fn clear(&mut self) -> Result<()> {
        self.backend.clear(self.scope)
    }

    /// List layout: the live elements, in insertion order.
    pub fn list_get(&mut self) -> Result<Vec<Vec<u8>>> {
        let Some((ttl, now, stamp)) = self.ttl else {
            return self.backend.list_get(self.scope);
        };
        let stored = self.backend.list_get(self.scope)?;
        let count = stored.len();
        let live: Vec<Vec<u8>> = stored
            .into_iter()
            .filter(|element| !ttl.expired(element, &now))
            .collect();
        let elements: Vec<Vec<u8>> = live.iter().map(|e| unstamped(e).to_vec()).collect();
        if ttl.update == TtlUpdate::OnReadAndWrite && !live.is_empty() {
            let renewed = elements.iter().map(|e| stamped(stamp, e)).collect();
            self.backend.list_replace(self.scope, renewed)?;
        } else if live.len() < count {
            self.backend.list_replace(self.scope, live)?;
        }
        Ok(elements)
    }

    /// List layout: appends elements.
    pub fn list_append(&mut self, elements: Vec<Vec<u8>>) -> Result<()> {
        let elements = self.stamp_all(elements);
        self.backend.list_append(self.scope, elements)
    }

    /// List layout: replaces all elements. With a TTL, the new list's first elements
    /// that are the live list's first elements, unchanged, keep their stamps (SDKs
    /// write back a whole list after appending to it); the others are stamped now.
    pub fn list_replace(&mut self, elements: Vec<Vec<u8>>) -> Result<()> {
        let Some((ttl, now, stamp)) = self.ttl else {
            return self.backend.list_replace(self.scope, elements);
        };
        let mut stored = self.backend.list_get(self.scope)?;
        stored.retain(|element| !ttl.expired(element, &now));
        let kept = (stored.iter().zip(&elements))
            .take_while(|(stored, new)| unstamped(stored) == new.as_slice())
            .count();
        stored.truncate(kept);
        stored.extend(elements[kept..].iter().map(|e| stamped(stamp, e)));
        self.backend.list_replace(self.scope, stored)
    }

    fn stamp_all(&self, elements: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        match self.ttl {
            None => elements,
            Some((_, _, stamp)) => elements.iter().map(|e| stamped(stamp, e)).collect(),
        }
    }

    /// Map layout: the live value under `user_key`, if any.
    pub fn map_get(&mut self, user_key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some((ttl, now, stamp)) = self.ttl else {
            return self.backend.map_get(self.scope, user_key);
        };
        let Some(stored) = self.backend.map_get(self.scope, user_key)? else {
            return Ok(None);
        };
        if ttl.expired(&stored, &now) {
            self.backend.map_remove(self.scope, user_key)?;
            return Ok(None);
        }
        let value = unstamped(&stored).to_vec();
        if ttl.update == TtlUpdate::OnReadAndWrite {
            let renewed = vec![(user_key.to_vec(), stamped(stamp, &value))];
            self.backend.map_put(self.scope, renewed)?;
        }
        Ok(Some(value))
    }

    /// Map layout: sets entries.
    pub fn map_put(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        let entries = match self.ttl {
            None => entries,
            Some((_, _, stamp)) => (entries.into_iter())
                .map(|(k, v)| (k, stamped(stamp, &v)))
                .collect(),
        };
        self.backend.map_put(self.scope, entries)
    }

    /// Map layout: removes `user_key`.
    pub fn map_remove(&mut self, user_key: &[u8]) -> Result<()> {
        self.backend.map_remove(self.scope, user_key)
    }

    /// Map layout: the live entries, sorted by user key.
    pub fn map_entries(&mut self, renew: bool) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let Some((ttl, now, stamp)) = self.ttl else {
            return self.backend.map_entries(self.scope);
        };
        let mut live = Vec::new();
        for (key, stored) in self.backend.map_entries(self.scope)? {
            if ttl.expired(&stored, &now) {
                self.backend.map_remove(self.scope, &key)?;
            } else {
                live.push((key, unstamped(&stored).to_vec()));
            }
        }
        if renew && ttl.update == TtlUpdate::OnReadAndWrite && !live.is_empty() {
            let renewed = (live.iter())
                .map(|(k, v)| (k.clone(), stamped(stamp, v)))
                .collect();
            self.backend.map_put(self.scope, renewed)?;
        }
        Ok(live)
    }

    /// Map layout: whether the map has no live entry.
    pub fn map_is_empty(&mut self) -> Result<bool> {
        match self.ttl {
            None => self.backend.map_is_empty(self.scope),
            Some(_) => Ok(self.map_entries(false)?.is_empty()),
        }
    }
}

/// A stored entry's bytes without its stamp.
pub fn unstamped(stored: &[u8]) -> &[u8] {
    split(stored).map_or(stored, |(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryBackend;
    use crate::state::{KeyGroup, KeyGroupRange, StateId};

    const EVENT: Ttl = Ttl {
        ttl_ms: 100,
        domain: TimeDomain::Event,
        update: TtlUpdate::OnCreateAndWrite,
    };

    fn at(watermark: i64) -> Now {
        Now {
            watermark: Some(watermark),
            processing: 0,
        }
    }

    #[test]
    fn an_entry_expires_when_its_clock_reaches_its_stamp_plus_the_ttl() {
        let stored = stamped(1_000, b"v");
        assert!(!EVENT.expired(&stored, &at(1_099)));
        assert!(EVENT.expired(&stored, &at(1_100)));
        assert!(!EVENT.expired(&stored, &Now::NEVER), "no watermark yet");
        let processing = Ttl {
            domain: TimeDomain::Processing,
            ..EVENT
        };
        let wall = |processing| Now {
            watermark: Some(i64::MAX),
            processing,
        };
        assert!(!processing.expired(&stored, &wall(1_099)));
        assert!(processing.expired(&stored, &wall(1_100)));
        let forever = Ttl {
            ttl_ms: u64::MAX,
            ..EVENT
        };
        assert!(!forever.expired(&stored, &at(i64::MAX - 1)));
        assert!(
            forever.expired(&stored, &at(i64::MAX)),
            "the end of time ends all"
        );
    }

    fn slot<'a>(
        backend: &'a mut MemoryBackend,
        ttl: Ttl,
        now: Now,
        stamp: i64,
        key: &'a [u8],
    ) -> Slot<'a> {
        Slot {
            backend,
            scope: Scope {
                state: StateId(0),
                key_group: KeyGroup(0),
                key,
            },
            ttl: Some((ttl, now, stamp)),
        }
    }

    #[test]
    fn reads_never_return_what_expired_and_forget_it() {
        let mut backend = MemoryBackend::new(KeyGroupRange::all(1));
        slot(&mut backend, EVENT, at(0), 0, b"k")
            .value_put(b"v")
            .unwrap();
        let mut read = |now| slot(&mut backend, EVENT, at(now), now, b"k").value_get();
        assert_eq!(read(99).unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(read(100).unwrap(), None);
        // Gone from the backend, not only hidden.
        assert_eq!(read(0).unwrap(), None);
    }

    #[test]
    fn list_elements_and_map_entries_expire_one_by_one() {
        let mut backend = MemoryBackend::new(KeyGroupRange::all(1));
        slot(&mut backend, EVENT, at(0), 0, b"k")
            .list_append(vec![b"old".to_vec()])
            .unwrap();
        slot(&mut backend, EVENT, at(0), 50, b"k")
            .list_append(vec![b"new".to_vec()])
            .unwrap();
        let list = slot(&mut backend, EVENT, at(120), 120, b"k").list_get();
        assert_eq!(list.unwrap(), vec![b"new".to_vec()]);
        // Written back whole with one more element (as SDKs do), `new` keeps its stamp.
        let whole = vec![b"new".to_vec(), b"newer".to_vec()];
        slot(&mut backend, EVENT, at(120), 120, b"k")
            .list_replace(whole)
            .unwrap();
        let list = slot(&mut backend, EVENT, at(150), 150, b"k").list_get();
        assert_eq!(list.unwrap(), vec![b"newer".to_vec()]);

        let mut backend = MemoryBackend::new(KeyGroupRange::all(1));
        let put = |backend: &mut MemoryBackend, stamp, key: &[u8]| {
            slot(backend, EVENT, at(0), stamp, b"k")
                .map_put(vec![(key.to_vec(), b"v".to_vec())])
                .unwrap()
        };
        put(&mut backend, 0, b"a");
        put(&mut backend, 50, b"b");
        let mut map = slot(&mut backend, EVENT, at(120), 120, b"k");
        assert_eq!(map.map_get(b"a").unwrap(), None);
        assert_eq!(
            map.map_entries(true).unwrap(),
            vec![(b"b".to_vec(), b"v".to_vec())]
        );
        let mut later = slot(&mut backend, EVENT, at(150), 150, b"k");
        assert!(later.map_is_empty().unwrap());
    }

    #[test]
    fn read_and_write_renews_on_every_read_create_and_write_does_not() {
        for (update, alive_at_180) in [
            (TtlUpdate::OnReadAndWrite, true),
            (TtlUpdate::OnCreateAndWrite, false),
        ] {
            let ttl = Ttl { update, ..EVENT };
            let mut backend = MemoryBackend::new(KeyGroupRange::all(1));
            slot(&mut backend, ttl, at(0), 0, b"k")
                .value_put(b"v")
                .unwrap();
            // Read at 90: renewed to 90 + 100 under read-and-write.
            slot(&mut backend, ttl, at(90), 90, b"k")
                .value_get()
                .unwrap();
            let read = slot(&mut backend, ttl, at(180), 180, b"k").value_get();
            assert_eq!(read.unwrap().is_some(), alive_at_180, "{update:?}");
        }
    }
}
