//! The environment operator code runs in: the state host of the current call (the Wasm
//! imports, or the harness's memory store) and the index of the record being processed.
//!
//! Invariant: state handles reach the host only through [`with_state`], which refuses
//! access outside `process` and maps each state name to one id and one kind.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{
    self, BatchLists, BatchValues, Elements, ListCache, ListChanges, ValueCache, ValueChanges,
};
use crate::{Error, Operator, Result};

/// The kind of a state, as registered with the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Value,
    List,
    Map,
    Reducing,
    Aggregating,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Value => "value",
            Kind::List => "list",
            Kind::Map => "map",
            Kind::Reducing => "reducing",
            Kind::Aggregating => "aggregating",
        }
    }
}

/// Byte-level keyed state for the record `rec` of the current batch, operator state,
/// and the log.
pub(crate) trait Host {
    fn register(&mut self, name: &str, kind: Kind) -> u32;
    fn register_with_ttl(&mut self, name: &str, kind: Kind, ttl: Ttl) -> u32;
    fn value_get(&mut self, id: u32, rec: u32) -> Option<Vec<u8>>;
    fn value_update(&mut self, id: u32, rec: u32, value: Vec<u8>);
    fn value_clear(&mut self, id: u32, rec: u32);
    fn value_get_batch(&mut self, id: u32) -> BatchValues;
    fn value_set_many(&mut self, id: u32, changes: ValueChanges);
    fn list_get(&mut self, id: u32, rec: u32) -> Vec<Vec<u8>>;
    fn list_add_all(&mut self, id: u32, rec: u32, elements: Vec<Vec<u8>>);
    fn list_update(&mut self, id: u32, rec: u32, elements: Vec<Vec<u8>>);
    fn list_clear(&mut self, id: u32, rec: u32);
    fn list_get_batch(&mut self, id: u32) -> BatchLists;
    fn list_set_many(&mut self, id: u32, changes: ListChanges);
    fn map_get(&mut self, id: u32, rec: u32, user_key: &[u8]) -> Option<Vec<u8>>;
    fn map_put_all(&mut self, id: u32, rec: u32, entries: Vec<(Vec<u8>, Vec<u8>)>);
    fn map_remove(&mut self, id: u32, rec: u32, user_key: &[u8]);
    fn map_contains(&mut self, id: u32, rec: u32, user_key: &[u8]) -> bool;
    fn map_entries(&mut self, id: u32, rec: u32) -> Vec<(Vec<u8>, Vec<u8>)>;
    fn map_keys(&mut self, id: u32, rec: u32) -> Vec<Vec<u8>>;
    fn map_values(&mut self, id: u32, rec: u32) -> Vec<Vec<u8>>;
    fn map_is_empty(&mut self, id: u32, rec: u32) -> bool;
    fn map_clear(&mut self, id: u32, rec: u32);
    fn operator_register_list(&mut self, name: &str, union: bool) -> u32;
    fn operator_list_get(&mut self, id: u32) -> Vec<Vec<u8>>;
    fn operator_list_add_all(&mut self, id: u32, elements: Vec<Vec<u8>>);
    fn operator_list_update(&mut self, id: u32, elements: Vec<Vec<u8>>);
    fn broadcast_register(&mut self, name: &str) -> u32;
    fn broadcast_get(&mut self, id: u32, key: &[u8]) -> Option<Vec<u8>>;
    fn broadcast_entries(&mut self, id: u32) -> Vec<(Vec<u8>, Vec<u8>)>;
    fn broadcast_put(&mut self, id: u32, key: &[u8], value: &[u8]);
    fn broadcast_remove(&mut self, id: u32, key: &[u8]);
    /// In a broadcast batch: makes this subtask's keys holding state `id` the batch's.
    fn select_keys(&mut self, id: u32) -> Vec<Vec<u8>>;
    /// Applies a call's timer changes, in order.
    fn set_timers(&mut self, changes: &TimerChanges);
    /// Sends a call's records for side output `name`.
    fn emit_side(&mut self, name: &str, records: Emitted);
    fn current_watermark(&mut self) -> Option<i64>;
    fn current_processing_time(&mut self) -> i64;
    fn log(&mut self, level: Level, message: &str);
}

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeDomain {
    /// Event time: the timer fires once the watermark reaches it. Replayable: after a
    /// failure, the same timers fire at the same points of the input.
    Event,
    /// Processing time: the host's wall clock (milliseconds since the Unix epoch). Not
    /// replayable: timers that came due while the job was down fire at once after a
    /// restore, and pending ones do not fire when the input ends.
    Processing,
}

