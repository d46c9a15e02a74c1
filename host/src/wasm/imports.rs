//! The host side of the `state`, `operator-state` and `log` imports (`timers` is in
//! `wasm::timers`), and the guest's sandboxed WASI.
//!
//! Invariant: every keyed state call is checked before it reaches the backend: the state
//! id is registered with a matching kind, the operator has `key_by`, and the record index
//! is inside the batch being processed (in a broadcast batch, whose records have no key:
//! inside the keys `select-keys` chose). Broadcast state changes only in broadcast
//! batches. A failed check traps the call with a message.

use std::collections::HashMap;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Result, bail};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, Level, weir::operator::operator_state, weir::operator::state};
use super::flat;
use super::sandbox::Limiter;
use crate::job::Input;
use crate::job::Sandbox;
use crate::record::Record;
use crate::small_bytes::SmallBytes;
use crate::state::operator::{BroadcastState, ListState, OperatorState, Redistribution};
use crate::state::snapshot::StateInfo;
use crate::state::ttl::{self, Now, Ttl, TtlUpdate};
use crate::state::{KeyGroup, Layout, Scope, StateBackend, StateId, StateKind, TimeDomain};

/// Everything a guest instance's calls can reach: its store data.
pub struct GuestCtx {
    pub(super) operator: String,
    /// The operator's inputs, indexed as batches name them.
    pub(super) inputs: Vec<Input>,
    pub(super) backend: Box<dyn StateBackend>,
    pub(super) registry: Registry,
    /// This subtask's operator state: its list states, by operator-state id.
    pub(super) operator_state: OperatorState,
    pub(super) current: CurrentBatch,
    /// The earliest each domain's next timer may be.
    pub(super) next_timer: super::timers::Next,
    /// The processing time guests read, when a test sets it (else the wall clock).
    pub(super) clock: Option<i64>,
    /// In `on-timer`: the domain and each timer's timestamp, by record index.
    pub(super) firing: Option<(crate::state::TimeDomain, Vec<i64>)>,
    /// The operator's side outputs, by index (the job file's `side_outputs`).
    pub(super) side_outputs: Vec<String>,
    /// What the current call sent to side outputs: each record with its side output.
    pub(super) side: Vec<(usize, Record)>,
    /// The guest's last error-level log message since the last call began: a Rust guest's
    /// panic message arrives this way before the trap.
    pub(super) last_error: Option<String>,
    /// Enforces the memory and table limits.
    pub(super) limiter: Limiter,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl GuestCtx {
    /// The store data of one instance; fails when a granted directory cannot be opened.
    pub(super) fn new(
        operator: &str,
        keyed: bool,
        inputs: &[Input],
        side_outputs: &[String],
        backend: Box<dyn StateBackend>,
        sandbox: &Sandbox,
    ) -> std::result::Result<GuestCtx, String> {
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock);
        for (name, value) in &sandbox.grants.env {
            wasi.env(name, value);
        }
        for dir in &sandbox.grants.dirs {
            let perms = if dir.write {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| {
                    format!(
                        "cannot grant directory {} (as {}): {e:#}",
                        dir.host.display(),
                        dir.guest
                    )
                })?;
        }
        let wasi = wasi.build();
        Ok(GuestCtx {
            operator: operator.to_string(),
            inputs: inputs.to_vec(),
            backend,
            registry: Registry::default(),
            operator_state: OperatorState::default(),
            current: CurrentBatch {
                keyed,
                keys: Vec::new(),
                key_groups: Vec::new(),
                times: Vec::new(),
                distinct: None,
                broadcast: None,
            },
            next_timer: Default::default(),
            clock: None,
            firing: None,
            side_outputs: side_outputs.to_vec(),
            side: Vec::new(),
            last_error: None,
            limiter: Limiter::new(sandbox.limits),
            wasi,
            table: ResourceTable::new(),
        })
    }
}

/// Guests see the Unix epoch and a monotonic clock that never moves: time comes from
/// records, so that a replay after recovery computes what the first run computed.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for GuestCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

