//! Keyed state at the byte level: the backend trait every state backend implements, and
//! the ids that address state.
//!
//! Invariant: every entry lives in exactly one key group, and a backend only holds the
//! key groups of its range, so that snapshots and rescaling can work key group by key
//! group. Backends never see a Wasm type; the wasm layer converts at its boundary.

#[cfg(test)]
#[cfg(feature = "rocksdb")]
mod conformance;
pub mod key_group;
pub mod memory;
pub mod operator;
#[cfg(feature = "rocksdb")]
pub mod rocksdb;
pub mod snapshot;
pub mod ttl;

pub use key_group::{KeyGroup, KeyGroupRange};
use snapshot::{GroupEntries, Timer};

/// The id of a state registered by an operator instance: an index into its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateId(pub u32);

/// What kind of state a registered name is. Reducing and aggregating state are stored
/// like value state (the guest folds), but keep their kind for savepoints and tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// One value per key.
    Value,
    /// An ordered list of elements per key.
    List,
    /// A map from user keys to values per key.
    Map,
    /// A value folded by a reduce function in the guest.
    Reducing,
    /// An accumulator folded by an aggregate function in the guest.
    Aggregating,
}

impl StateKind {
    /// How a backend stores this kind.
    pub fn layout(self) -> Layout {
        match self {
            StateKind::Value | StateKind::Reducing | StateKind::Aggregating => Layout::Value,
            StateKind::List => Layout::List,
            StateKind::Map => Layout::Map,
        }
    }

    /// The kind called `name` (see [`StateKind::name`]).
    pub fn from_name(name: &str) -> Option<StateKind> {
        [
            StateKind::Value,
            StateKind::List,
            StateKind::Map,
            StateKind::Reducing,
            StateKind::Aggregating,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }

    /// The kind's name as users see it (job files, `host state`, errors).
    pub fn name(self) -> &'static str {
        match self {
            StateKind::Value => "value",
            StateKind::List => "list",
            StateKind::Map => "map",
            StateKind::Reducing => "reducing",
            StateKind::Aggregating => "aggregating",
        }
    }
}

/// The storage layouts a backend implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One byte string per key.
    Value,
    /// A list of byte strings per key.
    List,
    /// A sorted map of byte strings per key.
    Map,
}

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeDomain {
    /// Event time: due once the watermark reaches the timer.
    Event,
    /// Processing time: due once the host's wall clock reaches it.
    Processing,
}

impl TimeDomain {
    /// The domain's name as users see it (`host state`, errors).
    pub fn name(self) -> &'static str {
        match self {
            TimeDomain::Event => "event-time",
            TimeDomain::Processing => "processing-time",
        }
    }
}

/// A timer that came due: its key group and its timer.
pub type DueTimer = (KeyGroup, Timer);

/// One key's slot in one state: the state, the key's group and the key itself.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Which registered state.
    pub state: StateId,
    /// The key group of `key`.
    pub key_group: KeyGroup,
    /// The record key, as extracted by `key_by`.
    pub key: &'a [u8],
}

/// What a backend can get wrong: all of these are host bugs or misuse by the layer
/// above, never something a guest can cause directly (the wasm layer checks first).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// The key group is not one this backend holds.
    #[error("key group {key_group} is outside this backend's range {range}")]
    KeyGroupOutOfRange {
        /// The key group asked for.
        key_group: KeyGroup,
        /// The range the backend holds.
        range: KeyGroupRange,
    },
    /// The storage engine failed.
    #[error("the state store failed: {0}")]
    Storage(String),
    /// The slot holds another layout than the operation expects.
    #[error("state {state:?} is stored as {found:?}, not {expected:?}")]
    WrongLayout {
        /// The state.
        state: StateId,
        /// The layout the operation needs.
        expected: Layout,
        /// The layout found.
        found: Layout,
    },
}

/// Result of a backend operation.
pub type Result<T> = std::result::Result<T, StateError>;

/// A keyed state backend: byte-level slots addressed by [`Scope`].
///
/// Map entries are returned sorted by user key, so guests see the same order on every
/// backend.
pub trait StateBackend: Send {
    /// The key groups this backend holds.
    fn key_groups(&self) -> KeyGroupRange;