/// A timer that came due, as [`Operator::on_timer`](crate::Operator::on_timer) gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timer {
    /// When it was set to fire, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Which clock it follows.
    pub domain: TimeDomain,
}

/// The timer changes of one `process` or `on_timer` call, sent to the host in one go at
/// its end (nothing in the call can observe them before).
pub(crate) use crate::bindings::weir::operator::timers::{TimerChange, TimerChanges};

/// The change that registers (or deletes) a timer of `domain`.
fn timer_change(domain: TimeDomain, register: bool) -> TimerChange {
    match (domain, register) {
        (TimeDomain::Event, true) => TimerChange::RegisterEvent,
        (TimeDomain::Event, false) => TimerChange::DeleteEvent,
        (TimeDomain::Processing, true) => TimerChange::RegisterProcessing,
        (TimeDomain::Processing, false) => TimerChange::DeleteProcessing,
    }
}

/// The environment of one operator instance.
pub(crate) struct Env {
    pub(crate) host: Box<dyn Host>,
    /// The registered states: few, so a search beats hashing the name at every access.
    ids: Vec<(&'static str, u32, Kind)>,
    /// The registered operator list states: name, id, and whether union.
    operator_ids: Vec<(&'static str, u32, bool)>,
    /// The registered broadcast states: name and id.
    broadcast_ids: Vec<(&'static str, u32)>,
    /// The operator's inputs: name, and whether broadcast.
    inputs: Vec<(String, bool)>,
    /// In a batch of a broadcast input: its name.
    broadcast: Option<String>,
    rec: Option<u32>,
    /// Records in the batch being processed.
    records: usize,
    /// Value-like states, by state id: cached from their first batch on.
    values: Uses<ValueCache>,
    /// List states, by state id: cached once a batch read them often enough.
    lists: Uses<ListCache>,
    /// The current call's timer changes.
    timers: TimerChanges,
    /// The current call's records for side outputs, by side output.
    side: Vec<(String, Emitted)>,
    /// The watermark, once read in the current call (it only moves between calls).
    watermark: Option<Option<i64>>,
}

/// A batch cache of one state (see `cache`): how it is read and written back.
trait Cached: Sized {
    /// Reads the batch's state from the host; `None` if what it sent does not add up.
    fn read(host: &mut dyn Host, id: u32) -> Option<Self>;
    /// Whether record `rec` is one of the batch's.
    fn covers(&self, rec: u32) -> bool;
    /// Writes back what the batch changed.
    fn write_back(self, host: &mut dyn Host, id: u32);
}

impl Cached for ValueCache {
    fn read(host: &mut dyn Host, id: u32) -> Option<Self> {
        ValueCache::new(host.value_get_batch(id))
    }
    fn covers(&self, rec: u32) -> bool {
        ValueCache::covers(self, rec)
    }
    fn write_back(self, host: &mut dyn Host, id: u32) {
        let changes = self.changes();
        if !changes.records.is_empty() {
            host.value_set_many(id, changes);
        }
    }
}

impl Cached for ListCache {
    fn read(host: &mut dyn Host, id: u32) -> Option<Self> {
        ListCache::new(host.list_get_batch(id))
    }
    fn covers(&self, rec: u32) -> bool {
        ListCache::covers(self, rec)
    }
    fn write_back(self, host: &mut dyn Host, id: u32) {
        let changes = self.changes();
        if !changes.records.is_empty() {
            host.list_set_many(id, changes);
        }
    }
}

/// How the states of one kind are used, by state id, and their caches in the current
/// batch.
struct Uses<C> {
    /// Whether a state is cached in its first batch.
    first: bool,
    /// No caching in this batch: a broadcast batch, whose keys `select-keys` changes.
    bypass: bool,
    states: Vec<Use<C>>,
}

struct Use<C> {
    /// Whether this batch serves the state from a cache, or makes a host call for
    /// every access: decided at the end of the batch before.
    cached: bool,
    /// Accesses in the current batch that count towards caching it in the next one.
    accesses: usize,
    batch: Option<C>,
    /// Never cached: a TTL state, whose every write the host stamps with the time of
    /// the record that made it (a batch's write-back would stamp them all with one).
    never: bool,
}

impl<C: Cached> Uses<C> {
    fn new(first: bool) -> Uses<C> {
        Uses {
            first,
            bypass: false,
            states: Vec::new(),
        }
    }

    /// The batch cache of state `id`, read from the host at its first use in the batch;
    /// `None` when the state is not cached in this batch. `counts`: whether this access
    /// counts towards caching it in the next batch.
    fn cache(
        &mut self,
        host: &mut dyn Host,
        name: &str,
        id: u32,
        rec: u32,
        counts: bool,
    ) -> Result<Option<&mut C>> {
        let bypass = self.bypass;
        let using = self.state(id);
        using.accesses += usize::from(counts);
        if using.never || !using.cached || bypass {
            return Ok(None);
        }
        if using.batch.is_none() {
            let cache = C::read(host, id)
                .filter(|cache| cache.covers(rec))
                .ok_or_else(|| {
                    Error::new(format!(
                        "state `{name}`: the host sent state that does not match the batch"
                    ))
                })?;
            using.batch = Some(cache);
        }
        Ok(using.batch.as_mut())
    }

    fn state(&mut self, id: u32) -> &mut Use<C> {
        let index = id as usize;
        if self.states.len() <= index {
            self.states.resize_with(index + 1, || Use {
                cached: self.first,
                accesses: 0,
                batch: None,
                never: false,
            });
        }
        &mut self.states[index]
    }

    /// Makes every access to state `id` a host call.
    fn never_cache(&mut self, id: u32) {
        self.state(id).never = true;
    }

    /// Ends a batch of `records`: writes back what it changed (if it succeeded) and
    /// decides which states to cache in the next one.
    fn end_batch(&mut self, host: &mut dyn Host, records: usize, succeeded: bool) {
        if std::mem::take(&mut self.bypass) {
            // A broadcast batch says nothing about how keyed batches use state.
            self.states.iter_mut().for_each(|using| using.accesses = 0);
            return;
        }
        for (id, using) in self.states.iter_mut().enumerate() {
            if let Some(cache) = using.batch.take()
                && succeeded
            {
                cache.write_back(host, id as u32);
            }
            using.cached = cache::worth_caching(using.accesses, records);
            using.accesses = 0;
        }
    }
}

impl Env {
    pub(crate) fn new(host: Box<dyn Host>) -> Env {
        Env {
            host,
            ids: Vec::new(),
            operator_ids: Vec::new(),
            broadcast_ids: Vec::new(),
            inputs: Vec::new(),
            broadcast: None,
            rec: None,
            records: 0,
            values: Uses::new(true),
            lists: Uses::new(false),
            timers: TimerChanges {
                recs: Vec::new(),
                timestamps: Vec::new(),
                changes: Vec::new(),
            },
            side: Vec::new(),
            watermark: None,
        }
    }

    /// The id of `state`, registered at its first use.
    fn id(&mut self, state: StateRef) -> Result<u32> {
        let StateRef { name, kind, ttl } = state;
        // A state handle passes the same `&'static str` every time: its address decides
        // at once, the text only when the address differs.
        let same = |registered: &&str| {
            std::ptr::eq(registered.as_ptr(), name.as_ptr()) && registered.len() == name.len()
                || *registered == name
        };
        match self.ids.iter().find(|(registered, ..)| same(registered)) {
            Some(&(_, id, registered)) if registered == kind => Ok(id),
            Some(&(_, _, registered)) => Err(Error::new(format!(
                "state `{name}` is used as {} state but was first used as {} state",
                kind.name(),
                registered.name()
            ))),
            None => {
                let id = match ttl {
                    None => self.host.register(name, kind),
                    Some(ttl) => {
                        let id = self.host.register_with_ttl(name, kind, ttl);
                        self.values.never_cache(id);
                        self.lists.never_cache(id);
                        id
                    }
                };
                self.ids.push((name, id, kind));
                Ok(id)
            }
        }
    }

    /// Ends a batch: writes back what it changed (if it succeeded) and decides which
    /// states to cache in the next one.
    fn end_batch(&mut self, succeeded: bool) {
        let host = self.host.as_mut();
        self.values.end_batch(host, self.records, succeeded);
        self.lists.end_batch(host, self.records, succeeded);
        if succeeded && !self.timers.recs.is_empty() {
            host.set_timers(&self.timers);
        }
        self.timers.recs.clear();
        self.timers.timestamps.clear();
        self.timers.changes.clear();
        self.watermark = None;
        for (name, records) in self.side.drain(..) {
            if succeeded {
                host.emit_side(&name, records);
            }
        }
    }
}

thread_local! {
    static ENV: RefCell<Option<Env>> = const { RefCell::new(None) };
}

/// Installs `env` for the current thread and returns the one it replaces.
pub(crate) fn install(env: Option<Env>) -> Option<Env> {
    ENV.with(|slot| std::mem::replace(&mut *slot.borrow_mut(), env))
}

/// Runs `f` against the host for state `name` of `kind` and the current record.
pub(crate) fn with_state<R>(
    state: StateRef,
    f: impl FnOnce(&mut dyn Host, u32, u32) -> R,
) -> Result<R> {
    with_env(state.name, |env, rec| {
        let id = env.id(state)?;
        Ok(f(env.host.as_mut(), id, rec))
    })
}

/// Runs `f` on the value of value-like state `name` for the current record's key.
pub(crate) fn read_value<R>(state: StateRef, f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
    let name = state.name;
    with_env(name, |env, rec| {
        let id = env.id(state)?;
        Ok(
            match env.values.cache(env.host.as_mut(), name, id, rec, true)? {
                Some(cache) => f(cache.get(rec)),
                None => f(env.host.value_get(id, rec).as_deref()),
            },
        )
    })
}

/// Sets (or, with `None`, removes) the value of value-like state `name` for the current
/// record's key.
pub(crate) fn write_value(state: StateRef, value: Option<&[u8]>) -> Result<()> {
    let name = state.name;
    with_env(name, |env, rec| {
        let id = env.id(state)?;
        match (
            env.values.cache(env.host.as_mut(), name, id, rec, true)?,
            value,
        ) {
            (Some(cache), value) => cache.set(rec, value),
            (None, Some(value)) => env.host.value_update(id, rec, value.to_vec()),
            (None, None) => env.host.value_clear(id, rec),
        }
        Ok(())
    })
}

/// Runs `f` on the elements of list state `name` for the current record's key.
pub(crate) fn read_list<R>(
    state: StateRef,
    f: impl FnOnce(&mut dyn ExactSizeIterator<Item = &[u8]>) -> R,
) -> Result<R> {
    let name = state.name;
    with_env(name, |env, rec| {
        let id = env.id(state)?;
        Ok(
            match env.lists.cache(env.host.as_mut(), name, id, rec, true)? {
                Some(cache) => f(&mut cache.get(rec)),
                None => f(&mut env.host.list_get(id, rec).iter().map(Vec::as_slice)),
            },
        )
    })
}

/// Appends `elements` to list state `name` for the current record's key.
pub(crate) fn add_to_list(state: StateRef, elements: Elements) -> Result<()> {
    let name = state.name;
    with_env(name, |env, rec| {
        let id = env.id(state)?;
        match env.lists.cache(env.host.as_mut(), name, id, rec, false)? {
            Some(cache) => cache.add_all(rec, &elements),
            None => env.host.list_add_all(id, rec, elements.to_vecs()),
        }
        Ok(())
    })
}

/// Replaces (with nothing: removes) list state `name`'s list for the current record's
/// key.
pub(crate) fn replace_list(state: StateRef, elements: Elements) -> Result<()> {
    let name = state.name;
    with_env(name, |env, rec| {
        let id = env.id(state)?;
        match env.lists.cache(env.host.as_mut(), name, id, rec, false)? {
            Some(cache) => cache.update(rec, elements),
            None if elements.is_empty() => env.host.list_clear(id, rec),
            None => env.host.list_update(id, rec, elements.to_vecs()),
        }
        Ok(())
    })
}

/// Runs `f` against the host for operator list state `name` (registered as union or
/// split at its first use): in `open`, `process` or `close`.
pub(crate) fn with_operator_list<R>(
    name: &'static str,
    union: bool,
    f: impl FnOnce(&mut dyn Host, u32) -> R,
) -> Result<R> {
    with_running(name, |env| {
        let mode = |union| if union { "union" } else { "split" };
        let id = match env.operator_ids.iter().find(|(n, ..)| *n == name) {
            Some(&(_, id, registered)) if registered == union => id,
            Some(&(_, _, registered)) => {
                return Err(Error::new(format!(
                    "operator state `{name}` is used as {} list state but was first used as {} list state",
                    mode(union),
                    mode(registered)
                )));
            }
            None => {
                let id = env.host.operator_register_list(name, union);
                env.operator_ids.push((name, id, union));
                id
            }
        };
        Ok(f(env.host.as_mut(), id))
    })
}

/// Runs `f` against the host for broadcast state `name` (registered at its first use):
/// readable anywhere; `change` says `f` changes it, which only a broadcast record may.
pub(crate) fn with_broadcast<R>(
    name: &'static str,
    change: bool,
    f: impl FnOnce(&mut dyn Host, u32) -> R,
) -> Result<R> {
    with_running(name, |env| {
        if change && env.broadcast.is_none() {
            return Err(Error::new(format!(
                "broadcast state `{name}` can only change while processing a record of a \
                 broadcast input, so that every subtask makes the same change"
            )));
        }
        let id = match env.broadcast_ids.iter().find(|(n, _)| *n == name) {
            Some(&(_, id)) => id,
            None => {
                let id = env.host.broadcast_register(name);
                env.broadcast_ids.push((name, id));
                id
            }
        };
        Ok(f(env.host.as_mut(), id))
    })
}

/// In a broadcast record's `process`: this subtask's keys that hold keyed state `name`
/// of `kind`, now the keys that record indexes name (see [`for_each_key`]).
fn select_keys(state: StateRef) -> Result<Vec<Vec<u8>>> {
    with_running(state.name, |env| {
        if env.broadcast.is_none() {
            return Err(Error::new(
                "for_each_key is for records of a broadcast input: any other record names its key",
            ));
        }
        let id = env.id(state)?;
        Ok(env.host.select_keys(id))
    })
}

/// Runs `f` on the environment of the running operator (for state `name`).
fn with_running<R>(name: &str, f: impl FnOnce(&mut Env) -> Result<R>) -> Result<R> {
    ENV.with(|slot| {
        let mut slot = slot.borrow_mut();
        let env = slot
            .as_mut()
            .ok_or_else(|| Error::new(format!("state `{name}` used outside a running operator")))?;
        f(env)
    })
}

/// Runs `f` with the call's timer changes and the current record, whose key a timer is
/// for: inside `process` or `on_timer`, for an operator with `key_by`.
fn with_timer_key<R>(what: &str, f: impl FnOnce(&mut TimerChanges, u32) -> R) -> Result<R> {
    ENV.with(|slot| {
        let mut slot = slot.borrow_mut();
        let env = slot
            .as_mut()
            .ok_or_else(|| Error::new(format!("{what} outside a running operator")))?;
        match (env.rec, &env.broadcast) {
            (Some(rec), _) => Ok(f(&mut env.timers, rec)),
            (None, Some(input)) => Err(Error::new(format!(
                "{what}: a record of broadcast input `{input}` has no key (reach this \
                 subtask's keys with `ctx.for_each_key`)"
            ))),
            (None, None) => Err(Error::new(format!(
                "{what} needs a key: only inside `process` or `on_timer`"
            ))),
        }
    })
}

/// Runs `f` on the host, in a running operator.
fn with_host<R>(what: &str, f: impl FnOnce(&mut dyn Host) -> R) -> Result<R> {
    ENV.with(|slot| {
        let mut slot = slot.borrow_mut();
        let env = slot
            .as_mut()
            .ok_or_else(|| Error::new(format!("{what} outside a running operator")))?;
        Ok(f(env.host.as_mut()))
    })
}

/// Runs `f` on the environment and the current record, inside `process`.
fn with_env<R>(name: &str, f: impl FnOnce(&mut Env, u32) -> Result<R>) -> Result<R> {
    with_running(name, |env| {
        let rec = match (env.rec, &env.broadcast) {
            (Some(rec), _) => rec,
            (None, Some(input)) => {
                return Err(Error::new(format!(
                    "keyed state `{name}` is out of reach while processing a record of broadcast \
                     input `{input}`: its records have no key (reach this subtask's keys with \
                     `ctx.for_each_key`)"
                )));
            }
            (None, None) => {
                return Err(Error::new(format!(
                    "keyed state `{name}` can only be used inside `process`"
                )));
            }
        };
        f(env, rec)
    })
}

/// Severity of a log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine-grained tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the operator handled.
    Warn,
    /// Something failed.
    Error,
}

/// Writes `message` to the host's log, tagged with the operator's name.
pub fn log(level: Level, message: impl fmt::Display) {
    let message = message.to_string();
    let logged = ENV.with(|slot| match slot.try_borrow_mut() {
        Ok(mut slot) => slot
            .as_mut()
            .map(|env| env.host.log(level, &message))
            .is_some(),
        Err(_) => false,
    });
    if !logged {
        eprintln!("{level:?} {message}");
    }
}

/// Which instance of which operator is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The operator's name in the job file.
    pub operator: String,
    /// This instance's index among the operator's parallel subtasks (0-based).
    pub subtask: u32,
    /// Number of parallel subtasks.
    pub parallelism: u32,
    /// 0 on the job's first run, then 1, 2, … after each restart from a checkpoint.
    pub attempt: u32,
}

/// The operator's `[operator.config]` table from the job file, and which instance of
/// the operator this is.
#[derive(Debug, Clone)]
pub struct Config {
    table: serde_json::Map<String, serde_json::Value>,
    task: TaskInfo,
}

impl Config {
    /// Parses the JSON object the host passes to `open`.
    pub(crate) fn from_json(json: &str, task: TaskInfo) -> Result<Config> {
        let table = if json.trim().is_empty() {
            serde_json::Map::new()
        } else {
            serde_json::from_str(json)
                .map_err(|e| Error::new(format!("operator config is not a JSON object: {e}")))?
        };
        Ok(Config { table, task })
    }