pub(super) fn add_to_linker(linker: &mut Linker<GuestCtx>) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    bindings::Operator::add_to_linker::<GuestCtx, HasSelf<GuestCtx>>(linker, |ctx| ctx)
}

/// The states an instance registered, by id.
#[derive(Default)]
pub(super) struct Registry {
    states: Vec<StateInfo>,
    /// The states with a TTL, for the backend's cleanup.
    ttls: Vec<(StateId, Ttl)>,
}

impl Registry {
    /// The registered states, indexed by id.
    pub(super) fn states(&self) -> &[StateInfo] {
        &self.states
    }

    /// The states with a TTL.
    pub(super) fn ttls(&self) -> &[(StateId, Ttl)] {
        &self.ttls
    }

    /// Registers `name` (or finds it, registered by the guest or by a restore). Its kind
    /// must not change; its TTL may change length and update policy only, since the
    /// stored entries carry stamps of its clock or none.
    pub(super) fn register(
        &mut self,
        name: String,
        kind: StateKind,
        ttl: Option<Ttl>,
    ) -> Result<StateId> {
        let Some(id) = self.states.iter().position(|s| s.name == name) else {
            self.states.push(StateInfo { name, kind, ttl });
            let id = StateId((self.states.len() - 1) as u32);
            self.ttls.extend(ttl.map(|ttl| (id, ttl)));
            return Ok(id);
        };
        let registered = &mut self.states[id];
        if registered.kind != kind {
            bail!(
                "state `{name}` is registered as {} state and cannot be registered again as {} state",
                registered.kind.name(),
                kind.name()
            );
        }
        let said =
            |ttl: Option<Ttl>| ttl.map_or("without TTL".to_string(), |t| format!("with {t}"));
        if registered.ttl.map(|t| t.domain) != ttl.map(|t| t.domain) {
            bail!(
                "state `{name}` was registered {} and is now registered {}: a state's TTL can \
                 change its length and update policy, but not be added, removed or moved to \
                 another clock, because its stored entries carry that clock's stamps (or \
                 none); register the state under a new name instead",
                said(registered.ttl),
                said(ttl)
            );
        }
        registered.ttl = ttl;
        let id = StateId(id as u32);
        for entry in self.ttls.iter_mut().filter(|(i, _)| *i == id) {
            entry.1 = ttl.expect("a TTL of the same domain");
        }
        Ok(id)
    }

    fn check(&self, id: u32, layout: Layout) -> Result<StateId> {
        match self.states.get(id as usize) {
            None => bail!("state id {id} was never registered"),
            Some(s) if s.kind.layout() != layout => bail!(
                "state `{}` is {} state, not {} state",
                s.name,
                s.kind.name(),
                layout_name(layout)
            ),
            Some(_) => Ok(StateId(id)),
        }
    }

    fn ttl(&self, id: StateId) -> Option<Ttl> {
        self.states[id.0 as usize].ttl
    }
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Value => "value",
        Layout::List => "list",
        Layout::Map => "map",
    }
}

/// The batch being processed: the only keys whose state a guest can reach.
pub(super) struct CurrentBatch {
    keyed: bool,
    /// Each record's key and key group.
    keys: Vec<SmallBytes>,
    key_groups: Vec<KeyGroup>,
    /// Each record's event time (a fired timer's, for event-time timers): what stamps
    /// writes to event-time TTL state.
    times: Vec<Option<i64>>,
    /// The batch's distinct keys, once a batch call asked for them.
    distinct: Option<Distinct>,
    /// In a batch of a broadcast input: its name, and whether `select-keys` has given
    /// the batch keys.
    broadcast: Option<(String, bool)>,
}

/// Which records of a batch share a key.
struct Distinct {
    /// For each record, the index of its key.
    keys: Vec<u32>,
    /// For each key, the first record with it.
    firsts: Vec<u32>,
}

