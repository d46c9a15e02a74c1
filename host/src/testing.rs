//! Testing an operator of any language: the real component in this process, records in,
//! outputs out, state inspected, snapshots taken and restored into fresh instances.
//! `host test` is built on it; Rust integration tests use [`TestOperator`] directly.
//!
//! ```no_run
//! use host::testing::{TestOperator, TestOptions};
//!
//! let options = TestOptions { key_by: Some("/url".into()), ..TestOptions::default() };
//! let mut op = TestOperator::load("visit_count.wasm".as_ref(), options).unwrap();
//! let out = op.push(r#"{"url":"/a"}"#).unwrap();
//! assert_eq!(out, [r#"{"url":"/a","count":1}"#]);
//! let mut fresh = op.restored(&op.snapshot().unwrap()).unwrap();
//! assert_eq!(fresh.push(r#"{"url":"/a"}"#).unwrap(), [r#"{"url":"/a","count":2}"#]);
//! ```

mod diff;
mod run;

use std::path::{Path, PathBuf};

pub use diff::{Comparison, compare};
pub use run::{TestArgs, run};

use crate::job::{Input, JsonPointer};
use crate::record::event_time::EventTime;
use crate::record::{KeySelector, KeyedRecord};
use crate::small_bytes::SmallBytes;
use crate::state::memory::MemoryBackend;
use crate::state::operator::{OperatorState, redistribute};
use crate::state::snapshot::{SlotData, Snapshot};
use crate::state::{KeyGroup, KeyGroupRange};
use crate::wasm::{LoadedComponent, OperatorError, OperatorInstance, Runtime, TaskInfo};

/// How to run the operator under test.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// The `key_by` JSON pointer (e.g. `/url`); `None` for an operator without keyed state.
    pub key_by: Option<String>,
    /// The `[operator.config]` table, as a JSON object.
    pub config_json: String,
    /// The job's `max_parallelism` (key groups); it decides nothing an operator sees.
    pub max_parallelism: u16,
    /// Limits and grants, as `[operator.limits]` and `[[operator.grants]]` give them.
    pub sandbox: crate::job::Sandbox,
    /// The operator's inputs, as its job file's `input` lists them; records pushed
    /// without naming one come from the first.
    pub inputs: Vec<Input>,
    /// The `event_time` JSON pointer (e.g. `/ts`): each record's event time.
    pub event_time: Option<String>,
    /// The operator's side outputs, as its job file's `side_outputs` names them.
    pub side_outputs: Vec<String>,
}

impl Default for TestOptions {
    fn default() -> TestOptions {
        TestOptions {
            key_by: None,
            config_json: "{}".into(),
            max_parallelism: 128,
            sandbox: crate::job::Sandbox::default(),
            inputs: vec![Input {
                name: "input".into(),
                broadcast: false,
            }],
            event_time: None,
            side_outputs: Vec::new(),
        }
    }
}

/// What can go wrong while testing, besides different outputs.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The options are unusable (a bad `key_by` pointer, config that is not an object).
    #[error("{0}")]
    Options(String),
    /// A record has no key, or is not JSON.
    #[error("record {index}: {reason}")]
    Record {
        /// 1-based position of the record in the input.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The component failed to load, trapped or returned an error.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A snapshot could not be taken or read back.
    #[error("snapshot: {0}")]
    Snapshot(String),
}

/// A test instance's state: its keyed state, canonical as in a checkpoint, and its
/// operator state.
#[derive(Debug, Clone, Default)]
pub struct TestSnapshot {
    /// Keyed state.
    pub keyed: Snapshot,
    /// Operator (non-keyed) state.
    pub operator_state: OperatorState,
}

/// One operator instance under test, with its keyed state in memory.
pub struct TestOperator {
    runtime: Runtime,
    component: LoadedComponent,
    options: TestOptions,
    keys: Option<KeySelector>,
    event_time: Option<EventTime>,
    instance: OperatorInstance,
    /// Records pushed so far (to number them in errors).
    pushed: usize,
    /// How many times this operator's state was restored into a fresh instance.
    attempt: u32,
    /// The processing time the operator reads (epoch milliseconds).
    clock: i64,
}

