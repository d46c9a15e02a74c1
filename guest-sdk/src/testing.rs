//! A native test harness: runs an operator without Wasm against an in-memory state
//! store, with the same state semantics as the host (state scoped by key, maps ordered
//! by key bytes, snapshots restored into a fresh instance).
//!
//! ```
//! # use guest_sdk::{Context, Operator, Result, ValueState};
//! # const SEEN: ValueState<u64> = ValueState::new("seen");
//! # #[derive(Default)] struct Seen;
//! # impl Operator for Seen {
//! #     type Input = serde_json::Value; type Output = u64;
//! #     fn process(&mut self, _: serde_json::Value, ctx: &mut Context<u64>) -> Result<()> {
//! #         let n = SEEN.get()?.unwrap_or(0) + 1; SEEN.set(&n)?; ctx.emit(n)
//! #     }
//! # }
//! use guest_sdk::testing::Harness;
//! use serde_json::json;
//!
//! let mut harness = Harness::<Seen>::new().unwrap();
//! assert_eq!(harness.push("a", json!({})).unwrap(), [json!(1)]);
//! assert_eq!(harness.push("a", json!({})).unwrap(), [json!(2)]);
//! assert_eq!(harness.state(&SEEN, "a"), Some(2));
//!
//! let mut restored = Harness::<Seen>::restore(&harness.snapshot()).unwrap();
//! assert_eq!(restored.push("a", json!({})).unwrap(), [json!(3)]);
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cache::{BatchLists, BatchValues, ListChanges, ValueChanges, marked};
use crate::runtime::{
    self, Emitted, Env, Host, Input, Kind, Level, TaskInfo, TimeDomain, Timer, TimerChanges,
};
use crate::state::decode;
use crate::{
    AggregatingState, BroadcastState, Error, ListState, MapState, Operator, OperatorListState,
    ReducingState, Result, UnionListState, ValueState,
};

/// Runs an operator natively, record by record or batch by batch.
pub struct Harness<O: Operator> {
    operator: O,
    env: Option<Env>,
    shared: Rc<RefCell<Shared>>,
    config: String,
    inputs: Inputs,
    attempt: u32,
}

/// A harness's inputs: name, and whether broadcast.
type Inputs = Vec<(String, bool)>;

/// A copy of a harness's state, to restore into a fresh operator instance.
#[derive(Debug, Clone)]
pub struct Snapshot {
    store: Store,
    config: String,
    inputs: Inputs,
    attempt: u32,
}

impl<O: Operator> Harness<O> {
    /// Creates and opens the operator with an empty config.
    pub fn new() -> Result<Harness<O>> {
        Harness::with_config(Value::Object(Default::default()))
    }

    /// Creates and opens the operator with `config` (a JSON object, like the job
    /// file's `[operator.config]` table).
    pub fn with_config(config: Value) -> Result<Harness<O>> {
        Harness::with_inputs(config, &["input"], &[])
    }

    /// Creates and opens an operator that reads several inputs, as a job file's
    /// `input = ["tx", { name = "rules", broadcast = true }]` gives them: `keyed` first,
    /// then `broadcast`. Push to one with [`Harness::push_to`].
    pub fn with_inputs(config: Value, keyed: &[&str], broadcast: &[&str]) -> Result<Harness<O>> {
        let inputs = (keyed.iter().map(|name| (name.to_string(), false)))
            .chain(broadcast.iter().map(|name| (name.to_string(), true)))
            .collect();
        Harness::start(Store::default(), config.to_string(), inputs, 0, (0, 1))
    }

    /// Creates and opens a fresh operator instance whose state is `snapshot`, with the
    /// config the snapshotted harness had, as the host does after a failure: its
    /// [`TaskInfo::attempt`](crate::TaskInfo) is one more than the snapshotted one's.
    pub fn restore(snapshot: &Snapshot) -> Result<Harness<O>> {
        Harness::start(
            snapshot.store.clone(),
            snapshot.config.clone(),
            snapshot.inputs.clone(),
            snapshot.attempt + 1,
            (0, 1),
        )
    }