impl Distinct {
    /// Which of the records with `keys` share a key, worked out once per batch (kept
    /// in `slot`).
    fn of<'a>(slot: &'a mut Option<Distinct>, keys: &[SmallBytes]) -> &'a Distinct {
        slot.get_or_insert_with(|| {
            let mut seen: HashMap<&[u8], u32, foldhash::fast::RandomState> =
                HashMap::with_capacity_and_hasher(keys.len(), Default::default());
            let mut firsts = Vec::new();
            let keys = keys
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    *seen.entry(key).or_insert_with(|| {
                        firsts.push(i as u32);
                        (firsts.len() - 1) as u32
                    })
                })
                .collect();
            Distinct { keys, firsts }
        })
    }
}

impl CurrentBatch {
    /// Makes the records with `keys` and `key_groups` the batch guests' calls can reach.
    pub(super) fn set(&mut self, keys: Vec<SmallBytes>, key_groups: Vec<KeyGroup>) {
        self.keys = keys;
        self.key_groups = key_groups;
        self.times.clear();
        self.distinct = None;
        self.broadcast = None;
    }

    /// Gives the batch's records (or fired timers) their event times.
    pub(super) fn set_times(&mut self, times: impl Iterator<Item = Option<i64>>) {
        self.times.extend(times);
    }

    /// A batch of the broadcast input `input`: its records have no key, so no keyed
    /// state is reachable until `select-keys` gives the batch keys.
    pub(super) fn set_broadcast(&mut self, input: &str) {
        self.set(Vec::new(), Vec::new());
        self.broadcast = Some((input.to_string(), false));
    }

    /// No batch: no keyed state is reachable.
    pub(super) fn clear(&mut self) {
        self.set(Vec::new(), Vec::new());
    }

    /// The batch's distinct keys: for each record, the index of its key, and each
    /// key's first record.
    fn distinct(&mut self, state: StateId) -> Result<(Vec<u32>, Vec<u32>)> {
        // Checks keyed state may be used now, and that the batch has a record.
        self.record_scope(state, 0)?;
        let distinct = Distinct::of(&mut self.distinct, &self.keys);
        Ok((distinct.keys.clone(), distinct.firsts.clone()))
    }

    /// Checks that `records` all have a scope in `state`, before a call that changes
    /// state for them changes anything.
    fn check_records(&self, state: StateId, records: &[u32]) -> Result<()> {
        for &rec in records {
            self.record_scope(state, rec)?;
        }
        Ok(())
    }

    /// Record `rec`'s scope in `state`, for a record `record_scope` has checked.
    fn checked_scope(&self, state: StateId, rec: u32) -> Scope<'_> {
        Scope {
            state,
            key_group: self.key_groups[rec as usize],
            key: &self.keys[rec as usize],
        }
    }

    fn record_scope(&self, state: StateId, rec: u32) -> Result<Scope<'_>> {
        let (key_group, key) = self.key(rec, "keyed state")?;
        Ok(Scope {
            state,
            key_group,
            key,
        })
    }

    /// The key group and key of record `rec`, for `what` (keyed state, timers): a
    /// record of the batch being processed, or a fired timer in `on-timer`.
    pub(super) fn key(&self, rec: u32, what: &str) -> Result<(KeyGroup, &[u8])> {
        if !self.keyed {
            bail!("{what} needs a key: give the operator `key_by` in the job file");
        }
        if let Some((input, false)) = &self.broadcast {
            bail!(
                "{what} is out of reach while processing a record of broadcast input \
                 `{input}`: its records have no key (select this subtask's keys first)"
            );
        }
        let index = rec as usize;
        match (self.keys.get(index), self.key_groups.get(index)) {
            (Some(key), Some(&key_group)) => Ok((key_group, key)),
            _ if self.keys.is_empty() => {
                bail!("{what} can only be used while processing a batch or fired timers")
            }
            _ => bail!(
                "record index {rec} is outside the batch of {} records",
                self.keys.len()
            ),
        }
    }
}

impl bindings::weir::operator::types::Host for GuestCtx {}