    /// Which instance this is.
    pub fn task(&self) -> &TaskInfo {
        &self.task
    }

    /// The value of `key`, decoded as `T`, if present.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.table
            .get(key)
            .map(|v| {
                T::deserialize(v).map_err(|e| Error::new(format!("operator config `{key}`: {e}")))
            })
            .transpose()
    }

    /// The whole table, decoded as `T` (a struct with `#[derive(Deserialize)]`).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(serde_json::Value::Object(self.table.clone()))
            .map_err(|e| Error::new(format!("operator config: {e}")))
    }
}

/// What `process` gets besides its input: the record's key, input and time, and where
/// outputs go.
pub struct Context<'a, T> {
    key: &'a [u8],
    input: &'a str,
    timestamp: Option<i64>,
    outputs: &'a mut Emitted,
    _output: PhantomData<fn(T)>,
}

/// A batch's output records, laid out as the WIT's `outputs`.
#[derive(Debug, Default)]
pub(crate) struct Emitted {
    /// Each output's JSON.
    pub(crate) payloads: Elements,
    /// Each output's event time (0 for those in `untimed`).
    pub(crate) timestamps: Vec<i64>,
    /// The outputs without one.
    pub(crate) untimed: Vec<u32>,
}

impl Emitted {
    /// Appends `output` as JSON; nothing when it cannot be encoded.
    fn push(&mut self, output: &impl Serialize, timestamp: Option<i64>) -> Result<()> {
        self.payloads
            .push_with(|data| serde_json::to_writer(data, output))?;
        if timestamp.is_none() {
            self.untimed.push(self.timestamps.len() as u32);
        }
        self.timestamps.push(timestamp.unwrap_or(0));
        Ok(())
    }
}

