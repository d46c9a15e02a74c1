//! Operator tasks: feed each input batch to the Wasm instance and push what it emits;
//! at a checkpoint, take the state's copy, forward the barrier, and write the copy on
//! another thread.
//!
//! Invariants: the snapshot for checkpoint *n* is taken after every record before
//! barrier *n* was processed and before any record after it (alignment guarantees the
//! inputs; this task does the rest in order), and the barrier is forwarded only after.
//! A task ends only after its writer threads have: no write of a failed attempt can land
//! in a checkpoint folder that a later attempt reuses.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::edge::Outputs;
use super::inputs::{Event, Inputs};
use super::poison::{self, Guard, RecordId, Treatment};
use super::{Failure, OperatorReport, Stop};
use crate::checkpoint::coordinator::{AckState, Finished, Handle, TaskId};
use crate::checkpoint::metadata::CanonicalFile;
use crate::checkpoint::shared::Uploads;
use crate::checkpoint::{CheckpointError, CheckpointId, StateFile, Store};
use crate::record::KeyedRecord;
use crate::state::BackendSnapshot;
use crate::state::operator::OperatorState;
use crate::state::snapshot::StateInfo;
use crate::wasm::{Batch, OperatorError, OperatorInstance, Output};

/// Makes a native operator over a state backend, given the operator's config JSON:
/// `host bench`'s baselines, run in place of every component.
pub type NativeFactory =
    fn(&str, Box<dyn crate::state::StateBackend>) -> Result<Box<dyn Logic>, String>;

/// What an operator task runs: a Wasm instance, or one of `host bench`'s native
/// baselines.
pub trait Logic: Send {
    /// Processes one batch; returns what it emitted, in order.
    fn process(&mut self, batch: Batch) -> Result<Output, OperatorError>;
    /// The registered states and a point-in-time copy of the state (cheap to take).
    fn snapshot(&self) -> (Vec<StateInfo>, Box<dyn BackendSnapshot>);
    /// A copy of the operator (non-keyed) state.
    fn operator_state(&self) -> OperatorState {
        OperatorState::default()
    }
    /// The end of the input.
    fn close(&mut self) -> Result<(), OperatorError>;
}

impl Logic for OperatorInstance {
    fn process(&mut self, batch: Batch) -> Result<Output, OperatorError> {
        OperatorInstance::process(self, batch)
    }

    fn snapshot(&self) -> (Vec<StateInfo>, Box<dyn BackendSnapshot>) {
        OperatorInstance::snapshot(self)
    }

    fn operator_state(&self) -> OperatorState {
        OperatorInstance::operator_state(self)
    }

    fn close(&mut self) -> Result<(), OperatorError> {
        OperatorInstance::close(self)
    }
}

/// One batch's processing: the guest's call, its outputs, and failures told to the
/// poison guard.
struct Run<'a> {
    task: &'a TaskId,
    instance: &'a mut dyn Logic,
    outputs: &'a mut Outputs,
    report: &'a mut OperatorReport,
    guard: &'a Guard,
}

impl Run<'_> {
    /// Processes `batch` (records `ids`; `alone` is the record when it is processed by
    /// itself) and pushes what it emits.
    fn process(
        &mut self,
        batch: Batch,
        ids: &[RecordId],
        alone: Option<&KeyedRecord>,
    ) -> Result<(), Stop> {
        if batch.is_empty() {
            return Ok(());
        }
        let emitted = self
            .instance
            .process(batch)
            .map_err(|e| Stop::Failed(self.guard.failed(ids, alone, e)))?;
        self.report.records_out += emitted.len() as u64;
        for record in emitted {
            self.outputs.push(record, None).map_err(|error| {
                Stop::Failed(Failure::BadOutput {
                    operator: self.task.node.clone(),
                    error,
                })
            })?;
        }
        Ok(())
    }
}

/// Where an operator subtask writes its checkpoints.
pub struct Checkpoints {
    /// The job's checkpoint store.
    pub store: Store,
    /// Acknowledgements, and the final state at the end.
    pub handle: Handle,
    /// Copy only new files of a backend that has its own (RocksDB).
    pub incremental: bool,
}