    /// Restores `parallelism` fresh instances from the snapshots of `snapshots.len()`
    /// instances (in subtask order), as the host does when the operator's parallelism
    /// changes: operator list state is shared out by its redistribution (split: every
    /// element to exactly one instance; union: all to all), broadcast state is copied to
    /// every instance, and each instance's
    /// [`TaskInfo`](crate::TaskInfo) names its subtask and the new parallelism. Keyed
    /// state is merged and given to every instance, so a test may push any key to any of
    /// them (the host would route each key to one); each pending timer goes to one
    /// instance, chosen by its key, and each instance gets the lowest watermark.
    pub fn restore_rescaled(snapshots: &[Snapshot], parallelism: usize) -> Result<Vec<Harness<O>>> {
        let first = snapshots
            .first()
            .ok_or_else(|| Error::new("restore_rescaled needs at least one snapshot"))?;
        let stores: Vec<&Store> = snapshots.iter().map(|s| &s.store).collect();
        let mut keyed = HashMap::new();
        for store in &stores {
            keyed.extend(store.slots.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let attempt = snapshots.iter().map(|s| s.attempt).max().unwrap_or(0) + 1;
        let p = parallelism.max(1);
        // Each timer to one instance (the host's choice would be its key group's).
        let timers = |subtask: usize| -> BTreeSet<PendingTimer> {
            (stores.iter().flat_map(|s| &s.timers))
                .filter(|(_, _, key)| owner(key, p) == subtask)
                .cloned()
                .collect()
        };
        let watermark = stores.iter().map(|s| s.watermark).min().flatten();
        redistribute(&stores, p)
            .into_iter()
            .enumerate()
            .map(|(subtask, operator)| {
                let store = Store {
                    slots: keyed.clone(),
                    operator,
                    broadcast: first.store.broadcast.clone(),
                    timers: timers(subtask),
                    watermark,
                };
                let task = (subtask as u32, parallelism.max(1) as u32);
                let (config, inputs) = (first.config.clone(), first.inputs.clone());
                Harness::start(store, config, inputs, attempt, task)
            })
            .collect()
    }

    /// The elements of operator list state `state` in this instance.
    pub fn operator_state<S: InspectOperator>(&self, state: &S) -> Vec<S::Element> {
        state.inspect(&self.shared.borrow().store)
    }

    /// The entries of broadcast state `state` in this instance, ordered by key bytes.
    pub fn broadcast_state<K: DeserializeOwned, V: DeserializeOwned>(
        &self,
        state: &BroadcastState<K, V>,
    ) -> Vec<(K, V)> {
        let shared = self.shared.borrow();
        let entries = shared.store.broadcast.iter().find(|(n, _)| n == state.name);
        entries.map_or_else(Vec::new, |(name, entries)| {
            (entries.iter())
                .map(|(k, v)| (decode_or_panic(name, k), decode_or_panic(name, v)))
                .collect()
        })
    }

    fn start(
        store: Store,
        config: String,
        inputs: Inputs,
        attempt: u32,
        (subtask, parallelism): (u32, u32),
    ) -> Result<Harness<O>> {
        let shared = Rc::new(RefCell::new(Shared {
            store,
            keys: Vec::new(),
            processing_time: 0,
            side: Vec::new(),
        }));
        let env = Env::new(Box::new(MemoryHost {
            shared: Rc::clone(&shared),
            names: Vec::new(),
        }));
        let mut harness = Harness {
            operator: O::default(),
            env: Some(env),
            shared,
            config,
            inputs,
            attempt,
        };
        let config = harness.config.clone();
        let inputs = harness.inputs.clone();
        let task = TaskInfo {
            operator: std::any::type_name::<O>()
                .rsplit("::")
                .next()
                .unwrap_or_default()
                .to_string(),
            subtask,
            parallelism,
            attempt,
        };
        harness.operator = harness.in_env(|_| runtime::open::<O>(&config, task, inputs))?;
        Ok(harness)
    }

    /// Runs `f` with this harness's environment installed, as the host would.
    fn in_env<R>(&mut self, f: impl FnOnce(&mut O) -> R) -> R {
        let previous = runtime::install(self.env.take());
        let result = f(&mut self.operator);
        self.env = runtime::install(previous);
        result
    }

    /// Processes one record with key `key`; returns what it emitted.
    pub fn push(&mut self, key: &str, record: Value) -> Result<Vec<Value>> {
        self.push_batch(&[(key, record)])
    }

    /// Processes one record with key `key` and event time `timestamp` (epoch
    /// milliseconds); returns what it emitted. (Records pushed otherwise have their
    /// index in the batch as their timestamp.)
    pub fn push_at(&mut self, key: &str, timestamp: i64, record: Value) -> Result<Vec<Value>> {
        let first = self.inputs.first().map(|(name, _)| name.clone());
        let input = first.unwrap_or_default();
        self.process(&input, &[(key, record)], |_| Some(timestamp))
    }

    /// Moves the event-time watermark to `watermark`, as the host does when one arrives:
    /// fires every event-time timer at or below it (first due first, those registered
    /// while firing included) and returns their outputs. A watermark at or below the
    /// current one changes nothing.
    pub fn advance_watermark(&mut self, watermark: i64) -> Result<Vec<Value>> {
        let mut shared = self.shared.borrow_mut();
        if shared.store.watermark.is_some_and(|w| w >= watermark) {
            return Ok(Vec::new());
        }
        shared.store.watermark = Some(watermark);
        drop(shared);
        self.fire(TimeDomain::Event, watermark)
    }

    /// Sets the processing time (`Context::current_processing_time`, epoch
    /// milliseconds; 0 when the harness starts) to `now`, and fires the processing-time
    /// timers due; returns their outputs.
    pub fn advance_processing_time(&mut self, now: i64) -> Result<Vec<Value>> {
        self.shared.borrow_mut().processing_time = now;
        self.fire(TimeDomain::Processing, now)
    }

    /// What the operator sent to side output `name` since the last time, in order.
    pub fn side_output(&mut self, name: &str) -> Vec<Value> {
        let mut shared = self.shared.borrow_mut();
        let (taken, kept) = std::mem::take(&mut shared.side)
            .into_iter()
            .partition(|(side, _)| side == name);
        shared.side = kept;
        taken.into_iter().map(|(_, record)| record).collect()
    }

    /// The event-time watermark, if one has come.
    pub fn watermark(&self) -> Option<i64> {
        self.shared.borrow().store.watermark
    }

    /// The pending timers of `key`, in firing order (event time first).
    pub fn timers(&self, key: &str) -> Vec<Timer> {
        let shared = self.shared.borrow();
        (shared.store.timers.iter())
            .filter(|(_, _, k)| k == key.as_bytes())
            .map(|&(domain, timestamp, _)| Timer { timestamp, domain })
            .collect()
    }

    /// Fires the timers of `domain` due at `up_to`, in batches as the host does.
    fn fire(&mut self, domain: TimeDomain, up_to: i64) -> Result<Vec<Value>> {
        let mut emitted = Vec::new();
        loop {
            let due: Vec<PendingTimer> = {
                let mut shared = self.shared.borrow_mut();
                let mut due: Vec<PendingTimer> = (shared.store.timers.iter())
                    .filter(|(d, t, _)| *d == domain && *t <= up_to)
                    .cloned()
                    .collect();
                due.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
                due.truncate(BATCH);
                due.iter().for_each(|timer| {
                    shared.store.timers.remove(timer);
                });
                shared.keys = due.iter().map(|(_, _, key)| key.clone()).collect();
                due
            };
            if due.is_empty() {
                return Ok(emitted);
            }
            let fired = due.iter().map(|(_, t, key)| (key.as_slice(), *t));
            let result = self.in_env(|operator| runtime::on_timer(operator, fired, domain));
            let outputs = result.map_err(|(e, index)| {
                let (_, timestamp, key) = &due[index as usize];
                let key = String::from_utf8_lossy(key);
                Error::new(format!("timer at {timestamp} of key `{key}`: {e}"))
            })?;
            emitted.extend(decoded(outputs)?);
        }
    }

    /// Processes records in one batch, as the host does; returns what they emitted.
    pub fn push_batch(&mut self, records: &[(&str, Value)]) -> Result<Vec<Value>> {
        let first = self.inputs.first().map(|(name, _)| name.clone());
        self.push_batch_to(first.as_deref().unwrap_or_default(), records)
    }

    /// Processes one record of the input `input` with key `key` (ignored for a
    /// broadcast input: its records have no key); returns what it emitted.
    pub fn push_to(&mut self, input: &str, key: &str, record: Value) -> Result<Vec<Value>> {
        self.push_batch_to(input, &[(key, record)])
    }

    /// Processes records of the input `input` in one batch; returns what they emitted.
    pub fn push_batch_to(&mut self, input: &str, records: &[(&str, Value)]) -> Result<Vec<Value>> {
        self.process(input, records, |i| Some(i as i64))
    }

    /// Processes records of `input` in one batch, record `i` at `timestamp(i)`.
    fn process(
        &mut self,
        input: &str,
        records: &[(&str, Value)],
        timestamp: impl Fn(usize) -> Option<i64>,
    ) -> Result<Vec<Value>> {
        let (index, broadcast) = match self.inputs.iter().position(|(name, _)| name == input) {
            Some(index) => (index as u32, self.inputs[index].1),
            None => return Err(Error::new(format!("the harness has no input `{input}`"))),
        };
        let records: Vec<(&str, Value)> = (records.iter())
            .map(|(key, record)| (if broadcast { "" } else { *key }, record.clone()))
            .collect();
        let payloads: Vec<Vec<u8>> = records
            .iter()
            .map(|(_, r)| r.to_string().into_bytes())
            .collect();
        self.shared.borrow_mut().keys =
            records.iter().map(|(k, _)| k.as_bytes().to_vec()).collect();
        let inputs = records
            .iter()
            .zip(&payloads)
            .enumerate()
            .map(|(i, ((key, _), payload))| Input {
                key: key.as_bytes(),
                payload,
                timestamp: timestamp(i),
            });
        let result = self.in_env(|operator| runtime::process(operator, inputs, index));
        let outputs = result.map_err(|(e, index)| Error::new(format!("record {index}: {e}")))?;
        decoded(outputs)
    }

    /// The end of the input, as the host has it: fires every pending event-time timer
    /// (the watermark goes to the end of time), then calls the operator's `close`;
    /// returns the timers' outputs. Processing-time timers do not fire.
    pub fn close(&mut self) -> Result<Vec<Value>> {
        let emitted = self.advance_watermark(i64::MAX)?;
        self.in_env(|operator| operator.close())?;
        Ok(emitted)
    }

    /// The state `state` of `key`, as the operator would read it for a record with
    /// that key.
    pub fn state<S: Inspect>(&self, state: &S, key: &str) -> S::View {
        state.inspect(&self.shared.borrow().store, key.as_bytes())
    }

    /// A copy of all state.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            store: self.shared.borrow().store.clone(),
            config: self.config.clone(),
            inputs: self.inputs.clone(),
            attempt: self.attempt,
        }
    }
}

