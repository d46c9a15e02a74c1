//! One running operator instance: a store with its state backend, and the calls of the
//! `guest` export, converted from and to the host's own record types.

use wasmtime::Store;

use super::bindings::{self, Operator};
use super::flat::{self, cut};
use super::imports::GuestCtx;
use super::{LoadedComponent, OperatorError};
use crate::job::Input;
use crate::job::Sandbox;
use crate::record::{KeyedRecord, Record};
use crate::small_bytes::SmallBytes;
use crate::state::KeyGroup;
use crate::state::operator::OperatorState;
use crate::state::snapshot::{Entry, GroupEntries, Snapshot};
use crate::state::{DueTimer, KeyedCopy, StateBackend, TimeDomain};

/// Which instance of an operator this is, as the guest's `open` sees it.
#[derive(Debug, Clone, Copy)]
pub struct TaskInfo {
    /// Index among the operator's subtasks.
    pub subtask: u16,
    /// Number of subtasks.
    pub parallelism: u16,
    /// 0, then one more after each restart.
    pub attempt: u32,
}

/// A batch of records for one `process` call.
pub type Batch = Vec<KeyedRecord>;

/// The records one `process` call emitted.
pub type Output = Vec<Record>;

/// An instantiated operator component with its state.
pub struct OperatorInstance {
    store: Store<GuestCtx>,
    bindings: Operator,
    /// Every call's CPU deadline, in epoch ticks.
    deadline: u64,
}

impl OperatorInstance {
    /// Instantiates `component` for the operator `name`, reading `inputs` and sending
    /// to `side_outputs` besides its own output, with its keyed state in `backend`, bounded and granted what `sandbox` says. `keyed` says
    /// whether the operator has `key_by`.
    pub fn new(
        component: &LoadedComponent,
        name: &str,
        keyed: bool,
        inputs: &[Input],
        side_outputs: &[String],
        backend: Box<dyn StateBackend>,
        sandbox: &Sandbox,
    ) -> Result<OperatorInstance, OperatorError> {
        let ctx = GuestCtx::new(name, keyed, inputs, side_outputs, backend, sandbox);
        let ctx = ctx.map_err(|message| OperatorError::Failed {
            operator: name.to_string(),
            message,
            on_record: None,
            index: None,
        })?;
        let mut store = Store::new(&component.engine, ctx);
        store.limiter(|ctx| &mut ctx.limiter);
        store.epoch_deadline_trap();
        let deadline = sandbox.limits.deadline_ticks();
        store.set_epoch_deadline(deadline);
        let bindings = component
            .pre
            .instantiate(&mut store)
            .map_err(|e| trap(&mut store, e))?;
        Ok(OperatorInstance {
            store,
            bindings,
            deadline,
        })
    }

    /// What the calls since the last time sent to side outputs (see `Logic`).
    pub fn take_side_outputs(&mut self) -> Vec<(usize, Record)> {
        std::mem::take(&mut self.store.data_mut().side)
    }

    /// Readies the store for one call: no error yet, a fresh CPU deadline.
    fn begin_call(&mut self) {
        self.store.data_mut().last_error = None;
        self.store.set_epoch_deadline(self.deadline);
    }