/// Runs an opened operator instance until all of its inputs have ended.
pub fn run(
    task: TaskId,
    mut instance: Box<dyn Logic>,
    mut inputs: Inputs,
    mut outputs: Outputs,
    checkpoints: Option<Checkpoints>,
    guard: Arc<Guard>,
) -> Result<OperatorReport, Stop> {
    let mut report = OperatorReport {
        name: task.node.clone(),
        ..OperatorReport::default()
    };
    let mut writers = Writers(Vec::new());
    // One per database: the files of this task's backend already in a checkpoint.
    let uploads = Arc::new(Mutex::new(Uploads::new(&task.node, task.subtask)));
    let name = format!("{}-{}", task.node, task.subtask);
    while let Some(event) = inputs.next()? {
        match event {
            Event::Batch(batch) => {
                report.records_in += batch.len() as u64;
                let ids: Vec<RecordId> = batch.iter().map(poison::identity).collect();
                let mut run = Run {
                    task: &task,
                    instance: instance.as_mut(),
                    outputs: &mut outputs,
                    report: &mut report,
                    guard: &guard,
                };
                if !guard.armed() {
                    run.process(batch, &ids, None)?;
                } else {
                    // After a failure: suspects alone, poison records never.
                    let (mut part, mut part_ids) = (Vec::new(), Vec::new());
                    for (record, id) in batch.into_iter().zip(ids) {
                        match guard.treatment(id) {
                            Treatment::Normal => {
                                part.push(record);
                                part_ids.push(id);
                            }
                            Treatment::Alone => {
                                run.process(std::mem::take(&mut part), &part_ids, None)?;
                                part_ids.clear();
                                let alone = record.clone();
                                run.process(vec![record], &[id], Some(&alone))?;
                                guard.cleared(id);
                            }
                            Treatment::Divert => {
                                guard.divert(id, &record).map_err(Stop::Failed)?;
                                run.report.poison += 1;
                            }
                        }
                    }
                    run.process(part, &part_ids, None)?;
                }
                outputs.flush().map_err(|_| Stop::Disconnected)?;
            }
            Event::Checkpoint(id) => {
                let started = Instant::now();
                let (states, copy) = instance.snapshot();
                let operator_state = instance.operator_state();
                let sync = started.elapsed();
                outputs.barrier(id).map_err(|_| Stop::Disconnected)?;
                if let Some(checkpoints) = &checkpoints {
                    let (store, handle, name) = (
                        checkpoints.store.clone(),
                        checkpoints.handle.clone(),
                        name.clone(),
                    );
                    let uploads = checkpoints.incremental.then(|| uploads.clone());
                    // The asynchronous part: the task goes on while the state is written.
                    writers.0.retain(|w| !w.is_finished());
                    let writer = std::thread::Builder::new().name(format!("chk-{name}"));
                    let spawned = writer.spawn(move || {
                        let copy = Copy {
                            states,
                            keyed: copy,
                            operator_state,
                        };
                        match write(&store, id, &name, copy, uploads) {
                            Ok((file, operator_state)) => handle.ack(
                                id,
                                AckState::Operator {
                                    file,
                                    operator_state,
                                    sync,
                                },
                            ),
                            Err(e) => handle.decline(id, e.to_string()),
                        }
                    });
                    if let Err(e) = spawned.map(|writer| writers.0.push(writer)) {
                        let reason = format!("cannot start a thread to write the state: {e}");
                        checkpoints.handle.decline(id, reason);
                    }
                }
            }
            Event::Committed(_) => {}
        }
    }
    instance.close().map_err(|e| Stop::Failed(e.into()))?;
    outputs.end().map_err(|_| Stop::Disconnected)?;
    if let Some(checkpoints) = checkpoints {
        // Every acknowledgement of this task is sent before its final state takes over.
        drop(writers);
        let uploads = checkpoints.incremental.then_some(uploads);
        checkpoints.handle.finished(Box::new(FinalState {
            instance,
            store: checkpoints.store,
            name,
            uploads,
        }));
    }
    Ok(report)
}

/// A finished operator subtask's state, written into every checkpoint after its end:
/// the instance is kept (closed) so that its backend can still be copied.
struct FinalState {
    instance: Box<dyn Logic>,
    store: Store,
    name: String,
    uploads: Option<Arc<Mutex<Uploads>>>,
}

impl Finished for FinalState {
    fn state(&mut self, id: CheckpointId) -> Result<AckState, String> {
        let (states, keyed) = self.instance.snapshot();
        let copy = Copy {
            states,
            keyed,
            operator_state: self.instance.operator_state(),
        };
        let (file, operator_state) = write(&self.store, id, &self.name, copy, self.uploads.clone())
            .map_err(|e| e.to_string())?;
        Ok(AckState::Operator {
            file,
            operator_state,
            sync: Duration::ZERO,
        })
    }
}

/// A point-in-time copy of a subtask's state, taken at a barrier.
struct Copy {
    states: Vec<StateInfo>,
    keyed: Box<dyn BackendSnapshot>,
    operator_state: OperatorState,
}

/// Writes a subtask's state copy into checkpoint `id`: the keyed state as only the new
/// files of a backend that has its own (with `uploads`), else one canonical file; the
/// operator state, if any, as a file of its own.
fn write(
    store: &Store,
    id: CheckpointId,
    name: &str,
    copy: Copy,
    uploads: Option<Arc<Mutex<Uploads>>>,
) -> Result<(StateFile, Option<CanonicalFile>), Box<dyn std::error::Error>> {
    let operator_state = match copy.operator_state.is_empty() {
        true => None,
        false => {
            let bytes = copy.operator_state.encode();
            Some(store.write_file(id.0, &format!("{name}.opstate"), &bytes)?)
        }
    };
    if let (Some(native), Some(uploads)) = (copy.keyed.native_files(), uploads) {
        // Writers of one task take turns: each sees what the previous one copied.
        let mut uploads = uploads.lock().unwrap_or_else(|e| e.into_inner());
        let file = store.write_incremental(id.0, name, &copy.states, native, &mut uploads)?;
        return Ok((file, operator_state));
    }
    let bytes = copy.keyed.encode(&copy.states)?;
    let file: Result<StateFile, CheckpointError> =
        store.write_state(id.0, &format!("{name}.state"), &bytes);
    Ok((file?, operator_state))
}

/// A task's checkpoint writer threads, joined when the task ends, however it ends.
struct Writers(Vec<std::thread::JoinHandle<()>>);

impl Drop for Writers {
    fn drop(&mut self) {
        for writer in self.0.drain(..) {
            let _ = writer.join();
        }
    }
}