impl GuestCtx {
    /// The clocks TTL follows, now.
    pub(super) fn now(&self) -> Now {
        Now {
            watermark: self.operator_state.watermark,
            processing: (self.clock).unwrap_or_else(super::timers::processing_time),
        }
    }

    /// Record `rec`'s slot in the state with id `state` (checked to have `layout`),
    /// read and written through the state's TTL.
    fn slot(&mut self, state: u32, rec: u32, layout: Layout) -> Result<ttl::Slot<'_>> {
        let id = self.registry.check(state, layout)?;
        self.current.record_scope(id, rec)?;
        self.checked_slot(id, rec)
    }

    /// Record `rec`'s slot in state `id`, both already checked (by `slot`, or for a
    /// whole batch by `CurrentBatch::distinct` or `check_records`).
    fn checked_slot(&mut self, id: StateId, rec: u32) -> Result<ttl::Slot<'_>> {
        let ttl = match self.registry.ttl(id) {
            None => None,
            Some(ttl) => {
                let now = self.now();
                Some((ttl, now, self.stamp(id, ttl, rec, &now)?))
            }
        };
        Ok(ttl::Slot {
            scope: self.current.checked_scope(id, rec),
            backend: &mut *self.backend,
            ttl,
        })
    }

    /// The time that renews record `rec`'s entries of the TTL state `id`: the wall
    /// clock, or the record's event time (else the watermark).
    fn stamp(&self, id: StateId, ttl: Ttl, rec: u32, now: &Now) -> Result<i64> {
        if ttl.domain == TimeDomain::Processing {
            return Ok(now.processing);
        }
        let time = self.current.times.get(rec as usize).copied().flatten();
        match time.or(now.watermark) {
            Some(time) => Ok(time),
            None => bail!(
                "state `{}` has an event-time TTL, but record {rec} has no event time and no \
                 watermark has come to stamp its entries with: give the source `event_time`, \
                 or the state a processing-time TTL",
                self.registry.states[id.0 as usize].name
            ),
        }
    }
}

impl GuestCtx {
    fn operator_list(&mut self, state: u32) -> Result<&mut Vec<Vec<u8>>> {
        match self.operator_state.lists.get_mut(state as usize) {
            Some(list) => Ok(&mut list.elements),
            None => bail!("operator state id {state} was never registered"),
        }
    }
}

impl GuestCtx {
    fn broadcast_state(&mut self, state: u32) -> Result<&mut BroadcastState> {
        match self.operator_state.broadcast.get_mut(state as usize) {
            Some(broadcast) => Ok(broadcast),
            None => bail!("broadcast state id {state} was never registered"),
        }
    }

    /// The broadcast state `state`, to change: only in a broadcast batch.
    fn broadcast_change(&mut self, state: u32) -> Result<&mut BroadcastState> {
        let writable = self.current.broadcast.is_some();
        let broadcast = self.broadcast_state(state)?;
        if !writable {
            bail!(
                "broadcast state `{}` can only change while processing a record of a broadcast \
                 input, so that every subtask makes the same change",
                broadcast.name
            );
        }
        Ok(broadcast)
    }
}

impl operator_state::Host for GuestCtx {
    fn register_broadcast(&mut self, name: String) -> Result<u32> {
        let states = &mut self.operator_state.broadcast;
        let id = match states.iter().position(|b| b.name == name) {
            Some(id) => id,
            None => {
                states.push(BroadcastState {
                    name,
                    entries: Default::default(),
                });
                states.len() - 1
            }
        };
        Ok(id as u32)
    }

    fn broadcast_get(&mut self, state: u32, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        Ok(self.broadcast_state(state)?.entries.get(&key).cloned())
    }