/// The most timers one `on_timer` batch holds, as on the host.
const BATCH: usize = 512;

/// A pending timer: its domain, timestamp and key.
type PendingTimer = (TimeDomain, i64, Vec<u8>);

/// Which of `parallelism` instances a key's timers go to on a rescaled restore.
fn owner(key: &[u8], parallelism: usize) -> usize {
    // FNV-1a: stable across runs and platforms.
    let hash = (key.iter()).fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % parallelism as u64) as usize
}

/// A call's outputs, decoded.
fn decoded(outputs: Emitted) -> Result<Vec<Value>> {
    outputs
        .payloads
        .iter()
        .map(|bytes| Ok(serde_json::from_slice(bytes)?))
        .collect()
}

/// An operator state handle the harness can read.
pub trait InspectOperator {
    /// An element of the list.
    type Element;
    /// Reads the list's elements.
    #[doc(hidden)]
    fn inspect(&self, store: &Store) -> Vec<Self::Element>;
}

fn operator_elements<T: DeserializeOwned>(store: &Store, name: &str) -> Vec<T> {
    store
        .operator
        .iter()
        .filter(|l| l.name == name)
        .flat_map(|l| &l.elements)
        .map(|b| decode_or_panic(name, b))
        .collect()
}

impl<T: Serialize + DeserializeOwned> InspectOperator for OperatorListState<T> {
    type Element = T;
    fn inspect(&self, store: &Store) -> Vec<T> {
        operator_elements(store, self.name)
    }
}