impl<T: Serialize> Context<'_, T> {
    /// Emits `output` with the input record's timestamp.
    pub fn emit(&mut self, output: T) -> Result<()> {
        self.emit_at(output, self.timestamp)
    }

    /// Emits `output` with `timestamp`.
    pub fn emit_at(&mut self, output: T, timestamp: Option<i64>) -> Result<()> {
        self.outputs.push(&output, timestamp)
    }

    /// Emits `output`, with the input record's timestamp, to the side output
    /// `side_output` (which the job file's `side_outputs` declares and other nodes
    /// read as `<operator>.<side output>`): late records of a window, say.
    pub fn emit_to(&mut self, side_output: &str, output: &impl Serialize) -> Result<()> {
        self.emit_to_at(side_output, output, self.timestamp)
    }

    /// Emits `output` with `timestamp` to the side output `side_output`.
    pub fn emit_to_at(
        &mut self,
        side_output: &str,
        output: &impl Serialize,
        timestamp: Option<i64>,
    ) -> Result<()> {
        ENV.with(|slot| {
            let mut slot = slot.borrow_mut();
            let env = slot.as_mut().ok_or_else(|| {
                Error::new(format!(
                    "side output `{side_output}` used outside a running operator"
                ))
            })?;
            let index = match env.side.iter().position(|(name, _)| name == side_output) {
                Some(index) => index,
                None => {
                    env.side.push((side_output.to_string(), Emitted::default()));
                    env.side.len() - 1
                }
            };
            env.side[index].1.push(output, timestamp)
        })
    }

    /// The key of the record being processed, as text (a string key's value, or another
    /// value's compact JSON). Empty when the operator has no `key_by`.
    pub fn key(&self) -> &str {
        std::str::from_utf8(self.key).unwrap_or_default()
    }

    /// The record's event time in milliseconds since the Unix epoch, when known.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The name of the input the record came from, as the job file's `input` names it
    /// (empty in `on_timer`).
    pub fn input(&self) -> &str {
        self.input
    }

    /// Asks for [`Operator::on_timer`](crate::Operator::on_timer) for this key once the
    /// watermark reaches `timestamp` (epoch milliseconds). One timer per key and
    /// timestamp: registering a pending one again does nothing.
    pub fn register_event_time_timer(&mut self, timestamp: i64) -> Result<()> {
        self.timer(TimeDomain::Event, timestamp, true)
    }

    /// Deletes this key's event-time timer at `timestamp`, if pending.
    pub fn delete_event_time_timer(&mut self, timestamp: i64) -> Result<()> {
        self.timer(TimeDomain::Event, timestamp, false)
    }

    /// Asks for [`Operator::on_timer`](crate::Operator::on_timer) for this key once the
    /// host's wall clock reaches `timestamp` (epoch milliseconds; see
    /// [`Context::current_processing_time`]). Not replayable.
    pub fn register_processing_time_timer(&mut self, timestamp: i64) -> Result<()> {
        self.timer(TimeDomain::Processing, timestamp, true)
    }

    /// Deletes this key's processing-time timer at `timestamp`, if pending.
    pub fn delete_processing_time_timer(&mut self, timestamp: i64) -> Result<()> {
        self.timer(TimeDomain::Processing, timestamp, false)
    }

    fn timer(&mut self, domain: TimeDomain, timestamp: i64, register: bool) -> Result<()> {
        with_timer_key("a timer", |timers, rec| {
            timers.recs.push(rec);
            timers.timestamps.push(timestamp);
            timers.changes.push(timer_change(domain, register));
        })
    }

    /// The event-time watermark: records still to come are expected above it (one at
    /// or below it is late). `None` before the first watermark.
    pub fn current_watermark(&self) -> Option<i64> {
        ENV.with(|slot| {
            let mut slot = slot.borrow_mut();
            let env = slot.as_mut()?;
            *env.watermark
                .get_or_insert_with(|| env.host.current_watermark())
        })
    }

    /// The host's wall clock, in milliseconds since the Unix epoch: the one clock an
    /// operator can read (Wasm's own clocks are frozen), and not replayable.
    pub fn current_processing_time(&self) -> i64 {
        with_host("the clock", |host| host.current_processing_time()).unwrap_or(0)
    }

    /// While processing a record of a broadcast input (which has no key): calls `f` for
    /// every key of this subtask that holds `state`, in order, with every keyed state
    /// handle reading and writing that key's state, as Flink's `applyToKeyedState`
    /// does. `f` gets the key (as [`Context::key`] gives it) and a context to emit with.
    /// The harness lists keys by their bytes; the host by key group, then bytes.
    pub fn for_each_key(
        &mut self,
        state: &impl KeyedState,
        mut f: impl FnMut(&str, &mut Context<'_, T>) -> Result<()>,
    ) -> Result<()> {
        let keys = select_keys(state.state_ref())?;
        let mut result = Ok(());
        for (rec, key) in keys.iter().enumerate() {
            set_record(Some(rec as u32));
            let mut ctx = Context {
                key,
                input: self.input,
                timestamp: self.timestamp,
                outputs: &mut *self.outputs,
                _output: PhantomData,
            };
            result = f(std::str::from_utf8(key).unwrap_or_default(), &mut ctx);
            if result.is_err() {
                break;
            }
        }
        set_record(None);
        result
    }
}