impl TestOperator {
    /// Loads the component at `path` and opens one instance of it.
    pub fn load(path: &Path, options: TestOptions) -> Result<TestOperator, TestError> {
        let runtime = Runtime::new()
            .map_err(|e| TestError::Options(format!("cannot start the Wasm runtime: {e:#}")))?;
        let component = runtime.load(path, &options.sandbox.limits)?;
        let keys = match &options.key_by {
            Some(pointer) => Some(KeySelector::new(
                JsonPointer::parse(pointer)
                    .map_err(|e| TestError::Options(format!("--key-by: {e}")))?,
                options.max_parallelism,
            )),
            None => None,
        };
        let event_time = match &options.event_time {
            Some(pointer) => Some(EventTime::new(
                JsonPointer::parse(pointer)
                    .map_err(|e| TestError::Options(format!("--event-time: {e}")))?,
            )),
            None => None,
        };
        match serde_json::from_str::<serde_json::Value>(&options.config_json) {
            Ok(serde_json::Value::Object(_)) => {}
            _ => {
                return Err(TestError::Options(format!(
                    "the config must be a JSON object, not `{}`",
                    options.config_json
                )));
            }
        }
        let instance = open(&component, &options, None, 0, (0, 1))?;
        Ok(TestOperator {
            runtime,
            component,
            options,
            keys,
            event_time,
            instance,
            pushed: 0,
            attempt: 0,
            clock: 0,
        })
    }

    /// Processes one record (a JSON document, keyed by `key_by`); returns its outputs.
    pub fn push(&mut self, record: &str) -> Result<Vec<String>, TestError> {
        self.push_batch(&[record])
    }

    /// Processes one record under an explicit key, ignoring `key_by`.
    pub fn push_keyed(&mut self, key: &str, record: &str) -> Result<Vec<String>, TestError> {
        self.pushed += 1;
        let record = KeyedRecord {
            key: key.as_bytes().into(),
            key_group: KeyGroup::of(key.as_bytes(), self.options.max_parallelism),
            payload: record.as_bytes().to_vec(),
            timestamp: None,
            origin: None,
        };
        self.process(vec![record])
    }

    /// Processes records as one batch (one `process` call); returns their outputs.
    pub fn push_batch(&mut self, records: &[&str]) -> Result<Vec<String>, TestError> {
        let first = self.options.inputs.first().map(|i| i.name.clone());
        self.push_batch_to(first.as_deref().unwrap_or_default(), records)
    }

    /// Processes records of the input `input` as one batch; returns their outputs. A
    /// broadcast input's records have no key.
    pub fn push_batch_to(
        &mut self,
        input: &str,
        records: &[&str],
    ) -> Result<Vec<String>, TestError> {
        let (index, broadcast) = match self.options.inputs.iter().position(|i| i.name == input) {
            Some(index) => (index as u32, self.options.inputs[index].broadcast),
            None => {
                return Err(TestError::Options(format!(
                    "the operator has no input `{input}`"
                )));
            }
        };
        let mut batch = Vec::with_capacity(records.len());
        for record in records {
            self.pushed += 1;
            batch.push(match broadcast {
                false => self.keyed(record, self.pushed)?,
                true => unkeyed(record, self.pushed)?,
            });
        }
        self.process_from(batch, index)
    }

    /// `record` (the `index`-th of the input) with its key, as `key_by` extracts it, and
    /// its event time, as `event_time` reads it.
    fn keyed(&self, record: &str, index: usize) -> Result<KeyedRecord, TestError> {
        let timestamp = (self.event_time.as_ref())
            .map(|time| time.of(record.as_bytes()))
            .transpose()
            .map_err(|e| TestError::Record {
                index,
                reason: e.to_string(),
            })?;
        let keyed = self.keyed_untimed(record, index)?;
        Ok(KeyedRecord { timestamp, ..keyed })
    }