    fn broadcast_entries(&mut self, state: u32) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let entries = &self.broadcast_state(state)?.entries;
        Ok(entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn broadcast_put(&mut self, state: u32, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.broadcast_change(state)?.entries.insert(key, value);
        Ok(())
    }

    fn broadcast_remove(&mut self, state: u32, key: Vec<u8>) -> Result<()> {
        self.broadcast_change(state)?.entries.remove(&key);
        Ok(())
    }

    fn register_list(&mut self, name: String, mode: operator_state::Redistribution) -> Result<u32> {
        let mode = match mode {
            operator_state::Redistribution::Split => Redistribution::Split,
            operator_state::Redistribution::Union => Redistribution::Union,
        };
        let lists = &mut self.operator_state.lists;
        let id = match lists.iter().position(|l| l.name == name) {
            Some(id) => {
                // A restored list keeps its elements; the mode registered now applies.
                lists[id].mode = mode;
                id
            }
            None => {
                lists.push(ListState {
                    name,
                    mode,
                    elements: Vec::new(),
                });
                lists.len() - 1
            }
        };
        Ok(id as u32)
    }

    fn list_get(&mut self, state: u32) -> Result<Vec<Vec<u8>>> {
        Ok(self.operator_list(state)?.clone())
    }

    fn list_add(&mut self, state: u32, element: Vec<u8>) -> Result<()> {
        self.operator_list(state)?.push(element);
        Ok(())
    }

    fn list_add_all(&mut self, state: u32, elements: Vec<Vec<u8>>) -> Result<()> {
        self.operator_list(state)?.extend(elements);
        Ok(())
    }

    fn list_update(&mut self, state: u32, elements: Vec<Vec<u8>>) -> Result<()> {
        *self.operator_list(state)? = elements;
        Ok(())
    }

    fn list_clear(&mut self, state: u32) -> Result<()> {
        self.operator_list(state)?.clear();
        Ok(())
    }
}

impl state::Host for GuestCtx {
    fn select_keys(&mut self, state: u32) -> Result<Vec<Vec<u8>>> {
        let Some((input, _)) = self.current.broadcast.take() else {
            bail!(
                "select-keys is for batches of a broadcast input: elsewhere a batch's records \
                 name their keys"
            );
        };
        if !self.current.keyed {
            bail!("keyed state needs a key: give the operator `key_by` in the job file");
        }
        let state = match self.registry.states.get(state as usize) {
            Some(_) => StateId(state),
            None => bail!("state id {state} was never registered"),
        };
        let keys = self.backend.keys(state)?;
        let (key_groups, keys): (Vec<KeyGroup>, Vec<SmallBytes>) = keys
            .into_iter()
            .map(|(group, key)| (group, SmallBytes::from(key.as_slice())))
            .unzip();
        let selected = keys.iter().map(|k| k.to_vec()).collect();
        self.current.set(keys, key_groups);
        self.current.broadcast = Some((input, true));
        Ok(selected)
    }

    fn register(&mut self, name: String, kind: bindings::StateKind) -> Result<u32> {
        Ok(self.registry.register(name, kind_of(kind), None)?.0)
    }

    fn register_with_ttl(
        &mut self,
        name: String,
        kind: bindings::StateKind,
        ttl: state::Ttl,
    ) -> Result<u32> {
        if ttl.ttl_ms == 0 {
            bail!("state `{name}`: a TTL of 0 ms would forget every entry as it is written");
        }
        let ttl = Ttl {
            ttl_ms: ttl.ttl_ms,
            domain: match ttl.domain {
                bindings::TimeDomain::Event => TimeDomain::Event,
                bindings::TimeDomain::Processing => TimeDomain::Processing,
            },
            update: match ttl.update {
                state::TtlUpdate::OnCreateAndWrite => TtlUpdate::OnCreateAndWrite,
                state::TtlUpdate::OnReadAndWrite => TtlUpdate::OnReadAndWrite,
            },
        };
        Ok(self.registry.register(name, kind_of(kind), Some(ttl))?.0)
    }

    fn value_get(&mut self, state: u32, rec: u32) -> Result<Option<Vec<u8>>> {
        Ok(self.slot(state, rec, Layout::Value)?.value_get()?)
    }

