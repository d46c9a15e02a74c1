//! The native baselines of `host bench`: each workload of `bench/guest` as plain Rust
//! in the host, over the same state backend with the same encodings (JSON values, as
//! the Rust SDK stores them), so that the Wasm / native ratio measures what running in
//! Wasm costs and nothing else.

use bench_workloads::{
    LAST, TERMINAL, TIMER_AFTER_MS, WINDOW_MS, Workload, event, item, spin, transition,
};
use serde::Deserialize;
use serde_json::json;

use crate::dataflow::Logic;
use crate::record::{KeyedRecord, Record};
use crate::state::snapshot::StateInfo;
use crate::state::ttl::Now;
use crate::state::{KeyedCopy, Scope, StateBackend, StateId, StateKind, TimeDomain};
use crate::wasm::{Batch, OperatorError, Output};

/// A workload running natively.
pub struct Native {
    workload: Workload,
    backend: Box<dyn StateBackend>,
    state: StateInfo,
}

/// Whatever a workload step can fail with (state or JSON), for the operator's message.
type Failure = Box<dyn std::error::Error>;

#[derive(Deserialize)]
struct Event {
    seq: u64,
}

/// Makes the native twin of the workload named in `config_json` (`{"workload": …}`).
pub fn factory(
    config_json: &str,
    backend: Box<dyn StateBackend>,
) -> Result<Box<dyn Logic>, String> {
    #[derive(Deserialize)]
    struct Config {
        workload: String,
    }
    let config: Config = serde_json::from_str(config_json).map_err(|e| e.to_string())?;
    let workload = Workload::from_name(&config.workload)
        .ok_or_else(|| format!("unknown workload `{}`", config.workload))?;
    let (name, kind) = match workload {
        Workload::Count | Workload::Slow | Workload::Timer | Workload::RunningCount => {
            ("count", StateKind::Value)
        }
        Workload::Dedup => ("items", StateKind::Map),
        Workload::Window => ("per-minute", StateKind::Map),
        Workload::StateMachine => ("machine", StateKind::Value),
        Workload::LastTen => ("recent", StateKind::List),
    };
    Ok(Box::new(Native {
        workload,
        backend,
        state: StateInfo {
            name: name.into(),
            kind,
            ttl: None,
        },
    }))
}

impl Native {
    fn record(&mut self, record: &KeyedRecord, out: &mut Output) -> Result<(), Failure> {
        let input: Event = serde_json::from_slice(&record.payload)?;
        let scope = Scope {
            state: StateId(0),
            key_group: record.key_group,
            key: &record.key,
        };
        let backend = &mut self.backend;
        match self.workload {
            Workload::Count => {
                let count: u64 = get_json(backend.as_ref(), scope)?.unwrap_or(0);
                put_json(backend.as_mut(), scope, &(count + 1))
            }
            Workload::RunningCount => {
                let count: u64 = get_json(backend.as_ref(), scope)?.unwrap_or(0) + 1;
                put_json(backend.as_mut(), scope, &count)?;
                let key = String::from_utf8_lossy(&record.key);
                emit(out, record, json!({"key": key, "count": count}))
            }
            Workload::Timer => {
                let count: u64 = get_json(backend.as_ref(), scope)?.unwrap_or(0);
                put_json(backend.as_mut(), scope, &(count + 1))?;
                let at = record.timestamp.unwrap_or_default() + TIMER_AFTER_MS;
                Ok(backend.timer_set(record.key_group, TimeDomain::Event, at, &record.key)?)
            }
            Workload::Window => {
                // The window's count, by its start, and a timer at its last millisecond.
                let time = record.timestamp.unwrap_or_default();
                let start = time - time.rem_euclid(WINDOW_MS);
                let user_key = start.to_be_bytes();
                let count =
                    (backend.map_get(scope, &user_key)?).map_or(0, |bytes| count_of(&bytes));
                backend.map_put(
                    scope,
                    vec![(user_key.to_vec(), (count + 1).to_le_bytes().to_vec())],
                )?;
                // A new window's timer, as the window module sets it.
                if count == 0 {
                    let last = start + WINDOW_MS - 1;
                    backend.timer_set(record.key_group, TimeDomain::Event, last, &record.key)?;
                }
                Ok(())
            }
            Workload::Slow => {
                std::hint::black_box(spin(input.seq));
                let count: u64 = get_json(backend.as_ref(), scope)?.unwrap_or(0);
                put_json(backend.as_mut(), scope, &(count + 1))
            }
            Workload::Dedup => {
                let item = item(input.seq);
                let user_key = json(&item);
                if backend.map_get(scope, &user_key)?.is_some() {
                    return Ok(());
                }
                backend.map_put(scope, vec![(user_key, json(&true))])?;
                let user = String::from_utf8_lossy(&record.key);
                emit(out, record, json!({"user": user, "item": item}))
            }
            Workload::StateMachine => {
                let state: u8 = get_json(backend.as_ref(), scope)?.unwrap_or(0);
                let event = event(input.seq);
                match transition(state, event) {
                    Some(TERMINAL) => Ok(backend.clear(scope)?),
                    Some(next) => put_json(backend.as_mut(), scope, &next),
                    None => {
                        let address = String::from_utf8_lossy(&record.key);
                        let event = char::from(event).to_string();
                        emit(
                            out,
                            record,
                            json!({"address": address, "state": state, "event": event}),
                        )
                    }
                }
            }
            Workload::LastTen => {
                backend.list_append(scope, vec![json(&input.seq)])?;
                let recent = backend
                    .list_get(scope)?
                    .iter()
                    .map(|bytes| serde_json::from_slice::<u64>(bytes))
                    .collect::<Result<Vec<u64>, _>>()?;
                if recent.len() > LAST {
                    let kept = recent[recent.len() - LAST..].iter().map(json).collect();
                    backend.list_replace(scope, kept)?;
                }
                Ok(())
            }
        }
    }
}