    /// Calls the guest's `open` with the operator's config as a JSON object.
    pub fn open(&mut self, config_json: &str, task: TaskInfo) -> Result<(), OperatorError> {
        self.begin_call();
        let info = bindings::TaskInfo {
            operator: self.store.data().operator.clone(),
            subtask: u32::from(task.subtask),
            parallelism: u32::from(task.parallelism),
            attempt: task.attempt,
            inputs: (self.store.data().inputs.iter())
                .map(|input| bindings::InputInfo {
                    name: input.name.clone(),
                    broadcast: input.broadcast,
                })
                .collect(),
        };
        let guest = self.bindings.weir_operator_guest();
        match guest.call_open(&mut self.store, config_json, &info) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(OperatorError::Failed {
                operator: self.store.data().operator.clone(),
                message: format!("open: {message}"),
                on_record: None,
                index: None,
            }),
            Err(e) => Err(trap(&mut self.store, e)),
        }
    }

    /// Processes one batch of the input with index `input` and returns what the guest
    /// emitted, in order.
    pub fn process(&mut self, batch: Batch, input: u32) -> Result<Output, OperatorError> {
        let records = batch.len();
        let (mut flat, keys, key_groups) = flatten(batch);
        flat.input = input;
        self.begin_call();
        let ctx = self.store.data_mut();
        match ctx.inputs.get(input as usize) {
            Some(broadcast) if broadcast.broadcast => ctx.current.set_broadcast(&broadcast.name),
            _ => {
                ctx.current.set(keys, key_groups);
                let untimed = flat::marked(&flat.untimed, records);
                let times = untimed.zip(&flat.timestamps);
                ctx.current
                    .set_times(times.map(|(untimed, &time)| (!untimed).then_some(time)));
            }
        }

        let result = self
            .bindings
            .weir_operator_guest()
            .call_process(&mut self.store, &flat);

        let ctx = self.store.data_mut();
        ctx.current.clear();
        if !matches!(result, Ok(Ok(_))) {
            // A failed call sends nothing anywhere.
            ctx.side.clear();
        }
        self.expire(records)?;
        match result {
            Ok(Ok(outputs)) => unflatten(outputs).map_err(|problem| OperatorError::Failed {
                operator: self.store.data().operator.clone(),
                message: format!("process returned outputs that do not add up: {problem}"),
                on_record: None,
                index: None,
            }),
            Ok(Err(error)) => Err(OperatorError::Failed {
                operator: self.store.data().operator.clone(),
                message: error.message,
                on_record: error
                    .record
                    .and_then(|i| cut(&flat.payloads, &flat.payload_ends, i as usize))
                    .map(excerpt),
                index: error.record.map(|i| i as usize),
            }),
            Err(e) => Err(trap(&mut self.store, e)),
        }
    }

    /// The watermark reached `watermark`: fires the event-time timers due at it (the
    /// watermark guests see is already the new one) and returns their outputs. A
    /// watermark at or below the current one changes nothing.
    pub fn advance_watermark(&mut self, watermark: i64) -> Result<Output, OperatorError> {
        let current = &mut self.store.data_mut().operator_state.watermark;
        if current.is_some_and(|current| current >= watermark) {
            return Ok(Vec::new());
        }
        *current = Some(watermark);
        self.fire(TimeDomain::Event, watermark)
    }

    /// Fires the processing-time timers due at `now` (the host's wall clock, in
    /// milliseconds since the Unix epoch) and returns their outputs.
    pub fn advance_processing_time(&mut self, now: i64) -> Result<Output, OperatorError> {
        self.fire(TimeDomain::Processing, now)
    }

    /// The earliest a processing-time timer may be due (`i64::MIN`: look now), if any
    /// may be pending.
    pub fn next_processing_timer(&self) -> Option<i64> {
        let next = self
            .store
            .data()
            .next_timer
            .earliest(TimeDomain::Processing);
        (next != i64::MAX).then_some(next)
    }

    /// Makes `current-processing-time` read `now` instead of the wall clock (`None`:
    /// the wall clock again): for tests, which must not depend on time passing.
    pub fn set_clock(&mut self, now: Option<i64>) {
        self.store.data_mut().clock = now;
    }

    /// The subtask's event-time watermark, if one has come.
    pub fn watermark(&self) -> Option<i64> {
        self.store.data().operator_state.watermark
    }

    /// Fires every timer of `domain` due at `up_to`, a batch at a time and the first due
    /// first, until none is (timers the guest registers while they fire included).
    fn fire(&mut self, domain: TimeDomain, up_to: i64) -> Result<Output, OperatorError> {
        let mut emitted = Vec::new();
        while self.store.data().next_timer.may_be_due(domain, up_to) {
            let ctx = self.store.data_mut();
            let due = ctx
                .backend
                .timers_due(domain, up_to, crate::dataflow::BATCH_SIZE)
                .map_err(|e| self.failed(format!("reading timers: {e}")))?;
            if due.is_empty() {
                let ctx = self.store.data_mut();
                let next = (ctx.backend.next_timer(domain))
                    .map_err(|e| self.failed(format!("reading timers: {e}")))?;
                self.store.data_mut().next_timer.found(domain, next);
                break;
            }
            emitted.extend(self.on_timer(domain, due)?);
        }
        Ok(emitted)
    }

    /// Calls the guest's `on-timer` with `due`, each timer's key reachable as its index.
    fn on_timer(
        &mut self,
        domain: TimeDomain,
        due: Vec<DueTimer>,
    ) -> Result<Output, OperatorError> {
        let mut fired = bindings::FiredTimers {
            keys: Vec::new(),
            key_ends: Vec::with_capacity(due.len()),
            timestamps: Vec::with_capacity(due.len()),
            domain: match domain {
                TimeDomain::Event => bindings::TimeDomain::Event,
                TimeDomain::Processing => bindings::TimeDomain::Processing,
            },
        };
        let (mut keys, mut key_groups) = (Vec::new(), Vec::new());
        for (key_group, timer) in due {
            fired.keys.extend_from_slice(&timer.key);
            fired.key_ends.push(fired.keys.len() as u32);
            fired.timestamps.push(timer.timestamp);
            keys.push(SmallBytes::from(timer.key));
            key_groups.push(key_group);
        }
        self.begin_call();
        let ctx = self.store.data_mut();
        ctx.current.set(keys, key_groups);
        let event = domain == TimeDomain::Event;
        ctx.current
            .set_times(fired.timestamps.iter().map(|&t| event.then_some(t)));
        ctx.firing = Some((domain, fired.timestamps.clone()));
        let result = self
            .bindings
            .weir_operator_guest()
            .call_on_timer(&mut self.store, &fired);
        let ctx = self.store.data_mut();
        ctx.current.clear();
        ctx.firing = None;
        if !matches!(result, Ok(Ok(_))) {
            // A failed call sends nothing anywhere.
            ctx.side.clear();
        }
        self.expire(fired.timestamps.len())?;
        match result {
            Ok(Ok(outputs)) => unflatten(outputs).map_err(|problem| {
                self.failed(format!(
                    "on-timer returned outputs that do not add up: {problem}"
                ))
            }),
            Ok(Err(error)) => {
                let timer = error.record.and_then(|i| {
                    let key = cut(&fired.keys, &fired.key_ends, i as usize)?;
                    let at = fired.timestamps.get(i as usize)?;
                    Some(format!(
                        " ({} timer at {at} of key `{}`)",
                        domain.name(),
                        excerpt(key)
                    ))
                });
                Err(self.failed(format!(
                    "on-timer: {}{}",
                    error.message,
                    timer.unwrap_or_default()
                )))
            }
            Err(e) => Err(trap(&mut self.store, e)),
        }
    }

    /// Lets the backend clean up TTL state after a call of `records` records or timers
    /// (as many slots as those, at least a few hundred: see [`StateBackend::expire`]).
    fn expire(&mut self, records: usize) -> Result<(), OperatorError> {
        let ctx = self.store.data_mut();
        if ctx.registry.ttls().is_empty() {
            return Ok(());
        }
        let now = ctx.now();
        let budget = records.max(256);
        let result = ctx.backend.expire(ctx.registry.ttls(), now, budget);
        result.map_err(|e| self.failed(format!("cleaning up expired state: {e}")))
    }

    /// A failure of this operator that no record caused.
    fn failed(&self, message: String) -> OperatorError {
        OperatorError::Failed {
            operator: self.store.data().operator.clone(),
            message,
            on_record: None,
            index: None,
        }
    }

    /// Calls the guest's `close`.
    pub fn close(&mut self) -> Result<(), OperatorError> {
        self.begin_call();
        let guest = self.bindings.weir_operator_guest();
        match guest.call_close(&mut self.store) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(OperatorError::Failed {
                operator: self.store.data().operator.clone(),
                message: format!("close: {message}"),
                on_record: None,
                index: None,
            }),
            Err(e) => Err(trap(&mut self.store, e)),
        }
    }

    /// A point-in-time copy of the instance's keyed state (cheap to take; encode it, or
    /// turn it into a [`Snapshot`], on another thread).
    pub fn snapshot(&self) -> KeyedCopy {
        let ctx = self.store.data();
        KeyedCopy {
            states: ctx.registry.states().to_vec(),
            backend: ctx.backend.snapshot(),
            taken_at: ctx.now(),
        }
    }

    /// A copy of the instance's operator state.
    pub fn operator_state(&self) -> OperatorState {
        self.store.data().operator_state.clone()
    }

    /// Gives the instance its share of restored operator state; call it before `open`.
    pub fn restore_operator_state(&mut self, state: OperatorState) {
        self.store.data_mut().operator_state = state;
    }

    /// Loads `snapshot`'s entries for this instance's key groups. States are matched by
    /// name; call it before `open`.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<(), OperatorError> {
        let ctx = self.store.data_mut();
        let restore_error = |message: String| OperatorError::Failed {
            operator: ctx.operator.clone(),
            message,
            on_record: None,
            index: None,
        };
        let mut ids = Vec::new();
        for state in &snapshot.states {
            let id = ctx
                .registry
                .register(state.name.clone(), state.kind, state.ttl)
                .map_err(|e| restore_error(format!("restoring state: {e}")))?;
            ids.push(id.0);
        }
        let range = ctx.backend.key_groups();
        let groups: Vec<GroupEntries> = snapshot
            .groups
            .iter()
            .filter(|g| range.contains(g.group))
            .map(|g| GroupEntries {
                group: g.group,
                entries: g
                    .entries
                    .iter()
                    .map(|e| Entry {
                        state: ids[e.state as usize],
                        key: e.key.clone(),
                        data: e.data.clone(),
                    })
                    .collect(),
                timers: g.timers.clone(),
            })
            .collect();
        ctx.backend
            .restore(&groups)
            .map_err(|e| restore_error(format!("restoring state: {e}")))?;
        // The restored timers may be due at any time.
        ctx.next_timer = Default::default();
        Ok(())
    }
}

