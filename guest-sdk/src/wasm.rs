//! The Wasm side: the host imports as a [`Host`], and the export glue that
//! `export_operator!` calls.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::__private::{WitBatch, WitFiredTimers, WitOutputs, WitProcessError, WitTaskInfo};
use crate::Operator;
use crate::bindings::weir::operator::types::{self, StateKind};
use crate::bindings::weir::operator::{log, operator_state, side_outputs, state, timers};
use crate::cache::{BatchLists, BatchValues, ListChanges, ValueChanges, marked, pieces};
use crate::runtime::{
    self, Emitted, Env, Host, Input, Kind, Level, TaskInfo, TimeDomain, TimerChanges, Ttl,
};

struct Imports;

fn state_kind(kind: Kind) -> StateKind {
    match kind {
        Kind::Value => StateKind::Value,
        Kind::List => StateKind::List,
        Kind::Map => StateKind::Map,
        Kind::Reducing => StateKind::Reducing,
        Kind::Aggregating => StateKind::Aggregating,
    }
}

impl Host for Imports {
    fn register(&mut self, name: &str, kind: Kind) -> u32 {
        state::register(name, state_kind(kind))
    }
    fn register_with_ttl(&mut self, name: &str, kind: Kind, ttl: Ttl) -> u32 {
        let ttl = state::Ttl {
            ttl_ms: ttl.ttl_ms,
            domain: match ttl.domain {
                TimeDomain::Event => types::TimeDomain::Event,
                TimeDomain::Processing => types::TimeDomain::Processing,
            },
            update: match ttl.on_read {
                false => state::TtlUpdate::OnCreateAndWrite,
                true => state::TtlUpdate::OnReadAndWrite,
            },
        };
        state::register_with_ttl(name, state_kind(kind), ttl)
    }
    fn value_get(&mut self, id: u32, rec: u32) -> Option<Vec<u8>> {
        state::value_get(id, rec)
    }
    fn value_update(&mut self, id: u32, rec: u32, value: Vec<u8>) {
        state::value_update(id, rec, &value)
    }
    fn value_clear(&mut self, id: u32, rec: u32) {
        state::value_clear(id, rec)
    }
    fn value_get_batch(&mut self, id: u32) -> BatchValues {
        state::value_get_batch(id)
    }
    fn value_set_many(&mut self, id: u32, changes: ValueChanges) {
        state::value_set_many(id, &changes)
    }
    fn list_get(&mut self, id: u32, rec: u32) -> Vec<Vec<u8>> {
        state::list_get(id, rec)
    }
    fn list_add_all(&mut self, id: u32, rec: u32, elements: Vec<Vec<u8>>) {
        match elements.as_slice() {
            [one] => state::list_add(id, rec, one),
            _ => state::list_add_all(id, rec, &elements),
        }
    }
    fn list_update(&mut self, id: u32, rec: u32, elements: Vec<Vec<u8>>) {
        state::list_update(id, rec, &elements)
    }
    fn list_clear(&mut self, id: u32, rec: u32) {
        state::list_clear(id, rec)
    }
    fn list_get_batch(&mut self, id: u32) -> BatchLists {
        state::list_get_batch(id)
    }
    fn list_set_many(&mut self, id: u32, changes: ListChanges) {
        state::list_set_many(id, &changes)
    }
    fn map_get(&mut self, id: u32, rec: u32, user_key: &[u8]) -> Option<Vec<u8>> {
        state::map_get(id, rec, user_key)
    }
    fn map_put_all(&mut self, id: u32, rec: u32, entries: Vec<(Vec<u8>, Vec<u8>)>) {
        match entries.as_slice() {
            [(k, v)] => state::map_put(id, rec, k, v),
            _ => state::map_put_all(id, rec, &entries),
        }
    }
    fn map_remove(&mut self, id: u32, rec: u32, user_key: &[u8]) {
        state::map_remove(id, rec, user_key)
    }
    fn map_contains(&mut self, id: u32, rec: u32, user_key: &[u8]) -> bool {
        state::map_contains(id, rec, user_key)
    }
    fn map_entries(&mut self, id: u32, rec: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        state::map_entries(id, rec)
    }
    fn map_keys(&mut self, id: u32, rec: u32) -> Vec<Vec<u8>> {
        state::map_keys(id, rec)
    }
    fn map_values(&mut self, id: u32, rec: u32) -> Vec<Vec<u8>> {
        state::map_values(id, rec)
    }
    fn map_is_empty(&mut self, id: u32, rec: u32) -> bool {
        state::map_is_empty(id, rec)
    }
    fn map_clear(&mut self, id: u32, rec: u32) {
        state::map_clear(id, rec)
    }
    fn operator_register_list(&mut self, name: &str, union: bool) -> u32 {
        let mode = match union {
            true => operator_state::Redistribution::Union,
            false => operator_state::Redistribution::Split,
        };
        operator_state::register_list(name, mode)
    }
    fn operator_list_get(&mut self, id: u32) -> Vec<Vec<u8>> {
        operator_state::list_get(id)
    }
    fn operator_list_add_all(&mut self, id: u32, elements: Vec<Vec<u8>>) {
        operator_state::list_add_all(id, &elements)
    }
    fn operator_list_update(&mut self, id: u32, elements: Vec<Vec<u8>>) {
        operator_state::list_update(id, &elements)
    }
    fn broadcast_register(&mut self, name: &str) -> u32 {
        operator_state::register_broadcast(name)
    }
    fn broadcast_get(&mut self, id: u32, key: &[u8]) -> Option<Vec<u8>> {
        operator_state::broadcast_get(id, key)
    }
    fn broadcast_entries(&mut self, id: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        operator_state::broadcast_entries(id)
    }
    fn broadcast_put(&mut self, id: u32, key: &[u8], value: &[u8]) {
        operator_state::broadcast_put(id, key, value)
    }
    fn broadcast_remove(&mut self, id: u32, key: &[u8]) {
        operator_state::broadcast_remove(id, key)
    }
    fn select_keys(&mut self, id: u32) -> Vec<Vec<u8>> {
        state::select_keys(id)
    }
    fn set_timers(&mut self, changes: &TimerChanges) {
        timers::set_timers(changes)
    }
    fn emit_side(&mut self, name: &str, records: Emitted) {
        side_outputs::emit(name, &wit_outputs(records))
    }
    fn current_watermark(&mut self) -> Option<i64> {
        timers::current_watermark()
    }
    fn current_processing_time(&mut self) -> i64 {
        timers::current_processing_time()
    }
    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => log::Level::Trace,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
            Level::Error => log::Level::Error,
        };
        log::log(level, message)
    }
}

