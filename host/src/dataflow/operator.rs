//! Operator tasks: feed each input batch to the Wasm instance and push what it emits;
//! at a checkpoint, take the state's copy, forward the barrier, and hand the copy to the
//! snapshot writer (`checkpoint::writer`).
//!
//! Invariant: an aligned snapshot for checkpoint *n* is taken after every record before
//! barrier *n* was processed and before any record after it (alignment guarantees the
//! inputs; this task does the rest in order); an unaligned one as soon as the barrier
//! arrives, the records before it not processed yet being its channel state (`Inputs`
//! records them, with the rest of a batch the task gave back to take the barrier). The
//! barrier is forwarded only after the snapshot, and a watermark only after the outputs
//! emitted before it and after the event-time timers due at it have fired (their
//! outputs included); every event-time timer fires before `close`, as the end of the
//! input is a watermark at the end of time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::edge::Outputs;
use super::inputs::{Event, Inputs};
use super::poison::{self, Guard, RecordId, Treatment};
use super::watermark::Status;
use super::{BATCH_SIZE, Failure, OperatorReport, Stop};
use crate::checkpoint::Store;
use crate::checkpoint::coordinator::{Handle, TaskId};
use crate::checkpoint::writer::{Met, SnapshotWriter, StateCopy};
use crate::record::{KeyedRecord, Record};
use crate::state::KeyedCopy;
use crate::state::operator::OperatorState;
use crate::wasm::{Batch, OperatorError, OperatorInstance, Output};

/// Makes a native operator over a state backend, given the operator's config JSON:
/// `host bench`'s baselines, run in place of every component.
pub type NativeFactory =
    fn(&str, Box<dyn crate::state::StateBackend>) -> Result<Box<dyn Logic>, String>;

/// What an operator task runs: a Wasm instance, or one of `host bench`'s native
/// baselines.
pub trait Logic: Send {
    /// Processes one batch of the input with index `input`; returns what it emitted, in
    /// order.
    fn process(&mut self, batch: Batch, input: u32) -> Result<Output, OperatorError>;
    /// A point-in-time copy of the keyed state (cheap to take).
    fn snapshot(&self) -> KeyedCopy;
    /// A copy of the operator (non-keyed) state.
    fn operator_state(&self) -> OperatorState {
        OperatorState::default()
    }
    /// The watermark reached `watermark`: fires the event-time timers due; returns
    /// their outputs.
    fn advance_watermark(&mut self, watermark: i64) -> Result<Output, OperatorError> {
        let _ = watermark;
        Ok(Vec::new())
    }
    /// The wall clock reads `now` (epoch milliseconds): fires the processing-time
    /// timers due; returns their outputs.
    fn advance_processing_time(&mut self, now: i64) -> Result<Output, OperatorError> {
        let _ = now;
        Ok(Vec::new())
    }
    /// The earliest a processing-time timer may be due (epoch milliseconds), if any.
    fn next_processing_timer(&self) -> Option<i64> {
        None
    }
    /// The watermark its timers have seen, if any.
    fn watermark(&self) -> Option<i64> {
        None
    }
    /// The end of the input.
    fn close(&mut self) -> Result<(), OperatorError>;
    /// What the calls since the last time sent to side outputs, each record with its
    /// side output's index.
    fn take_side_outputs(&mut self) -> Vec<(usize, Record)> {
        Vec::new()
    }
}

impl Logic for OperatorInstance {
    fn process(&mut self, batch: Batch, input: u32) -> Result<Output, OperatorError> {
        OperatorInstance::process(self, batch, input)
    }

    fn snapshot(&self) -> KeyedCopy {
        OperatorInstance::snapshot(self)
    }

    fn operator_state(&self) -> OperatorState {
        OperatorInstance::operator_state(self)
    }

    fn advance_watermark(&mut self, watermark: i64) -> Result<Output, OperatorError> {
        OperatorInstance::advance_watermark(self, watermark)
    }

    fn advance_processing_time(&mut self, now: i64) -> Result<Output, OperatorError> {
        OperatorInstance::advance_processing_time(self, now)
    }

    fn next_processing_timer(&self) -> Option<i64> {
        OperatorInstance::next_processing_timer(self)
    }

    fn take_side_outputs(&mut self) -> Vec<(usize, Record)> {
        OperatorInstance::take_side_outputs(self)
    }

    fn watermark(&self) -> Option<i64> {
        OperatorInstance::watermark(self)
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
    /// The input the batch came from.
    input: u32,
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
            .process(batch, self.input)
            .map_err(|e| Stop::Failed(self.guard.failed(ids, alone, e)))?;
        push(self.task, self.instance, self.outputs, self.report, emitted)
    }
}

/// Pushes what the guest emitted (from `process` or `on-timer`), and what it sent to
/// side outputs.
fn push(
    task: &TaskId,
    instance: &mut dyn Logic,
    outputs: &mut Outputs,
    report: &mut OperatorReport,
    emitted: Output,
) -> Result<(), Stop> {
    let bad = |error| {
        Stop::Failed(Failure::BadOutput {
            operator: task.node.clone(),
            error,
        })
    };
    report.records_out += emitted.len() as u64;
    for record in emitted {
        outputs.push(record, None).map_err(bad)?;
    }
    let side = instance.take_side_outputs();
    report.records_to_side_outputs += side.len() as u64;
    for (output, record) in side {
        outputs.push_side(output, record).map_err(bad)?;
    }
    Ok(())
}