/// A trap as a user reads it: a limit the guest hit, with the limit's name and value;
/// else the guest's own last error message (a Rust panic message arrives through the log
/// import), then what trapped.
fn trap(store: &mut Store<GuestCtx>, error: wasmtime::Error) -> OperatorError {
    let ctx = store.data_mut();
    let limits = ctx.limiter.limits();
    let cause = match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "CPU limit: a call ran longer than its limits.call_timeout_ms = {} and was stopped",
            limits.call_timeout.as_millis()
        ),
        Some(wasmtime::Trap::StackOverflow) => format!(
            "stack limit: the guest overflowed its limits.stack_kb = {}",
            limits.stack_bytes >> 10
        ),
        Some(trap) => match advice(*trap) {
            Some(advice) => format!("{trap}: {advice}"),
            None => trap.to_string(),
        },
        None => match ctx.limiter.hit.take() {
            Some(limit) => limit,
            // A host call refused (a misuse of the state API): its reason, without the
            // guest's backtrace that wasmtime puts in front of it.
            None => error.root_cause().to_string(),
        },
    };
    OperatorError::Trap {
        operator: ctx.operator.clone(),
        message: match ctx.last_error.take() {
            Some(guest) => format!("{guest} ({cause})"),
            None => cause,
        },
    }
}