    fn value_update(&mut self, state: u32, rec: u32, value: Vec<u8>) -> Result<()> {
        Ok(self.slot(state, rec, Layout::Value)?.value_put(&value)?)
    }

    fn value_clear(&mut self, state: u32, rec: u32) -> Result<()> {
        Ok(self.slot(state, rec, Layout::Value)?.clear()?)
    }

    fn value_get_batch(&mut self, state: u32) -> Result<state::BatchValues> {
        let state = self.registry.check(state, Layout::Value)?;
        let (keys, firsts) = self.current.distinct(state)?;
        let mut lengths = Vec::with_capacity(firsts.len());
        let mut absent = Vec::new();
        let mut data = Vec::new();
        for (i, first) in firsts.into_iter().enumerate() {
            let before = data.len();
            if !self.checked_slot(state, first)?.value_get_into(&mut data)? {
                absent.push(i as u32);
            }
            lengths.push((data.len() - before) as u32);
        }
        Ok(state::BatchValues {
            keys,
            lengths,
            absent,
            data,
        })
    }

    fn value_set_many(&mut self, state: u32, changes: state::ValueChanges) -> Result<()> {
        let state = self.registry.check(state, Layout::Value)?;
        if changes.records.len() != changes.lengths.len() {
            bail!(
                "value-set-many: {} records but {} lengths",
                changes.records.len(),
                changes.lengths.len()
            );
        }
        let count = changes.lengths.len();
        flat::check_marks("removals", &changes.removals, count)
            .and_then(|()| flat::check_lengths(&changes.lengths, &changes.data))
            .map_err(|problem| wasmtime::Error::msg(format!("value-set-many: {problem}")))?;
        if let Some(&r) = (changes.removals.iter()).find(|&&r| changes.lengths[r as usize] != 0) {
            bail!(
                "value-set-many: change {r} removes its value but has length {}",
                changes.lengths[r as usize]
            );
        }
        self.current.check_records(state, &changes.records)?;
        let mut rest = changes.data.as_slice();
        let removes = flat::marked(&changes.removals, count);
        let each = changes.records.iter().zip(&changes.lengths).zip(removes);
        for ((&rec, &length), remove) in each {
            let (value, after) = rest.split_at(length as usize);
            rest = after;
            let mut slot = self.checked_slot(state, rec)?;
            match remove {
                false => slot.value_put(value)?,
                true => slot.clear()?,
            }
        }
        Ok(())
    }

    fn list_get_batch(&mut self, state: u32) -> Result<state::BatchLists> {
        let state = self.registry.check(state, Layout::List)?;
        let (keys, firsts) = self.current.distinct(state)?;
        let mut lists = state::BatchLists {
            keys,
            counts: Vec::with_capacity(firsts.len()),
            lengths: Vec::new(),
            data: Vec::new(),
        };
        for first in firsts {
            let elements = self.checked_slot(state, first)?.list_get()?;
            lists.counts.push(elements.len() as u32);
            for element in elements {
                lists.lengths.push(element.len() as u32);
                lists.data.extend_from_slice(&element);
            }
        }
        Ok(lists)
    }

    fn list_set_many(&mut self, state: u32, changes: state::ListChanges) -> Result<()> {
        let state = self.registry.check(state, Layout::List)?;
        if changes.records.len() != changes.counts.len() {
            bail!(
                "list-set-many: {} records but {} counts",
                changes.records.len(),
                changes.counts.len()
            );
        }
        let elements: u64 = changes.counts.iter().map(|&c| u64::from(c)).sum();
        if elements != changes.lengths.len() as u64 {
            bail!(
                "list-set-many: the counts add up to {elements} elements, there are {} lengths",
                changes.lengths.len()
            );
        }
        flat::check_lengths(&changes.lengths, &changes.data)
            .map_err(|problem| wasmtime::Error::msg(format!("list-set-many: {problem}")))?;
        self.current.check_records(state, &changes.records)?;
        let mut lengths = changes.lengths.iter();
        let mut rest = changes.data.as_slice();
        for (&rec, &count) in changes.records.iter().zip(&changes.counts) {
            let elements = lengths
                .by_ref()
                .take(count as usize)
                .map(|&length| {
                    let (element, after) = rest.split_at(length as usize);
                    rest = after;
                    element.to_vec()
                })
                .collect();
            self.checked_slot(state, rec)?.list_replace(elements)?;
        }
        Ok(())
    }

