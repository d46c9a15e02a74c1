//! Operator tasks: feed each input batch to the Wasm instance and push what it emits;
//! at a checkpoint, take the state's copy, forward the barrier, and write the copy on
//! another thread.
//!
//! Invariants: the snapshot for checkpoint *n* is taken after every record before
//! barrier *n* was processed and before any record after it (alignment guarantees the
//! inputs; this task does the rest in order), and the barrier is forwarded only after.
//! A task ends only after its writer threads have: no write of a failed attempt can land
//! in a checkpoint folder that a later attempt reuses.

use std::time::Instant;

use crossbeam_channel::Sender;

use super::edge::Outputs;
use super::inputs::{Event, Inputs};
use super::{Failure, OperatorReport, Stop};
use crate::checkpoint::Store;
use crate::checkpoint::coordinator::{Ack, AckState, Report, TaskId};
use crate::wasm::{OperatorInstance, into_snapshot};

/// Where an operator subtask writes its checkpoints.
pub struct Checkpoints {
    /// The job's checkpoint store.
    pub store: Store,
    /// Acknowledgements go here.
    pub reports: Sender<Report>,
}

/// Runs an opened operator instance until all of its inputs have ended.
pub fn run(
    task: TaskId,
    mut instance: OperatorInstance,
    mut inputs: Inputs,
    mut outputs: Outputs,
    checkpoints: Option<Checkpoints>,
) -> Result<OperatorReport, Stop> {
    let mut report = OperatorReport {
        name: task.0.clone(),
        ..OperatorReport::default()
    };
    let mut writers = Writers(Vec::new());
    while let Some(event) = inputs.next()? {
        match event {
            Event::Batch(batch) => {
                report.records_in += batch.len() as u64;
                let emitted = instance
                    .process(batch)
                    .map_err(|e| Stop::Failed(e.into()))?;
                report.records_out += emitted.len() as u64;
                for record in emitted {
                    outputs.push(record).map_err(|error| {
                        Stop::Failed(Failure::BadOutput {
                            operator: task.0.clone(),
                            error,
                        })
                    })?;
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
                    // The asynchronous part: the task goes on while the state is written.
                    writers.0.retain(|w| !w.is_finished());
                    writers.0.push(std::thread::spawn(move || {
                        let file = format!("{}-{}.state", task.0, task.1);
                        let written = into_snapshot(states, copy)
                            .map_err(|e| e.to_string())
                            .and_then(|snapshot| {
                                store
                                    .write_state(id.0, &file, &snapshot)
                                    .map_err(|e| e.to_string())
                            });
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
                                    reason: e,
                                });
                            }
                        }
                    }));
                }
            }
            Event::Committed(_) => {}
        }
    }
    instance.close().map_err(|e| Stop::Failed(e.into()))?;
    outputs.end().map_err(|_| Stop::Disconnected)?;
    Ok(report)
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
