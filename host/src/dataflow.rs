//! The running job: one thread per subtask of every source, operator and sink, joined by
//! bounded channels that carry batches of records, barriers and ends.
//!
//! Invariants: every consumer subtask has one channel per upstream subtask, so barriers
//! can be aligned per channel; channels are bounded, so a slow consumer back-pressures
//! its producers; a task that fails reports a [`Failure`] and drops its channels, which
//! stops every other task (they report [`Stop::Disconnected`], never a failure of their
//! own); every operator subtask is instantiated and opened before any source reads.

mod alignment;
mod attempt;
mod channel;
mod edge;
mod inputs;
mod operator;
mod poison;
mod recovery;
mod restore;
mod sink;
mod source;
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "sources and tasks send watermarks next (issue 16)"
    )
)]
mod watermark;
mod wiring;

use std::io;
use std::path::PathBuf;

use crate::checkpoint::coordinator;
use crate::checkpoint::{Barrier, CheckpointError};
use crate::record::KeyedRecord;
use crate::state::StateError;
use crate::wasm::OperatorError;

pub use edge::BadRecord;
pub use operator::{Logic, NativeFactory};
pub use recovery::{Start, run};
pub use restore::Restore;

/// Records per batch: one Wasm call per batch keeps the per-call cost (~0.2–1 µs) small
/// next to the per-record work.
pub const BATCH_SIZE: usize = 512;

/// Batches a channel holds before its producer waits.
const CHANNEL_BATCHES: usize = 16;
/// Stack of every task thread: the largest Wasm stack an operator may ask for, and as
/// much again for the host's own frames (host calls, state backends).
const TASK_STACK_BYTES: usize = 2 * crate::job::Limits::MAX_STACK_BYTES;

/// What flows on a channel.
#[derive(Debug, Clone)]
pub enum Message {
    /// Records, in order.
    Batch(Vec<KeyedRecord>),
    /// Checkpoint barrier: the records before it belong to this checkpoint.
    Barrier(Barrier),
    /// The producer's watermark (or that it is idle), after the records it covers.
    Watermark(watermark::Status),
    /// The producer has no more records.
    End,
}

/// Why a task stopped early.
#[derive(Debug)]
pub enum Stop {
    /// It failed: the job fails with this.
    Failed(Failure),
    /// Its channels closed because another task failed.
    Disconnected,
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A source read a record that cannot go downstream.
    #[error(
        "source `{source_name}`: bad record at {location}: {error}. Fix the record, or set \
         `on_bad_record = \"skip\"` on the source to skip and count such records"
    )]
    BadRecord {
        /// The source.
        source_name: String,
        /// `file:line`.
        location: String,
        /// What is wrong with it.
        error: BadRecord,
    },
    /// An operator emitted a record that cannot go downstream.
    #[error("operator `{operator}` emitted a bad record: {error}")]
    BadOutput {
        /// The operator.
        operator: String,
        /// What is wrong with it.
        error: BadRecord,
    },
    /// An operator's component or code failed.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A task panicked: a bug in Weir, not in the job.
    #[error("{task} panicked (a bug in Weir; please report it): {message}")]
    Panic {
        /// The task's thread name.
        task: String,
        /// The panic message.
        message: String,
    },
    /// An operator's state store could not be set up.
    #[error("operator `{operator}`: {error}")]
    StateStore {
        /// The operator.
        operator: String,
        /// What failed.
        error: StateError,
    },
    /// The job was cancelled (SIGINT or SIGTERM).
    #[error("the job was cancelled")]
    Cancelled,
    /// A checkpoint could not be written or restored.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A record failed an operator again after a restore, and `on_poison = "fail"`.
    #[error(
        "operator `{operator}` failed again on the same record after a restore (a poison \
         record): {error}. The record ({origin}): {record}. Set on_poison = \"skip\" or \
         \"dead-letter\" on the operator to go on without it"
    )]
    Poison {
        /// The operator.
        operator: String,
        /// Where the record was read.
        origin: String,
        /// The record (its start).
        record: String,
        /// The error it failed with.
        error: String,
    },
    /// The latest checkpoint is damaged and no older one can take its place.
    #[error("{0}")]
    Damaged(String),
    /// A checkpoint or savepoint does not fit the job.
    #[error("cannot restore {}: {reason}", path.display())]
    Restore {
        /// Its folder.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A Kafka cluster did not do what a source or sink asked (the restart strategy
    /// tries again).
    #[error("{task}: {error}")]
    Kafka {
        /// The task, e.g. "source `visits`".
        task: String,
        /// What failed, naming the brokers.
        error: String,
    },
    /// Reading or writing a file or stream failed.
    #[error("{task}: {what}: {error}")]
    Io {
        /// The task, e.g. "sink `out`".
        task: String,
        /// What it was doing.
        what: String,
        /// The I/O error.
        error: io::Error,
    },
}