/// When the earliest processing-time timer may be due, as an instant.
fn alarm(instance: &dyn Logic) -> Option<Instant> {
    let next = instance.next_processing_timer()?;
    let wait = next.saturating_sub(crate::wasm::timers::processing_time());
    Some(Instant::now() + Duration::from_millis(wait.clamp(0, 3_600_000) as u64))
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
    let mut writer =
        checkpoints.map(|c| SnapshotWriter::new(c.store, c.handle, &task, c.incremental));
    let mut slicing = Slicing {
        records: BATCH_SIZE,
    };
    // A watermark to forward once the records before it are sent.
    let mut held = None;
    loop {
        inputs.set_alarm(alarm(instance.as_ref()));
        let Some(event) = inputs.next()? else { break };
        match event {
            Event::Batch(batch, input) => {
                report.records_in += batch.len() as u64;
                let ids: Vec<RecordId> = batch.iter().map(poison::identity).collect();
                let mut run = Run {
                    task: &task,
                    instance: instance.as_mut(),
                    outputs: &mut outputs,
                    report: &mut report,
                    guard: &guard,
                    input,
                };
                if !guard.armed() {
                    // A slow guest gets the batch in slices, so that a barrier that
                    // overtakes waits for one slice, not the batch; the rest is given back.
                    let (mut rest, mut rest_ids) = (batch, ids);
                    loop {
                        let take = slicing.records.min(rest.len());
                        let (tail, tail_ids) = (rest.split_off(take), rest_ids.split_off(take));
                        let started = Instant::now();
                        run.process(rest, &rest_ids, None)?;
                        slicing.took(take, started.elapsed());
                        (rest, rest_ids) = (tail, tail_ids);
                        if rest.is_empty() {
                            break;
                        }
                        if inputs.has_priority() {
                            inputs.give_back(rest, input);
                            break;
                        }
                    }
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
                flush(&mut outputs, &inputs, &mut held)?;
            }
            Event::Checkpoint(snapshot) => {
                let started = Instant::now();
                let copy = state_copy(instance.as_ref());
                let sync = started.elapsed();
                let forwarded = match snapshot.unaligned {
                    true => outputs.overtake(snapshot.barrier).map(|_| ()),
                    false => outputs.forward(snapshot.barrier),
                };
                forwarded.map_err(|_| Stop::Disconnected)?;
                if let Some(writer) = &mut writer {
                    // The asynchronous part: the task goes on while the state is written.
                    let met = Met {
                        unaligned: snapshot.unaligned,
                        alignment: snapshot.alignment,
                    };
                    writer.write_async(snapshot.barrier.id, copy, sync, met);
                }
            }
            Event::ChannelState(id, state) => {
                if let Some(writer) = &mut writer {
                    writer.channel_state(id, state);
                }
            }
            Event::Watermark(status) => {
                if let Status::At(watermark) = status {
                    let emitted = (instance.advance_watermark(watermark))
                        .map_err(|e| Stop::Failed(e.into()))?;
                    push(&task, instance.as_mut(), &mut outputs, &mut report, emitted)?;
                }
                // A restored task's watermark may be ahead of its inputs' for a while.
                held = Some(match (status, instance.watermark()) {
                    (Status::At(at), Some(own)) => Status::At(at.max(own)),
                    (status, _) => status,
                });
                flush(&mut outputs, &inputs, &mut held)?;
            }
            Event::Alarm => {
                let now = crate::wasm::timers::processing_time();
                let emitted =
                    (instance.advance_processing_time(now)).map_err(|e| Stop::Failed(e.into()))?;
                push(&task, instance.as_mut(), &mut outputs, &mut report, emitted)?;
                flush(&mut outputs, &inputs, &mut held)?;
            }
            Event::Committed(_) => {}
        }
    }
    // The end of every input is a watermark at the end of time (`Inputs` sends it when
    // its inputs carried watermarks; this covers those that did not).
    let emitted =
        (instance.advance_watermark(super::watermark::END)).map_err(|e| Stop::Failed(e.into()))?;
    push(&task, instance.as_mut(), &mut outputs, &mut report, emitted)?;
    instance.close().map_err(|e| Stop::Failed(e.into()))?;
    outputs.end().map_err(|_| Stop::Disconnected)?;
    if let Some(writer) = writer {
        // The closed instance is kept, so that its state can be copied into every later
        // checkpoint.
        writer.finish(Box::new(move || state_copy(instance.as_ref())));
    }
    Ok(report)
}

/// Sends what the task emitted, giving way while it waits for room downstream if a
/// barrier overtakes; then the `held` watermark, which must follow those records.
fn flush(
    outputs: &mut Outputs,
    inputs: &Inputs,
    held: &mut Option<super::watermark::Status>,
) -> Result<(), Stop> {
    let flushed = outputs
        .flush_unless(|| inputs.has_priority())
        .map_err(|_| Stop::Disconnected)?;
    match held.take_if(|_| flushed) {
        Some(status) => outputs.watermark(status).map_err(|_| Stop::Disconnected),
        None => Ok(()),
    }
}

/// How many records of a batch go to the guest in one call: all of them, unless the
/// guest is slow enough that a batch would keep a barrier waiting longer than
/// [`Slicing::CALL`].
struct Slicing {
    records: usize,
}

impl Slicing {
    /// The longest a call should take.
    const CALL: Duration = Duration::from_millis(5);

    /// A call of `records` records took `elapsed`: size the next ones.
    fn took(&mut self, records: usize, elapsed: Duration) {
        let per_record = elapsed.as_secs_f64() / records.max(1) as f64;
        let fit = (Self::CALL.as_secs_f64() / per_record.max(1e-9)) as usize;
        self.records = fit.clamp(1, BATCH_SIZE);
    }
}

/// A point-in-time copy of the instance's keyed and operator state.
fn state_copy(instance: &dyn Logic) -> StateCopy {
    StateCopy {
        keyed: instance.snapshot(),
        operator_state: instance.operator_state(),
    }
}