/// Which keyed state a handle names: its name, kind and TTL.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct StateRef {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) ttl: Option<Ttl>,
}

/// A keyed state's time-to-live (Flink's `StateTtlConfig`), given to a handle with
/// `with_ttl`: each entry (a value, a list element, a map entry) is forgotten `ttl_ms`
/// after its last renewal, in processing time (the host's wall clock) or event time
/// (the watermark passing the entry's event time plus `ttl_ms`: deterministic, so a
/// replay after recovery expires what the first run did). The host keeps the stamps,
/// leaves expired entries out of checkpoints and cleans them up in both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    pub(crate) ttl_ms: u64,
    pub(crate) domain: TimeDomain,
    pub(crate) on_read: bool,
}

impl Ttl {
    /// Entries live `ttl_ms` of event time after their last write: writes are stamped
    /// with the record's event time (in `on_timer`, an event-time timer's), and an
    /// entry expires once the watermark reaches its stamp plus `ttl_ms`.
    pub const fn event_time(ttl_ms: u64) -> Ttl {
        Ttl {
            ttl_ms,
            domain: TimeDomain::Event,
            on_read: false,
        }
    }

    /// Entries live `ttl_ms` of the host's wall clock after their last write (not
    /// replayable: a replay after a failure expires entries at other records).
    pub const fn processing_time(ttl_ms: u64) -> Ttl {
        Ttl {
            ttl_ms,
            domain: TimeDomain::Processing,
            on_read: false,
        }
    }