/// The operator instance of this component, created by `open`.
pub type Instance<O> = LocalKey<RefCell<Option<O>>>;

/// `open` export: installs the environment and a panic hook that sends the panic message
/// to the host's log (the host shows it with the trap), then creates the operator.
pub fn open<O: Operator>(
    instance: &'static Instance<O>,
    config: &str,
    task: WitTaskInfo,
) -> Result<(), String> {
    std::panic::set_hook(Box::new(|info| {
        log::log(log::Level::Error, &format!("{info}"));
    }));
    runtime::install(Some(Env::new(Box::new(Imports))));
    let inputs = (task.inputs.into_iter())
        .map(|input| (input.name, input.broadcast))
        .collect();
    let task = TaskInfo {
        operator: task.operator,
        subtask: task.subtask,
        parallelism: task.parallelism,
        attempt: task.attempt,
    };
    let operator = runtime::open::<O>(config, task, inputs).map_err(|e| e.to_string())?;
    instance.with(|slot| *slot.borrow_mut() = Some(operator));
    Ok(())
}

/// `process` export.
pub fn process<O: Operator>(
    instance: &'static Instance<O>,
    batch: WitBatch,
) -> Result<WitOutputs, WitProcessError> {
    instance.with(|slot| {
        let mut slot = slot.borrow_mut();
        let operator = slot.as_mut().ok_or_else(|| WitProcessError {
            message: "process called before open".into(),
            record: None,
        })?;
        let keys = pieces(&batch.keys, &batch.key_ends);
        let payloads = pieces(&batch.payloads, &batch.payload_ends);
        let untimed = marked(&batch.untimed, batch.timestamps.len());
        let timestamps = batch.timestamps.iter().zip(untimed);
        let inputs =
            keys.zip(payloads)
                .zip(timestamps)
                .map(|((key, payload), (&timestamp, untimed))| Input {
                    key,
                    payload,
                    timestamp: (!untimed).then_some(timestamp),
                });
        outputs(runtime::process(operator, inputs, batch.input))
    })
}

/// `on-timer` export.
pub fn on_timer<O: Operator>(
    instance: &'static Instance<O>,
    timers: WitFiredTimers,
) -> Result<WitOutputs, WitProcessError> {
    instance.with(|slot| {
        let mut slot = slot.borrow_mut();
        let operator = slot.as_mut().ok_or_else(|| WitProcessError {
            message: "on-timer called before open".into(),
            record: None,
        })?;
        let keys = pieces(&timers.keys, &timers.key_ends);
        let domain = match timers.domain {
            types::TimeDomain::Event => TimeDomain::Event,
            types::TimeDomain::Processing => TimeDomain::Processing,
        };
        let fired = keys.zip(timers.timestamps.iter().copied());
        outputs(runtime::on_timer(operator, fired, domain))
    })
}

/// A call's outputs, or which record (or timer) failed, as the WIT has them.
fn outputs(result: Result<Emitted, (crate::Error, u32)>) -> Result<WitOutputs, WitProcessError> {
    match result {
        Ok(outputs) => Ok(wit_outputs(outputs)),
        Err((error, index)) => Err(WitProcessError {
            message: error.to_string(),
            record: Some(index),
        }),
    }
}

fn wit_outputs(outputs: Emitted) -> WitOutputs {
    WitOutputs {
        payloads: outputs.payloads.data,
        ends: outputs.payloads.ends,
        timestamps: outputs.timestamps,
        untimed: outputs.untimed,
    }
}

/// `close` export.
pub fn close<O: Operator>(instance: &'static Instance<O>) -> Result<(), String> {
    match instance.with(|slot| slot.borrow_mut().take()) {
        Some(mut operator) => operator.close().map_err(|e| e.to_string()),
        None => Ok(()),
    }
}