    fn list_get(&mut self, state: u32, rec: u32) -> Result<Vec<Vec<u8>>> {
        Ok(self.slot(state, rec, Layout::List)?.list_get()?)
    }

    fn list_add(&mut self, state: u32, rec: u32, element: Vec<u8>) -> Result<()> {
        Ok(self
            .slot(state, rec, Layout::List)?
            .list_append(vec![element])?)
    }

    fn list_add_all(&mut self, state: u32, rec: u32, elements: Vec<Vec<u8>>) -> Result<()> {
        Ok(self.slot(state, rec, Layout::List)?.list_append(elements)?)
    }

    fn list_update(&mut self, state: u32, rec: u32, elements: Vec<Vec<u8>>) -> Result<()> {
        Ok(self
            .slot(state, rec, Layout::List)?
            .list_replace(elements)?)
    }

    fn list_clear(&mut self, state: u32, rec: u32) -> Result<()> {
        Ok(self.slot(state, rec, Layout::List)?.clear()?)
    }

    fn map_get(&mut self, state: u32, rec: u32, user_key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        Ok(self.slot(state, rec, Layout::Map)?.map_get(&user_key)?)
    }

    fn map_put(&mut self, state: u32, rec: u32, user_key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        Ok(self
            .slot(state, rec, Layout::Map)?
            .map_put(vec![(user_key, value)])?)
    }

    fn map_put_all(
        &mut self,
        state: u32,
        rec: u32,
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        Ok(self.slot(state, rec, Layout::Map)?.map_put(entries)?)
    }

    fn map_remove(&mut self, state: u32, rec: u32, user_key: Vec<u8>) -> Result<()> {
        Ok(self.slot(state, rec, Layout::Map)?.map_remove(&user_key)?)
    }

    fn map_contains(&mut self, state: u32, rec: u32, user_key: Vec<u8>) -> Result<bool> {
        Ok(self
            .slot(state, rec, Layout::Map)?
            .map_get(&user_key)?
            .is_some())
    }

    fn map_entries(&mut self, state: u32, rec: u32) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self.slot(state, rec, Layout::Map)?.map_entries(true)?)
    }

    fn map_keys(&mut self, state: u32, rec: u32) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .map_entries(state, rec)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    fn map_values(&mut self, state: u32, rec: u32) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .map_entries(state, rec)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    fn map_is_empty(&mut self, state: u32, rec: u32) -> Result<bool> {
        Ok(self.slot(state, rec, Layout::Map)?.map_is_empty()?)
    }

    fn map_clear(&mut self, state: u32, rec: u32) -> Result<()> {
        Ok(self.slot(state, rec, Layout::Map)?.clear()?)
    }
}

fn kind_of(kind: bindings::StateKind) -> StateKind {
    match kind {
        bindings::StateKind::Value => StateKind::Value,
        bindings::StateKind::List => StateKind::List,
        bindings::StateKind::Map => StateKind::Map,
        bindings::StateKind::Reducing => StateKind::Reducing,
        bindings::StateKind::Aggregating => StateKind::Aggregating,
    }
}

/// Longest guest log message kept; the rest is cut, so a guest cannot flood the log.
const MAX_LOG_MESSAGE: usize = 4096;

impl bindings::weir::operator::log::Host for GuestCtx {
    fn log(&mut self, level: Level, mut message: String) -> Result<()> {
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" …");
        }
        let label = match level {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        };
        if !matches!(level, Level::Trace | Level::Debug) {
            eprintln!("[{}] {label} {message}", self.operator);
        }
        if level == Level::Error {
            self.last_error = Some(message);
        }
        Ok(())
    }
}