    fn keyed_untimed(&self, record: &str, index: usize) -> Result<KeyedRecord, TestError> {
        let Some(keys) = &self.keys else {
            return unkeyed(record, index);
        };
        let (key, key_group) = keys.key(record.as_bytes()).map_err(|e| TestError::Record {
            index,
            reason: e.to_string(),
        })?;
        Ok(KeyedRecord {
            key,
            key_group,
            payload: record.as_bytes().to_vec(),
            timestamp: None,
            origin: None,
        })
    }

    /// Which of `parallelism` instances the host would give `record` (the `index`-th of
    /// the input): the one owning its key group, or, without `key_by`, the next in turn.
    pub fn subtask_of(
        &self,
        record: &str,
        index: usize,
        parallelism: u16,
    ) -> Result<usize, TestError> {
        let keyed = self.keyed(record, index)?;
        Ok(match self.keys {
            Some(_) => usize::from(KeyGroupRange::subtask_of(
                keyed.key_group,
                self.options.max_parallelism,
                parallelism,
            )),
            None => index % usize::from(parallelism),
        })
    }

    fn process(&mut self, batch: Vec<KeyedRecord>) -> Result<Vec<String>, TestError> {
        self.process_from(batch, 0)
    }

    fn process_from(
        &mut self,
        batch: Vec<KeyedRecord>,
        input: u32,
    ) -> Result<Vec<String>, TestError> {
        let outputs = self.instance.process(batch, input)?;
        Ok(payloads(outputs))
    }

    /// The state `name` holds for `key` (as `key_by` extracts it), if any.
    pub fn state(&self, name: &str, key: &str) -> Result<Option<SlotData>, TestError> {
        let snapshot = self.snapshot()?.keyed;
        let Some(index) = snapshot.states.iter().position(|s| s.name == name) else {
            return Ok(None);
        };
        let group = KeyGroup::of(key.as_bytes(), self.options.max_parallelism);
        Ok(snapshot
            .groups
            .into_iter()
            .filter(|g| g.group == group)
            .flat_map(|g| g.entries)
            .find(|e| e.state as usize == index && e.key == key.as_bytes())
            .map(|e| e.data))
    }

    /// A snapshot of the state, encoded and decoded again as a checkpoint would be.
    pub fn snapshot(&self) -> Result<TestSnapshot, TestError> {
        let snapshot = (self.instance.snapshot().into_snapshot())
            .map_err(|e| TestError::Snapshot(e.to_string()))?;
        let error = |e: String| TestError::Snapshot(e);
        Ok(TestSnapshot {
            keyed: Snapshot::decode(&snapshot.encode()).map_err(|e| error(e.to_string()))?,
            operator_state: OperatorState::decode(&self.instance.operator_state().encode())
                .map_err(|e| error(e.to_string()))?,
        })
    }

    /// A fresh instance of the same component restored from `snapshot` and opened again
    /// (its attempt number one higher), as after a failure.
    pub fn restored(&self, snapshot: &TestSnapshot) -> Result<TestOperator, TestError> {
        let mut restored = self.rescaled(std::slice::from_ref(snapshot), 1)?;
        Ok(restored.remove(0))
    }

    /// `parallelism` fresh instances restored from the snapshots of instances of this
    /// component (in subtask order), as the host restores an operator whose parallelism
    /// changed: each instance gets the key groups of its subtask and its share of the
    /// operator state.
    pub fn rescaled(
        &self,
        snapshots: &[TestSnapshot],
        parallelism: u16,
    ) -> Result<Vec<TestOperator>, TestError> {
        let attempt = self.attempt + 1;
        let operator_states: Vec<OperatorState> =
            snapshots.iter().map(|s| s.operator_state.clone()).collect();
        let shares = redistribute(&operator_states, usize::from(parallelism));
        let keyed: Vec<&Snapshot> = snapshots.iter().map(|s| &s.keyed).collect();
        (0..parallelism)
            .zip(shares)
            .map(|(subtask, share)| {
                let task = (subtask, parallelism);
                let restore = Restore {
                    keyed: &keyed,
                    operator_state: share,
                };
                let mut instance =
                    open(&self.component, &self.options, Some(restore), attempt, task)?;
                instance.set_clock(Some(self.clock));
                Ok(TestOperator {
                    runtime: self.runtime.clone(),
                    component: self.component.clone(),
                    options: self.options.clone(),
                    keys: self.keys.clone(),
                    event_time: self.event_time.clone(),
                    instance,
                    pushed: self.pushed,
                    attempt,
                    clock: self.clock,
                })
            })
            .collect()
    }

