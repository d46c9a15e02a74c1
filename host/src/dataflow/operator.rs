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
use std::time::Instant;

use crossbeam_channel::Sender;

use super::edge::Outputs;
use super::inputs::{Event, Inputs};
use super::poison::{self, Guard, RecordId, Treatment};
use super::{Failure, OperatorReport, Stop};
use crate::checkpoint::coordinator::{Ack, AckState, Report, TaskId};
use crate::checkpoint::shared::Uploads;
use crate::checkpoint::{CheckpointError, StateFile, Store};
use crate::record::KeyedRecord;
use crate::state::BackendSnapshot;
use crate::state::snapshot::StateInfo;
use crate::wasm::{Batch, OperatorError, OperatorInstance, Output};

/// What an operator task runs: a Wasm instance, or one of `host bench`'s native
/// baselines.
pub trait Logic: Send {
    /// Processes one batch; returns what it emitted, in order.
    fn process(&mut self, batch: Batch) -> Result<Output, OperatorError>;
    /// The registered states and a point-in-time copy of the state (cheap to take).
    fn snapshot(&self) -> (Vec<StateInfo>, Box<dyn BackendSnapshot>);
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
                    operator: self.task.0.clone(),
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
    /// Acknowledgements go here.
    pub reports: Sender<Report>,
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
        name: task.0.clone(),
        ..OperatorReport::default()
    };
    let mut writers = Writers(Vec::new());
    // One per database: the files of this task's backend already in a checkpoint.
    let uploads = Arc::new(Mutex::new(Uploads::new(&task.0, task.1)));
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
                let sync = started.elapsed();
                outputs.barrier(id).map_err(|_| Stop::Disconnected)?;
                if let Some(checkpoints) = &checkpoints {
                    let (store, reports, task) = (
                        checkpoints.store.clone(),
                        checkpoints.reports.clone(),
                        task.clone(),
                    );
                    let uploads = checkpoints.incremental.then(|| uploads.clone());
                    // The asynchronous part: the task goes on while the state is written.
                    writers.0.retain(|w| !w.is_finished());
                    let name = format!("{}-{}", task.0, task.1);
                    let writer = std::thread::Builder::new().name(format!("chk-{name}"));
                    let declined = checkpoints.reports.clone();
                    let spawned = writer.spawn(move || {
                        let written = write(&store, id.0, &name, states, copy, uploads);
                        match written {
                            Ok(file) => {
                                let _ = reports.send(Report::Ack(Ack {
                                    checkpoint: id.0,
                                    task,
                                    state: AckState::Operator { file, sync },
                                }));
                            }
                            Err(e) => {
                                let _ = reports.send(Report::Declined {
                                    checkpoint: id.0,
                                    reason: e.to_string(),
                                });
                            }
                        }
                    });
                    match spawned {
                        Ok(writer) => writers.0.push(writer),
                        Err(e) => {
                            let _ = declined.send(Report::Declined {
                                checkpoint: id.0,
                                reason: format!("cannot start a thread to write the state: {e}"),
                            });
                        }
                    }
                }
            }
            Event::Committed(_) => {}
        }
    }
    instance.close().map_err(|e| Stop::Failed(e.into()))?;
    outputs.end().map_err(|_| Stop::Disconnected)?;
    Ok(report)
}

/// Writes a subtask's state copy into checkpoint `id`: only the new files of a backend
/// that has its own (with `uploads`), else one canonical file.
fn write(
    store: &Store,
    id: u64,
    name: &str,
    states: Vec<StateInfo>,
    copy: Box<dyn BackendSnapshot>,
    uploads: Option<Arc<Mutex<Uploads>>>,
) -> Result<StateFile, Box<dyn std::error::Error>> {
    if let (Some(native), Some(uploads)) = (copy.native_files(), uploads) {
        // Writers of one task take turns: each sees what the previous one copied.
        let mut uploads = uploads.lock().unwrap_or_else(|e| e.into_inner());
        return Ok(store.write_incremental(id, name, &states, native, &mut uploads)?);
    }
    let bytes = copy.encode(&states)?;
    let file: Result<StateFile, CheckpointError> =
        store.write_state(id, &format!("{name}.state"), &bytes);
    Ok(file?)
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