impl Failure {
    /// Whether restarting from a checkpoint can get past this failure. Bad input and a
    /// broken component or checkpoint fail the same way again; a cancellation is wanted.
    fn is_recoverable(&self) -> bool {
        match self {
            Failure::Operator(OperatorError::Trap { .. } | OperatorError::Failed { .. }) => true,
            Failure::Panic { .. }
            | Failure::Io { .. }
            | Failure::Kafka { .. }
            | Failure::StateStore { .. } => true,
            Failure::Operator(_)
            | Failure::BadRecord { .. }
            | Failure::BadOutput { .. }
            | Failure::Checkpoint(_)
            | Failure::Restore { .. }
            | Failure::Damaged(_)
            | Failure::Poison { .. }
            | Failure::Cancelled => false,
        }
    }
}

/// What a finished job did.
#[derive(Debug, Default)]
pub struct Report {
    /// The checkpoint the job resumed from when it started, if any.
    pub resumed_from: Option<u64>,
    /// Restarts after failures.
    pub restarts: usize,
    /// What the checkpoint coordinator did, over all attempts.
    pub checkpoints: coordinator::Summary,
    /// Set when a previous run had already finished this job (nothing was run).
    pub already_finished: bool,
    /// Set when the job was stopped with a savepoint: its folder.
    pub stopped_with: Option<PathBuf>,
    /// Per source.
    pub sources: Vec<SourceReport>,
    /// Per operator.
    pub operators: Vec<OperatorReport>,
    /// Per sink.
    pub sinks: Vec<SinkReport>,
}

/// What a source read.
#[derive(Debug, Default)]
pub struct SourceReport {
    /// The source's name.
    pub name: String,
    /// Records sent downstream.
    pub records: u64,
    /// Bad records skipped (`on_bad_record = "skip"`).
    pub skipped: u64,
    /// Where the first skipped record was.
    pub first_skipped: Option<String>,
}

/// What an operator did.
#[derive(Debug, Default)]
pub struct OperatorReport {
    /// The operator's name.
    pub name: String,
    /// Records processed.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Records emitted to side outputs.
    pub records_to_side_outputs: u64,
    /// Poison records kept from the guest (skipped or dead-lettered).
    pub poison: u64,
}

/// What a sink wrote.
#[derive(Debug, Default)]
pub struct SinkReport {
    /// The sink's name.
    pub name: String,
    /// Records written.
    pub records: u64,
    /// Parts to commit once the whole job has finished.
    pub final_parts: Vec<sink::FinalPart>,
}

impl Report {
    /// Adds a source subtask's report to its node's.
    fn add_source(&mut self, r: SourceReport) {
        match self.sources.iter_mut().find(|s| s.name == r.name) {
            Some(s) => {
                s.records += r.records;
                s.skipped += r.skipped;
                s.first_skipped = s.first_skipped.take().or(r.first_skipped);
            }
            None => self.sources.push(r),
        }
    }

    fn add_operator(&mut self, r: OperatorReport) {
        match self.operators.iter_mut().find(|o| o.name == r.name) {
            Some(o) => {
                o.records_in += r.records_in;
                o.records_out += r.records_out;
                o.records_to_side_outputs += r.records_to_side_outputs;
                o.poison += r.poison;
            }
            None => self.operators.push(r),
        }
    }

    fn add_sink(&mut self, r: SinkReport) {
        match self.sinks.iter_mut().find(|s| s.name == r.name) {
            Some(s) => {
                s.records += r.records;
                s.final_parts.extend(r.final_parts);
            }
            None => self.sinks.push(r),
        }
    }
}
