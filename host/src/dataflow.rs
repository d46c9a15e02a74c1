//! The running job: one thread per source, operator and sink, joined by bounded channels
//! that carry batches of records.
//!
//! Invariants: channels are bounded, so a slow consumer back-pressures its producers; a
//! task that fails reports a [`Failure`] and drops its channels, which stops every other
//! task (they report [`Stop::Disconnected`], never a failure of their own); every
//! operator is instantiated and opened before any source reads a record.

mod edge;
mod operator;
mod sink;
mod source;

use std::collections::HashMap;
use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

use crate::job::Job;
use crate::record::{KeySelector, KeyedRecord};
use crate::state::KeyGroupRange;
use crate::state::memory::MemoryBackend;
use crate::wasm::{OperatorError, OperatorInstance, Runtime};

pub use edge::BadRecord;

/// Records per batch: one Wasm call per batch keeps the per-call cost (~0.2–1 µs) small
/// next to the per-record work.
pub const BATCH_SIZE: usize = 512;

/// Batches a channel holds before its producer waits.
const CHANNEL_BATCHES: usize = 16;

/// What flows on a channel.
#[derive(Debug)]
pub enum Message {
    /// Records, in order.
    Batch(Vec<KeyedRecord>),
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

/// What a finished job did.
#[derive(Debug, Default)]
pub struct Report {
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
}

/// What a sink wrote.
#[derive(Debug, Default)]
pub struct SinkReport {
    /// The sink's name.
    pub name: String,
    /// Records written.
    pub records: u64,
}

enum TaskReport {
    Source(SourceReport),
    Operator(OperatorReport),
    Sink(SinkReport),
}

/// Runs `job` to completion.
pub fn run(job: &Job, runtime: &Runtime) -> Result<Report, Failure> {
    // Every operator is loaded, instantiated and opened before any input is read, so a
    // broken component fails the job before it consumes anything.
    let mut instances = Vec::new();
    for op in &job.operators {
        let component = runtime.load(&op.component)?;
        let backend = MemoryBackend::new(KeyGroupRange::all(job.max_parallelism));
        let mut instance = OperatorInstance::new(
            runtime,
            &component,
            &op.name,
            op.key_by.is_some(),
            Box::new(backend),
        )?;
        instance.open(&op.config_json)?;
        instances.push(instance);
    }

    // One channel into every operator and sink; edges from each node to its consumers.
    let mut receivers: HashMap<&str, Receiver<Message>> = HashMap::new();
    let mut edges: HashMap<&str, Vec<edge::Edge>> = HashMap::new();
    for op in &job.operators {
        let (tx, rx): (SyncSender<Message>, _) = mpsc::sync_channel(CHANNEL_BATCHES);
        let selector = op
            .key_by
            .clone()
            .map(|pointer| KeySelector::new(pointer, job.max_parallelism));
        edges
            .entry(op.input.as_str())
            .or_default()
            .push(edge::Edge::new(&op.name, selector, tx));
        receivers.insert(&op.name, rx);
    }
    for sink in &job.sinks {
        let (tx, rx) = mpsc::sync_channel(CHANNEL_BATCHES);
        edges
            .entry(sink.input.as_str())
            .or_default()
            .push(edge::Edge::new(&sink.name, None, tx));
        receivers.insert(&sink.name, rx);
    }
    let mut outputs = |name: &str| edge::Outputs::new(edges.remove(name).unwrap_or_default());

    let (done_tx, done_rx) = mpsc::channel::<Result<TaskReport, Stop>>();
    let mut tasks = 0;
    let mut spawn = |name: String, task: Box<dyn FnOnce() -> Result<TaskReport, Stop> + Send>| {
        let done = done_tx.clone();
        tasks += 1;
        let task_name = name.clone();
        thread::Builder::new()
            .name(name)
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task))
                    .unwrap_or_else(|panic| {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(Stop::Failed(Failure::Panic {
                            task: task_name,
                            message,
                        }))
                    });
                // The receiver lives until every task has reported or the job failed.
                let _ = done.send(result);
            })
            .map_err(|error| Failure::Io {
                task: "host".into(),
                what: "cannot start a task thread".into(),
                error,
            })
    };

    for (op, instance) in job.operators.iter().zip(instances) {
        let rx = receivers
            .remove(op.name.as_str())
            .expect("one receiver per operator");
        let out = outputs(&op.name);
        let name = op.name.clone();
        spawn(
            format!("op-{name}"),
            Box::new(move || operator::run(&name, instance, rx, 1, out).map(TaskReport::Operator)),
        )?;
    }
    for sink in &job.sinks {
        let rx = receivers
            .remove(sink.name.as_str())
            .expect("one receiver per sink");
        let sink = sink.clone();
        spawn(
            format!("sink-{}", sink.name),
            Box::new(move || sink::run(&sink, rx, 1).map(TaskReport::Sink)),
        )?;
    }
    for source in &job.sources {
        let out = outputs(&source.name);
        let source = source.clone();
        spawn(
            format!("src-{}", source.name),
            Box::new(move || source::run(&source, out).map(TaskReport::Source)),
        )?;
    }
    drop(done_tx);

    let mut report = Report::default();
    for _ in 0..tasks {
        match done_rx.recv() {
            Ok(Ok(TaskReport::Source(r))) => report.sources.push(r),
            Ok(Ok(TaskReport::Operator(r))) => report.operators.push(r),
            Ok(Ok(TaskReport::Sink(r))) => report.sinks.push(r),
            // The root cause is reported by the task that failed; threads still blocked
            // (on stdin, say) end with the process.
            Ok(Err(Stop::Failed(failure))) => return Err(failure),
            Ok(Err(Stop::Disconnected)) => {}
            Err(_) => break,
        }
    }
    report.sources.sort_by(|a, b| a.name.cmp(&b.name));
    report.operators.sort_by(|a, b| a.name.cmp(&b.name));
    report.sinks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(report)
}