    /// Reading an entry renews it too (Flink's `OnReadAndWrite`); by default only
    /// writing does.
    pub const fn renewed_on_read(mut self) -> Ttl {
        self.on_read = true;
        self
    }
}

/// A keyed state handle ([`ValueState`](crate::ValueState), [`ListState`](crate::ListState),
/// [`MapState`](crate::MapState), [`ReducingState`](crate::ReducingState),
/// [`AggregatingState`](crate::AggregatingState)): what [`Context::for_each_key`] takes.
pub trait KeyedState {
    /// The state's name and kind.
    #[doc(hidden)]
    fn state_ref(&self) -> StateRef;
}

/// One input record as the driver sees it.
pub(crate) struct Input<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) payload: &'a [u8],
    pub(crate) timestamp: Option<i64>,
}

/// Creates and opens an operator reading `inputs` (name, and whether broadcast); the
/// environment must be installed.
pub(crate) fn open<O: Operator>(
    config_json: &str,
    task: TaskInfo,
    inputs: Vec<(String, bool)>,
) -> Result<O> {
    ENV.with(|slot| {
        if let Some(env) = slot.borrow_mut().as_mut() {
            env.inputs = inputs;
        }
    });
    let config = Config::from_json(config_json, task)?;
    let mut operator = O::default();
    operator.open(&config)?;
    Ok(operator)
}