/// W7's count as the native twin stores it.
fn count_of(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_le_bytes)
}

fn emit(out: &mut Output, record: &KeyedRecord, value: serde_json::Value) -> Result<(), Failure> {
    out.push(Record {
        payload: serde_json::to_vec(&value)?,
        timestamp: record.timestamp,
    });
    Ok(())
}

thread_local! {
    /// Where values are encoded and read, reused as the Wasm path reuses its buffers.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A state value as the Rust SDK stores it: JSON, in a buffer of its own length, as
/// bytes lifted from a guest are (`serde_json::to_vec` reserves 128 bytes, which the
/// backend would keep for every value; shrinking each buffer costs a reallocation).
fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        serde_json::to_writer(&mut *scratch, value).expect("numbers and booleans serialize");
        scratch.as_slice().to_vec()
    })
}

/// Sets a value state's value to `value`'s JSON, without a buffer of its own.
fn put_json<T: serde::Serialize>(
    backend: &mut dyn StateBackend,
    scope: Scope<'_>,
    value: &T,
) -> Result<(), Failure> {
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        serde_json::to_writer(&mut *scratch, value)?;
        Ok(backend.value_put(scope, scratch)?)
    })
}

/// A value state's value, decoded from JSON, read without a buffer of its own.
fn get_json<T: serde::de::DeserializeOwned>(
    backend: &dyn StateBackend,
    scope: Scope<'_>,
) -> Result<Option<T>, Failure> {
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        match backend.value_get_into(scope, scratch)? {
            true => Ok(Some(serde_json::from_slice(scratch)?)),
            false => Ok(None),
        }
    })
}

impl Logic for Native {
    fn process(&mut self, batch: Batch, _input: u32) -> Result<Output, OperatorError> {
        let mut out = Vec::new();
        for record in &batch {
            self.record(record, &mut out)
                .map_err(|e| OperatorError::Failed {
                    operator: "native".into(),
                    message: e.to_string(),
                    on_record: None,
                    index: None,
                })?;
        }
        Ok(out)
    }

    fn snapshot(&self) -> KeyedCopy {
        KeyedCopy {
            states: vec![self.state.clone()],
            backend: self.backend.snapshot(),
            taken_at: Now::NEVER,
        }
    }

    fn advance_watermark(&mut self, watermark: i64) -> Result<Output, OperatorError> {
        // W6: fire what is due, a batch at a time as the host does; a timer does nothing.
        // W7: a timer is a window's last millisecond: its count comes out and goes.
        let failed = |e: crate::state::StateError| OperatorError::Failed {
            operator: "native".into(),
            message: e.to_string(),
            on_record: None,
            index: None,
        };
        let mut out = Vec::new();
        loop {
            let due =
                (self.backend.timers_due(TimeDomain::Event, watermark, 512)).map_err(failed)?;
            if due.is_empty() {
                return Ok(out);
            }
            if self.workload != Workload::Window {
                continue;
            }
            for (key_group, timer) in due {
                let scope = Scope {
                    state: StateId(0),
                    key_group,
                    key: &timer.key,
                };
                let start = (timer.timestamp + 1 - WINDOW_MS).to_be_bytes();
                let count = (self.backend.map_get(scope, &start).map_err(failed)?)
                    .map_or(0, |bytes| count_of(&bytes));
                self.backend.map_remove(scope, &start).map_err(failed)?;
                let key = String::from_utf8_lossy(&timer.key);
                let window =
                    json!({"key": key, "start": timer.timestamp + 1 - WINDOW_MS, "count": count});
                out.push(Record {
                    payload: serde_json::to_vec(&window).expect("JSON"),
                    timestamp: Some(timer.timestamp),
                });
            }
        }
    }

    fn close(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}