impl<T: Serialize + DeserializeOwned> InspectOperator for UnionListState<T> {
    type Element = T;
    fn inspect(&self, store: &Store) -> Vec<T> {
        operator_elements(store, self.name)
    }
}

/// A state handle the harness can read for any key.
pub trait Inspect {
    /// What reading the state gives.
    type View;
    /// Reads the state of `key`.
    #[doc(hidden)]
    fn inspect(&self, store: &Store, key: &[u8]) -> Self::View;
}

impl<T: Serialize + DeserializeOwned> Inspect for ValueState<T> {
    type View = Option<T>;
    fn inspect(&self, store: &Store, key: &[u8]) -> Option<T> {
        store
            .value(self.name, key)
            .map(|b| decode_or_panic(self.name, b))
    }
}

impl<T: Serialize + DeserializeOwned> Inspect for ReducingState<T> {
    type View = Option<T>;
    fn inspect(&self, store: &Store, key: &[u8]) -> Option<T> {
        store
            .value(self.name, key)
            .map(|b| decode_or_panic(self.name, b))
    }
}

impl<IN, ACC: Serialize + DeserializeOwned, OUT> Inspect for AggregatingState<IN, ACC, OUT> {
    /// The accumulator.
    type View = Option<ACC>;
    fn inspect(&self, store: &Store, key: &[u8]) -> Option<ACC> {
        store
            .value(self.name, key)
            .map(|b| decode_or_panic(self.name, b))
    }
}