/// Processes a batch of the input with index `input`, in order; on failure, says which
/// record failed.
pub(crate) fn process<'a, O: Operator>(
    operator: &mut O,
    batch: impl IntoIterator<Item = Input<'a>>,
    input: u32,
) -> Result<Emitted, (Error, u32)> {
    let batch: Vec<Input<'a>> = batch.into_iter().collect();
    let (name, broadcast) = begin_batch(batch.len(), input);
    let mut outputs = Emitted::default();
    for (index, record) in batch.into_iter().enumerate() {
        let index = index as u32;
        // A broadcast record has no key: no record index names one.
        set_record((!broadcast).then_some(index));
        let input = record;
        let result = serde_json::from_slice::<O::Input>(input.payload)
            .map_err(|e| {
                Error::new(format!(
                    "cannot decode the record as {}: {e}",
                    std::any::type_name::<O::Input>()
                ))
            })
            .and_then(|decoded| {
                let mut ctx = Context {
                    key: input.key,
                    input: &name,
                    timestamp: input.timestamp,
                    outputs: &mut outputs,
                    _output: PhantomData,
                };
                operator.process(decoded, &mut ctx)
            });
        if let Err(e) = result {
            end_batch(false);
            return Err((e, index));
        }
    }
    end_batch(true);
    Ok(outputs)
}