/// What a trap a new operator author meets most likely means, and what to do.
fn advice(trap: wasmtime::Trap) -> Option<&'static str> {
    use wasmtime::Trap;
    Some(match trap {
        Trap::MemoryOutOfBounds => {
            "often the guest's own stack, kept in its linear memory (Rust's and C's shadow \
             stack, 1 MiB by default), overflowed through deep recursion or large local \
             arrays: recurse less, or link it with a larger stack (Rust: `-C \
             link-arg=-zstack-size=8388608` in RUSTFLAGS; C: `-Wl,-z,stack-size=8388608`); \
             otherwise a pointer bug in the guest"
        }
        Trap::UnreachableCodeReached => {
            "the guest aborted: a Rust panic (the SDK logs its message first), `abort()` or \
             `__builtin_trap()` in C, or an uncaught error in a language runtime; the log \
             lines above say more"
        }
        Trap::IntegerDivisionByZero => "the guest divided an integer by zero: check the divisor",
        Trap::IntegerOverflow => "the guest's integer arithmetic overflowed (e.g. i32::MIN / -1)",
        Trap::BadConversionToInteger => {
            "the guest converted a float that fits no integer (NaN, infinite or too large)"
        }
        _ => return None,
    })
}

/// A batch as the guest takes it (flat buffers), and its records' keys and key groups.
fn flatten(batch: Batch) -> (bindings::Batch, Vec<SmallBytes>, Vec<KeyGroup>) {
    let mut flat = bindings::Batch {
        keys: Vec::with_capacity(batch.iter().map(|r| r.key.len()).sum()),
        key_ends: Vec::with_capacity(batch.len()),
        payloads: Vec::with_capacity(batch.iter().map(|r| r.payload.len()).sum()),
        payload_ends: Vec::with_capacity(batch.len()),
        timestamps: Vec::with_capacity(batch.len()),
        untimed: Vec::new(),
        input: 0,
    };
    let mut keys = Vec::with_capacity(batch.len());
    let mut key_groups = Vec::with_capacity(batch.len());
    for (i, record) in batch.into_iter().enumerate() {
        flat.keys.extend_from_slice(&record.key);
        flat.key_ends.push(flat.keys.len() as u32);
        flat.payloads.extend_from_slice(&record.payload);
        flat.payload_ends.push(flat.payloads.len() as u32);
        flat.timestamps.push(record.timestamp.unwrap_or_else(|| {
            flat.untimed.push(i as u32);
            0
        }));
        keys.push(record.key);
        key_groups.push(record.key_group);
    }
    (flat, keys, key_groups)
}