    /// The watermark reached `watermark`: fires the event-time timers due; returns
    /// their outputs.
    pub fn advance_watermark(&mut self, watermark: i64) -> Result<Vec<String>, TestError> {
        let outputs = self.instance.advance_watermark(watermark)?;
        Ok(payloads(outputs))
    }

    /// The operator's clock reads `now` (epoch milliseconds; 0 until set): fires the
    /// processing-time timers due; returns their outputs.
    pub fn advance_processing_time(&mut self, now: i64) -> Result<Vec<String>, TestError> {
        self.clock = now;
        self.instance.set_clock(Some(now));
        let outputs = self.instance.advance_processing_time(now)?;
        Ok(payloads(outputs))
    }

    /// The end of the input, as at the end of a job: fires every pending event-time
    /// timer, then calls the operator's `close`; returns the timers' outputs.
    pub fn close(&mut self) -> Result<Vec<String>, TestError> {
        let outputs = self.advance_watermark(i64::MAX)?;
        self.instance.close()?;
        Ok(outputs)
    }

    /// What the operator sent to its side outputs since the last time: each record
    /// (as its JSON text) with its side output's name.
    pub fn take_side_outputs(&mut self) -> Vec<(String, String)> {
        (self.instance.take_side_outputs().into_iter())
            .map(|(output, record)| {
                let name = self.options.side_outputs[output].clone();
                (name, String::from_utf8_lossy(&record.payload).into_owned())
            })
            .collect()
    }

    /// The component's file.
    pub fn path(&self) -> PathBuf {
        self.component.path().to_path_buf()
    }
}

/// Outputs as the text of their payloads.
fn payloads(outputs: crate::wasm::Output) -> Vec<String> {
    (outputs.into_iter())
        .map(|o| String::from_utf8_lossy(&o.payload).into_owned())
        .collect()
}

/// `record` (the `index`-th of the input) without a key, checked to be JSON.
fn unkeyed(record: &str, index: usize) -> Result<KeyedRecord, TestError> {
    serde_json::from_str::<serde::de::IgnoredAny>(record).map_err(|e| TestError::Record {
        index,
        reason: format!("not a JSON document: {e}"),
    })?;
    Ok(KeyedRecord {
        key: SmallBytes::default(),
        key_group: KeyGroup(0),
        payload: record.as_bytes().to_vec(),
        timestamp: None,
        origin: None,
    })
}

/// What a restored test instance starts from.
struct Restore<'a> {
    /// Every old instance's keyed state (each new one keeps its own key groups).
    keyed: &'a [&'a Snapshot],
    /// Its share of the operator state.
    operator_state: OperatorState,
}

fn open(
    component: &LoadedComponent,
    options: &TestOptions,
    restore: Option<Restore<'_>>,
    attempt: u32,
    (subtask, parallelism): (u16, u16),
) -> Result<OperatorInstance, OperatorError> {
    let range = KeyGroupRange::for_subtask(options.max_parallelism, parallelism, subtask);
    let backend = MemoryBackend::new(range);
    let mut instance = OperatorInstance::new(
        component,
        "test",
        options.key_by.is_some(),
        &options.inputs,
        &options.side_outputs,
        Box::new(backend),
        &options.sandbox,
    )?;
    // Tests set the operator's processing time; it never reads the wall clock.
    instance.set_clock(Some(0));
    if let Some(restore) = restore {
        for snapshot in restore.keyed {
            instance.restore(snapshot)?;
        }
        instance.restore_operator_state(restore.operator_state);
    }
    let task = TaskInfo {
        subtask,
        parallelism,
        attempt,
    };
    instance.open(&options.config_json, task)?;
    Ok(instance)
}