/// Calls `on_timer` for each of a batch of fired timers (key and timestamp, in firing
/// order) of `domain`, with keyed state scoped to the timer's key; on failure, says
/// which timer failed. Outputs carry an event-time timer's timestamp, as Flink's do.
pub(crate) fn on_timer<'a, O: Operator>(
    operator: &mut O,
    timers: impl IntoIterator<Item = (&'a [u8], i64)>,
    domain: TimeDomain,
) -> Result<Emitted, (Error, u32)> {
    let timers: Vec<(&[u8], i64)> = timers.into_iter().collect();
    ENV.with(|slot| {
        if let Some(env) = slot.borrow_mut().as_mut() {
            env.records = timers.len();
            env.watermark = None;
            env.broadcast = None;
            env.values.bypass = false;
            env.lists.bypass = false;
        }
    });
    let mut outputs = Emitted::default();
    for (index, (key, timestamp)) in timers.into_iter().enumerate() {
        set_record(Some(index as u32));
        let mut ctx = Context {
            key,
            input: "",
            timestamp: (domain == TimeDomain::Event).then_some(timestamp),
            outputs: &mut outputs,
            _output: PhantomData,
        };
        if let Err(e) = operator.on_timer(Timer { timestamp, domain }, &mut ctx) {
            end_batch(false);
            return Err((e, index as u32));
        }
    }
    end_batch(true);
    Ok(outputs)
}

/// Begins a batch of `records` from the input with index `input`; returns the input's
/// name and whether it is broadcast.
fn begin_batch(records: usize, input: u32) -> (String, bool) {
    ENV.with(|slot| {
        let mut slot = slot.borrow_mut();
        let Some(env) = slot.as_mut() else {
            return (String::new(), false);
        };
        env.records = records;
        env.watermark = None;
        let (name, broadcast) = env.inputs.get(input as usize).cloned().unwrap_or_default();
        env.broadcast = broadcast.then(|| name.clone());
        env.values.bypass = broadcast;
        env.lists.bypass = broadcast;
        (name, broadcast)
    })
}

/// Ends the batch: from here on no record is current.
fn end_batch(succeeded: bool) {
    ENV.with(|slot| {
        if let Some(env) = slot.borrow_mut().as_mut() {
            env.rec = None;
            env.broadcast = None;
            env.end_batch(succeeded);
        }
    });
}

fn set_record(rec: Option<u32>) {
    ENV.with(|slot| {
        if let Some(env) = slot.borrow_mut().as_mut() {
            env.rec = rec;
        }
    });
}