    /// Value layout: the value, if any.
    fn value_get(&self, scope: Scope<'_>) -> Result<Option<Vec<u8>>>;
    /// Value layout: appends the value, if any, to `out`; whether there was one. For
    /// batch reads: a backend holding values in memory copies them without a vector each.
    fn value_get_into(&self, scope: Scope<'_>, out: &mut Vec<u8>) -> Result<bool> {
        let value = self.value_get(scope)?;
        out.extend_from_slice(value.as_deref().unwrap_or_default());
        Ok(value.is_some())
    }
    /// Value layout: replaces the value.
    fn value_put(&mut self, scope: Scope<'_>, value: &[u8]) -> Result<()>;

    /// List layout: the elements, in insertion order.
    fn list_get(&self, scope: Scope<'_>) -> Result<Vec<Vec<u8>>>;
    /// List layout: appends elements.
    fn list_append(&mut self, scope: Scope<'_>, elements: Vec<Vec<u8>>) -> Result<()>;
    /// List layout: replaces all elements.
    fn list_replace(&mut self, scope: Scope<'_>, elements: Vec<Vec<u8>>) -> Result<()>;

    /// Map layout: the value under `user_key`, if any.
    fn map_get(&self, scope: Scope<'_>, user_key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Map layout: sets entries.
    fn map_put(&mut self, scope: Scope<'_>, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()>;
    /// Map layout: removes `user_key`.
    fn map_remove(&mut self, scope: Scope<'_>, user_key: &[u8]) -> Result<()>;
    /// Map layout: every entry, sorted by user key.
    fn map_entries(&self, scope: Scope<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Map layout: whether the map is empty.
    fn map_is_empty(&self, scope: Scope<'_>) -> Result<bool> {
        Ok(self.map_entries(scope)?.is_empty())
    }

    /// Any layout: removes the key's slot.
    fn clear(&mut self, scope: Scope<'_>) -> Result<()>;

    /// Every key that holds a slot in `state`, with its key group, ordered by key group
    /// and then by key bytes (the same order on every backend).
    fn keys(&self, state: StateId) -> Result<Vec<(KeyGroup, Vec<u8>)>>;

    /// Timers: sets the timer at `timestamp` in `domain` for `key` (once: setting a
    /// pending timer again changes nothing).
    fn timer_set(
        &mut self,
        key_group: KeyGroup,
        domain: TimeDomain,
        timestamp: i64,
        key: &[u8],
    ) -> Result<()>;
    /// Timers: deletes the timer, if it is pending.
    fn timer_delete(
        &mut self,
        key_group: KeyGroup,
        domain: TimeDomain,
        timestamp: i64,
        key: &[u8],
    ) -> Result<()>;
    /// Timers: removes and returns at most `limit` timers of `domain` due at `up_to`
    /// (timestamp ≤ `up_to`), the first to fire first: by timestamp, then key group,
    /// then key (the same order on every backend).
    fn timers_due(&mut self, domain: TimeDomain, up_to: i64, limit: usize)
    -> Result<Vec<DueTimer>>;
    /// Timers: the earliest pending timestamp in `domain`.
    fn next_timer(&self, domain: TimeDomain) -> Result<Option<i64>>;

    /// TTL: the registered states that have a TTL, and the moment to judge them at;
    /// called after the operator's calls. The memory backend removes expired entries,
    /// checking about `budget` slots a call (incremental cleanup); RocksDB gives them to
    /// its compaction filter, which drops expired entries as it rewrites files.
    fn expire(&mut self, ttls: &[(StateId, ttl::Ttl)], now: ttl::Now, budget: usize) -> Result<()> {
        let _ = (ttls, now, budget);
        Ok(())
    }

    /// A point-in-time copy of all state. Taking it must be cheap — the task waits for
    /// it — while turning it into entries happens later, on another thread.
    fn snapshot(&self) -> Box<dyn BackendSnapshot>;

    /// Loads snapshot entries (whose `state` is a [`StateId`]). Key groups outside this
    /// backend's range are skipped: they belong to other subtasks.
    fn restore(&mut self, groups: &[GroupEntries]) -> Result<()>;
}

/// The first `limit` timers due at `up_to` among the key groups' own, each group's
/// given in firing order (and read lazily: a k-way merge takes only what it returns):
/// the backends' `timers_due`, before they remove what it chose.
pub(crate) fn first_due<K, I>(
    domain: TimeDomain,
    groups: impl IntoIterator<Item = (KeyGroup, I)>,
    up_to: i64,
    limit: usize,
) -> Result<Vec<DueTimer>>
where
    K: AsRef<[u8]>,
    I: Iterator<Item = Result<(i64, K)>>,
{
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    // Each group's next timer; the heap orders groups by (time, group): a group's own
    // timers come in key order, so no key needs copying to break a tie.
    let mut merging: Vec<(I, Option<(i64, K)>)> = Vec::new();
    let mut heads = BinaryHeap::new();
    for (group, mut timers) in groups {
        if let Some(head) = timers.next().transpose()? {
            heads.push(Reverse((head.0, group, merging.len())));
            merging.push((timers, Some(head)));
        }
    }
    let mut due = Vec::new();
    while due.len() < limit {
        let Some(Reverse((timestamp, group, index))) = heads.pop() else {
            break;
        };
        if timestamp > up_to {
            break;
        }
        let (timers, head) = &mut merging[index];
        let next = timers.next().transpose()?;
        if let Some((next, _)) = &next {
            heads.push(Reverse((*next, group, index)));
        }
        let (_, key) = std::mem::replace(head, next).expect("a group in the heap has a head");
        let timer = Timer {
            domain,
            timestamp,
            key: key.as_ref().to_vec(),
        };
        due.push((group, timer));
    }
    Ok(due)
}

/// A fresh backend of kind `backend` holding `range`; RocksDB keeps its database in
/// `dir`.
pub fn open(
    backend: crate::job::Backend,
    dir: &std::path::Path,
    range: KeyGroupRange,
) -> Result<Box<dyn StateBackend>> {
    match backend {
        crate::job::Backend::Memory => Ok(Box::new(memory::MemoryBackend::new(range))),
        #[cfg(feature = "rocksdb")]
        crate::job::Backend::RocksDb => Ok(Box::new(rocksdb::RocksDbBackend::create(dir, range)?)),
        #[cfg(not(feature = "rocksdb"))]
        crate::job::Backend::RocksDb => {
            let _ = dir;
            Err(StateError::Storage(WITHOUT_ROCKSDB.into()))
        }
    }
}

/// Why a host built without the `rocksdb` feature refuses RocksDB state.
#[cfg(not(feature = "rocksdb"))]
pub const WITHOUT_ROCKSDB: &str = "this host was built without RocksDB (cargo's `rocksdb` \
     feature, on by default): use `backend = \"memory\"`, or install the host with \
     `cargo install --path host --locked`";

/// An operator instance's keyed state at one moment, as a checkpoint writes it.
pub struct KeyedCopy {
    /// The registered states, by id.
    pub states: Vec<snapshot::StateInfo>,
    /// The backend's copy (cheap to take; read it on another thread).
    pub backend: Box<dyn BackendSnapshot>,
    /// The clocks at that moment: TTL entries expired then are not written.
    pub taken_at: ttl::Now,
}

impl KeyedCopy {
    /// The copy as a snapshot file.
    pub fn encode(self) -> Result<Vec<u8>> {
        self.backend.encode(&self.states, self.taken_at)
    }

    /// The copy as a canonical [`snapshot::Snapshot`].
    pub fn into_snapshot(self) -> Result<snapshot::Snapshot> {
        Ok(snapshot::Snapshot {
            groups: self.backend.into_groups()?,
            states: self.states,
            taken_at: self.taken_at,
        })
    }
}

/// A backend's point-in-time copy of its state.
pub trait BackendSnapshot: Send {
    /// The non-empty key groups in order, entries sorted by state id, then key; an
    /// error if the copy could not be taken or read (never a partial or empty result).
    fn into_groups(self: Box<Self>) -> Result<Vec<GroupEntries>>;

    /// The copy, taken at `at`, as a snapshot file naming `states`
    /// ([`snapshot::Snapshot::encode`]'s bytes: TTL entries expired at `at` left out).
    /// Backends that can list their entries in order override this to encode them
    /// without copying them into [`GroupEntries`] first.
    fn encode(self: Box<Self>, states: &[snapshot::StateInfo], at: ttl::Now) -> Result<Vec<u8>> {
        let snapshot = snapshot::Snapshot {
            states: states.to_vec(),
            groups: self.into_groups()?,
            taken_at: at,
        };
        Ok(snapshot.encode())
    }

    /// The copy as a folder of the backend's own immutable files, if it has that form
    /// (a RocksDB checkpoint): incremental checkpoints copy only the files that are new.
    fn native_files(&self) -> Option<&std::path::Path> {
        None
    }
}