/// The guest's outputs as records, or what is wrong with them.
pub(super) fn unflatten(outputs: bindings::Outputs) -> Result<Output, String> {
    let bindings::Outputs {
        payloads,
        ends,
        timestamps,
        untimed,
    } = outputs;
    if ends.len() != timestamps.len() {
        return Err(format!(
            "{} ends but {} timestamps",
            ends.len(),
            timestamps.len()
        ));
    }
    let covered = ends.last().map_or(0, |&end| end as usize);
    if covered != payloads.len() {
        return Err(format!(
            "the ends cover {covered} of the {} bytes",
            payloads.len()
        ));
    }
    flat::check_marks("untimed", &untimed, timestamps.len())?;
    timestamps
        .into_iter()
        .zip(flat::marked(&untimed, ends.len()))
        .enumerate()
        .map(|(i, (timestamp, untimed))| {
            let payload = cut(&payloads, &ends, i)
                .ok_or_else(|| format!("output {i} ends before it starts"))?;
            Ok(Record {
                payload: payload.to_vec(),
                timestamp: (!untimed).then_some(timestamp),
            })
        })
        .collect()
}

/// The start of a record, for error messages.
pub(crate) fn excerpt(payload: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&payload[..payload.len().min(MAX)]);
    if payload.len() > MAX {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traps_a_new_author_meets_say_what_to_do() {
        let stack = advice(wasmtime::Trap::MemoryOutOfBounds).unwrap();
        assert!(
            stack.contains("stack") && stack.contains("stack-size"),
            "{stack}"
        );
        assert!(
            advice(wasmtime::Trap::UnreachableCodeReached)
                .unwrap()
                .contains("panic")
        );
        assert!(
            advice(wasmtime::Trap::IntegerDivisionByZero)
                .unwrap()
                .contains("divisor")
        );
    }

    fn record(key: &str, payload: &str) -> KeyedRecord {
        KeyedRecord {
            key: key.as_bytes().into(),
            key_group: KeyGroup::of(key.as_bytes(), 128),
            payload: payload.into(),
            timestamp: Some(7),
            origin: None,
        }
    }

    #[test]
    fn a_flat_batch_cuts_back_into_its_records() {
        let untimed = KeyedRecord {
            timestamp: None,
            ..record("", "[1]")
        };
        let (flat, keys, groups) = flatten(vec![record("a", "{}"), untimed]);
        assert_eq!(keys, [SmallBytes::from(&b"a"[..]), SmallBytes::default()]);
        assert_eq!(groups[0], KeyGroup::of(b"a", 128));
        assert_eq!(cut(&flat.keys, &flat.key_ends, 0), Some(&b"a"[..]));
        assert_eq!(cut(&flat.keys, &flat.key_ends, 1), Some(&b""[..]));
        assert_eq!(
            cut(&flat.payloads, &flat.payload_ends, 1),
            Some(&b"[1]"[..])
        );
        assert_eq!(cut(&flat.payloads, &flat.payload_ends, 2), None);
        assert_eq!(flat.timestamps, [7, 0]);
        assert_eq!(flat.untimed, [1]);
    }

    #[test]
    fn outputs_whose_ends_do_not_add_up_are_refused() {
        let outputs = |payloads: &[u8], ends: &[u32], timestamps: usize| bindings::Outputs {
            payloads: payloads.to_vec(),
            ends: ends.to_vec(),
            timestamps: vec![0; timestamps],
            untimed: Vec::new(),
        };
        let good = unflatten(bindings::Outputs {
            untimed: vec![1],
            ..outputs(b"{}[]", &[2, 2, 4], 3)
        })
        .unwrap();
        let payloads: Vec<&[u8]> = good.iter().map(|r| r.payload.as_slice()).collect();
        assert_eq!(payloads, [&b"{}"[..], b"", b"[]"]);
        let timestamps: Vec<Option<i64>> = good.iter().map(|r| r.timestamp).collect();
        assert_eq!(timestamps, [Some(0), None, Some(0)]);
        for (bad, problem) in [
            (outputs(b"{}", &[2], 2), "1 ends but 2 timestamps"),
            (outputs(b"{}[]", &[2], 1), "the ends cover 2 of the 4 bytes"),
            (
                outputs(b"{}[]", &[3, 2, 4], 3),
                "output 1 ends before it starts",
            ),
            (
                bindings::Outputs {
                    untimed: vec![3],
                    ..outputs(b"{}[]", &[2, 2, 4], 3)
                },
                "`untimed` must list indices below 3 in increasing order, it has 3 after nothing",
            ),
        ] {
            assert_eq!(unflatten(bad).unwrap_err(), problem);
        }
    }
}