impl<T: Serialize + DeserializeOwned> Inspect for ListState<T> {
    type View = Vec<T>;
    fn inspect(&self, store: &Store, key: &[u8]) -> Vec<T> {
        match store.slots.get(&(self.name.to_string(), key.to_vec())) {
            Some(Slot::List(list)) => list.iter().map(|b| decode_or_panic(self.name, b)).collect(),
            _ => Vec::new(),
        }
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Inspect for MapState<K, V> {
    type View = Vec<(K, V)>;
    fn inspect(&self, store: &Store, key: &[u8]) -> Vec<(K, V)> {
        match store.slots.get(&(self.name.to_string(), key.to_vec())) {
            Some(Slot::Map(map)) => map
                .iter()
                .map(|(k, v)| (decode_or_panic(self.name, k), decode_or_panic(self.name, v)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn decode_or_panic<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> T {
    decode(name, bytes).unwrap_or_else(|e| panic!("{e}"))
}

/// All state of a harness: slots by state name and key, and operator list states.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct Store {
    slots: HashMap<(String, Vec<u8>), Slot>,
    operator: Vec<OperatorList>,
    /// Broadcast states by name, in registration order.
    broadcast: Vec<(String, Entries)>,
    /// Pending timers.
    timers: BTreeSet<PendingTimer>,
    /// The event-time watermark, once one came.
    watermark: Option<i64>,
}

/// A broadcast state's entries.
type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

/// One operator list state of a harness.
#[derive(Debug, Clone)]
struct OperatorList {
    name: String,
    union: bool,
    elements: Vec<Vec<u8>>,
}

/// Shares operator list states out to `parallelism` new instances as the host does:
/// split lists concatenated in instance order and cut into even contiguous runs (kept
/// where they were at an unchanged parallelism), union lists given whole to every
/// instance.
fn redistribute(old: &[&Store], parallelism: usize) -> Vec<Vec<OperatorList>> {
    let mut new = vec![Vec::new(); parallelism];
    let mut names: Vec<(&str, bool)> = Vec::new();
    for list in old.iter().flat_map(|s| &s.operator) {
        if !names.iter().any(|(n, _)| *n == list.name) {
            names.push((&list.name, list.union));
        }
    }
    for (name, union) in names {
        let all: Vec<&Vec<u8>> = old
            .iter()
            .flat_map(|s| s.operator.iter().filter(|l| l.name == name))
            .flat_map(|l| &l.elements)
            .collect();
        let (each, extra) = (all.len() / parallelism, all.len() % parallelism);
        for (i, lists) in new.iter_mut().enumerate() {
            let own: Vec<&Vec<u8>>;
            let mine = if union {
                &all[..]
            } else if old.len() == parallelism {
                own = old[i]
                    .operator
                    .iter()
                    .filter(|l| l.name == name)
                    .flat_map(|l| &l.elements)
                    .collect();
                &own[..]
            } else {
                &all[i * each + i.min(extra)..][..each + usize::from(i < extra)]
            };
            lists.push(OperatorList {
                name: name.to_string(),
                union,
                elements: mine.iter().map(|e| e.to_vec()).collect(),
            });
        }
    }
    new
}

#[derive(Debug, Clone)]
enum Slot {
    Value(Vec<u8>),
    List(Vec<Vec<u8>>),
    Map(BTreeMap<Vec<u8>, Vec<u8>>),
}

impl Store {
    fn value(&self, name: &str, key: &[u8]) -> Option<&[u8]> {
        match self.slots.get(&(name.to_string(), key.to_vec())) {
            Some(Slot::Value(v)) => Some(v),
            _ => None,
        }
    }
}

/// What the harness and its [`MemoryHost`] share: the state, and the keys of the
/// batch being processed.
struct Shared {
    store: Store,
    keys: Vec<Vec<u8>>,
    /// What `current_processing_time` reads.
    processing_time: i64,
    /// What was sent to side outputs and not yet taken: side output, record.
    side: Vec<(String, Value)>,
}

/// The harness's [`Host`].
struct MemoryHost {
    shared: Rc<RefCell<Shared>>,
    names: Vec<(String, Kind)>,
}

impl MemoryHost {
    fn slot_key(&self, id: u32, rec: u32) -> (String, Vec<u8>) {
        (
            self.names[id as usize].0.clone(),
            self.shared.borrow().keys[rec as usize].clone(),
        )
    }

    /// For each record of the batch, the index of its key among the batch's distinct
    /// keys; `first` is called with the first record of each key, in order.
    fn distinct_keys(&mut self, mut first: impl FnMut(&mut Self, u32)) -> Vec<u32> {
        let keys = self.shared.borrow().keys.clone();
        let mut distinct: HashMap<Vec<u8>, u32> = HashMap::new();
        keys.into_iter()
            .enumerate()
            .map(|(rec, key)| {
                let next = distinct.len() as u32;
                *distinct.entry(key).or_insert_with(|| {
                    first(self, rec as u32);
                    next
                })
            })
            .collect()
    }

    fn slots(&self) -> std::cell::RefMut<'_, HashMap<(String, Vec<u8>), Slot>> {
        std::cell::RefMut::map(self.shared.borrow_mut(), |s| &mut s.store.slots)
    }

    /// Runs `f` on the key's list (created empty), then drops it if left empty.
    fn with_list(&mut self, id: u32, rec: u32, f: impl FnOnce(&mut Vec<Vec<u8>>)) {
        let key = self.slot_key(id, rec);
        let mut slots = self.slots();
        let slot = slots
            .entry(key.clone())
            .or_insert_with(|| Slot::List(Vec::new()));
        let Slot::List(list) = slot else {
            panic!("state `{}` is not list state", key.0)
        };
        f(list);
        if list.is_empty() {
            slots.remove(&key);
        }
    }

    /// Runs `f` on the key's map (created empty), then drops it if left empty.
    fn with_map(&mut self, id: u32, rec: u32, f: impl FnOnce(&mut BTreeMap<Vec<u8>, Vec<u8>>)) {
        let key = self.slot_key(id, rec);
        let mut slots = self.slots();
        let slot = slots
            .entry(key.clone())
            .or_insert_with(|| Slot::Map(BTreeMap::new()));
        let Slot::Map(map) = slot else {
            panic!("state `{}` is not map state", key.0)
        };
        f(map);
        if map.is_empty() {
            slots.remove(&key);
        }
    }

    fn map_entries_ref(&self, id: u32, rec: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        let key = self.slot_key(id, rec);
        match self.slots().get(&key) {
            Some(Slot::Map(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            _ => Vec::new(),
        }
    }
}

impl Host for MemoryHost {
    fn register(&mut self, name: &str, kind: Kind) -> u32 {
        self.names.push((name.to_string(), kind));
        (self.names.len() - 1) as u32
    }
    /// The harness keeps TTL state as if it had none: expiry is the host's (test it
    /// with `host test`, which runs the operator on the host's own state).
    fn register_with_ttl(&mut self, name: &str, kind: Kind, _ttl: crate::Ttl) -> u32 {
        self.register(name, kind)
    }
    fn value_get(&mut self, id: u32, rec: u32) -> Option<Vec<u8>> {
        let key = self.slot_key(id, rec);
        match self.slots().get(&key) {
            Some(Slot::Value(v)) => Some(v.clone()),
            _ => None,
        }
    }
    fn value_update(&mut self, id: u32, rec: u32, value: Vec<u8>) {
        let key = self.slot_key(id, rec);
        self.slots().insert(key, Slot::Value(value));
    }
    fn value_clear(&mut self, id: u32, rec: u32) {
        let key = self.slot_key(id, rec);
        self.slots().remove(&key);
    }
    fn value_get_batch(&mut self, id: u32) -> BatchValues {
        let mut values = BatchValues {
            keys: Vec::new(),
            lengths: Vec::new(),
            absent: Vec::new(),
            data: Vec::new(),
        };
        values.keys = self.distinct_keys(|host, rec| {
            let value = host.value_get(id, rec);
            if value.is_none() {
                values.absent.push(values.lengths.len() as u32);
            }
            let value = value.unwrap_or_default();
            values.lengths.push(value.len() as u32);
            values.data.extend(value);
        });
        values
    }
    fn value_set_many(&mut self, id: u32, changes: ValueChanges) {
        let mut data = changes.data.as_slice();
        let removes = marked(&changes.removals, changes.records.len());
        for ((&rec, &length), remove) in changes.records.iter().zip(&changes.lengths).zip(removes) {
            let (value, rest) = data.split_at(length as usize);
            data = rest;
            match remove {
                false => self.value_update(id, rec, value.to_vec()),
                true => self.value_clear(id, rec),
            }
        }
    }
    fn list_get(&mut self, id: u32, rec: u32) -> Vec<Vec<u8>> {
        let key = self.slot_key(id, rec);
        match self.slots().get(&key) {
            Some(Slot::List(l)) => l.clone(),
            _ => Vec::new(),
        }
    }
    fn list_add_all(&mut self, id: u32, rec: u32, mut elements: Vec<Vec<u8>>) {
        self.with_list(id, rec, |list| list.append(&mut elements));
    }
    fn list_update(&mut self, id: u32, rec: u32, elements: Vec<Vec<u8>>) {
        self.with_list(id, rec, |list| *list = elements);
    }
    fn list_clear(&mut self, id: u32, rec: u32) {
        self.value_clear(id, rec)
    }
    fn list_get_batch(&mut self, id: u32) -> BatchLists {
        let mut lists = BatchLists {
            keys: Vec::new(),
            counts: Vec::new(),
            lengths: Vec::new(),
            data: Vec::new(),
        };
        lists.keys = self.distinct_keys(|host, rec| {
            let elements = host.list_get(id, rec);
            lists.counts.push(elements.len() as u32);
            for element in elements {
                lists.lengths.push(element.len() as u32);
                lists.data.extend(element);
            }
        });
        lists
    }
    fn list_set_many(&mut self, id: u32, changes: ListChanges) {
        let mut lengths = changes.lengths.into_iter();
        let mut data = changes.data.as_slice();
        for (rec, count) in changes.records.into_iter().zip(changes.counts) {
            let elements = lengths
                .by_ref()
                .take(count as usize)
                .map(|length| {
                    let (element, rest) = data.split_at(length as usize);
                    data = rest;
                    element.to_vec()
                })
                .collect();
            self.list_update(id, rec, elements);
        }
    }
    fn map_get(&mut self, id: u32, rec: u32, user_key: &[u8]) -> Option<Vec<u8>> {
        let key = self.slot_key(id, rec);
        match self.slots().get(&key) {
            Some(Slot::Map(map)) => map.get(user_key).cloned(),
            _ => None,
        }
    }
    fn map_put_all(&mut self, id: u32, rec: u32, entries: Vec<(Vec<u8>, Vec<u8>)>) {
        self.with_map(id, rec, |map| map.extend(entries));
    }
    fn map_remove(&mut self, id: u32, rec: u32, user_key: &[u8]) {
        self.with_map(id, rec, |map| {
            map.remove(user_key);
        });
    }
    fn map_contains(&mut self, id: u32, rec: u32, user_key: &[u8]) -> bool {
        self.map_get(id, rec, user_key).is_some()
    }
    fn map_entries(&mut self, id: u32, rec: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map_entries_ref(id, rec)
    }
    fn map_keys(&mut self, id: u32, rec: u32) -> Vec<Vec<u8>> {
        self.map_entries_ref(id, rec)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }
    fn map_values(&mut self, id: u32, rec: u32) -> Vec<Vec<u8>> {
        self.map_entries_ref(id, rec)
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }
    fn map_is_empty(&mut self, id: u32, rec: u32) -> bool {
        self.map_entries_ref(id, rec).is_empty()
    }
    fn map_clear(&mut self, id: u32, rec: u32) {
        self.value_clear(id, rec)
    }
    fn operator_register_list(&mut self, name: &str, union: bool) -> u32 {
        let lists = &mut self.shared.borrow_mut().store.operator;
        let id = match lists.iter().position(|l| l.name == name) {
            Some(id) => id,
            None => {
                lists.push(OperatorList {
                    name: name.to_string(),
                    union,
                    elements: Vec::new(),
                });
                lists.len() - 1
            }
        };
        lists[id].union = union;
        id as u32
    }
    fn operator_list_get(&mut self, id: u32) -> Vec<Vec<u8>> {
        self.shared.borrow().store.operator[id as usize]
            .elements
            .clone()
    }
    fn operator_list_add_all(&mut self, id: u32, elements: Vec<Vec<u8>>) {
        let lists = &mut self.shared.borrow_mut().store.operator;
        lists[id as usize].elements.extend(elements);
    }
    fn operator_list_update(&mut self, id: u32, elements: Vec<Vec<u8>>) {
        self.shared.borrow_mut().store.operator[id as usize].elements = elements;
    }
    fn broadcast_register(&mut self, name: &str) -> u32 {
        let states = &mut self.shared.borrow_mut().store.broadcast;
        let id = match states.iter().position(|(n, _)| n == name) {
            Some(id) => id,
            None => {
                states.push((name.to_string(), BTreeMap::new()));
                states.len() - 1
            }
        };
        id as u32
    }
    fn broadcast_get(&mut self, id: u32, key: &[u8]) -> Option<Vec<u8>> {
        self.shared.borrow().store.broadcast[id as usize]
            .1
            .get(key)
            .cloned()
    }
    fn broadcast_entries(&mut self, id: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        let shared = self.shared.borrow();
        let entries = &shared.store.broadcast[id as usize].1;
        entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    fn broadcast_put(&mut self, id: u32, key: &[u8], value: &[u8]) {
        let states = &mut self.shared.borrow_mut().store.broadcast;
        states[id as usize].1.insert(key.to_vec(), value.to_vec());
    }
    fn broadcast_remove(&mut self, id: u32, key: &[u8]) {
        self.shared.borrow_mut().store.broadcast[id as usize]
            .1
            .remove(key);
    }
    fn select_keys(&mut self, id: u32) -> Vec<Vec<u8>> {
        let name = &self.names[id as usize].0;
        let mut shared = self.shared.borrow_mut();
        let mut keys: Vec<Vec<u8>> = (shared.store.slots.keys())
            .filter(|(state, _)| state == name)
            .map(|(_, key)| key.clone())
            .collect();
        keys.sort();
        shared.keys = keys.clone();
        keys
    }
    fn emit_side(&mut self, name: &str, records: Emitted) {
        let decoded = decoded(records).expect("the SDK encodes every record as JSON");
        let mut shared = self.shared.borrow_mut();
        (shared.side).extend(decoded.into_iter().map(|record| (name.to_string(), record)));
    }
    fn set_timers(&mut self, changes: &TimerChanges) {
        let mut shared = self.shared.borrow_mut();
        let all = (changes.recs.iter())
            .zip(&changes.timestamps)
            .zip(&changes.changes);
        for ((&rec, &timestamp), change) in all {
            use runtime::TimerChange as C;
            let (domain, register) = match change {
                C::RegisterEvent => (TimeDomain::Event, true),
                C::DeleteEvent => (TimeDomain::Event, false),
                C::RegisterProcessing => (TimeDomain::Processing, true),
                C::DeleteProcessing => (TimeDomain::Processing, false),
            };
            let timer = (domain, timestamp, shared.keys[rec as usize].clone());
            match register {
                true => shared.store.timers.insert(timer),
                false => shared.store.timers.remove(&timer),
            };
        }
    }
    fn current_watermark(&mut self) -> Option<i64> {
        self.shared.borrow().store.watermark
    }
    fn current_processing_time(&mut self) -> i64 {
        self.shared.borrow().processing_time
    }
    fn log(&mut self, level: Level, message: &str) {
        eprintln!("{level:?} {message}");
    }
}
