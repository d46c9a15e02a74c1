//! The running job: one thread per subtask of every source, operator and sink, joined by
//! bounded channels that carry batches of records, barriers and ends.
//!
//! Invariants: every consumer subtask has one channel per upstream subtask, so barriers
//! can be aligned per channel; channels are bounded, so a slow consumer back-pressures
//! its producers; a task that fails reports a [`Failure`] and drops its channels, which
//! stops every other task (they report [`Stop::Disconnected`], never a failure of their
//! own); every operator subtask is instantiated and opened before any source reads.

mod alignment;
mod edge;
mod inputs;
mod operator;
mod sink;
mod source;

use std::collections::HashMap;
use std::io;
use std::sync::mpsc;
use std::thread;

use crossbeam_channel::{Receiver, bounded};

use crate::job::Job;
use crate::record::{KeySelector, KeyedRecord};
use crate::state::KeyGroupRange;
use crate::state::memory::MemoryBackend;
use crate::wasm::{OperatorError, OperatorInstance, Runtime};

pub use alignment::{CheckpointId, Mode};
pub use edge::BadRecord;
use edge::{Edge, Outputs, Routing};
use inputs::Inputs;

/// Records per batch: one Wasm call per batch keeps the per-call cost (~0.2–1 µs) small
/// next to the per-record work.
pub const BATCH_SIZE: usize = 512;

/// Batches a channel holds before its producer waits.
const CHANNEL_BATCHES: usize = 16;

/// What flows on a channel.
#[derive(Debug, Clone)]
pub enum Message {
    /// Records, in order.
    Batch(Vec<KeyedRecord>),
    /// Checkpoint barrier: the records before it belong to this checkpoint.
    Barrier(CheckpointId),
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

/// A task: one subtask of a node.
type TaskKey = (String, usize);

/// The channels of a job's physical graph.
#[derive(Default)]
struct Wiring {
    /// Per consumer subtask, its input channels.
    receivers: HashMap<TaskKey, Vec<Receiver<Message>>>,
    /// Per producer subtask, its edges.
    edges: HashMap<TaskKey, Vec<Edge>>,
}

impl Wiring {
    fn new(job: &Job) -> Wiring {
        let parallelism = |name: &str| -> usize {
            job.sources
                .iter()
                .map(|s| (&s.name, s.parallelism))
                .chain(job.operators.iter().map(|o| (&o.name, o.parallelism)))
                .find(|(n, _)| *n == name)
                .map_or(1, |(_, p)| usize::from(p))
        };
        let consumers = job
            .operators
            .iter()
            .map(|o| (&o.name, o.parallelism, &o.inputs, o.key_by.clone()))
            .chain(
                job.sinks
                    .iter()
                    .map(|s| (&s.name, s.parallelism, &s.inputs, None)),
            );
        let mut wiring = Wiring::default();
        for (name, consumer_parallelism, inputs, key_by) in consumers {
            let selector = key_by.map(|pointer| KeySelector::new(pointer, job.max_parallelism));
            for input in inputs {
                let producer_parallelism = parallelism(input);
                for producer in 0..producer_parallelism {
                    let mut senders = Vec::new();
                    for consumer in 0..usize::from(consumer_parallelism) {
                        let (tx, rx) = bounded(CHANNEL_BATCHES);
                        senders.push(tx);
                        wiring
                            .receivers
                            .entry((name.clone(), consumer))
                            .or_default()
                            .push(rx);
                    }
                    let routing = match &selector {
                        Some(_) => Routing::Keyed {
                            max_parallelism: job.max_parallelism,
                        },
                        None if producer_parallelism == usize::from(consumer_parallelism) => {
                            Routing::Forward(producer)
                        }
                        None => Routing::RoundRobin,
                    };
                    wiring
                        .edges
                        .entry((input.clone(), producer))
                        .or_default()
                        .push(Edge::new(name, selector.clone(), routing, senders));
                }
            }
        }
        wiring
    }

    fn outputs(&mut self, name: &str, subtask: usize) -> Outputs {
        Outputs::new(
            self.edges
                .remove(&(name.to_string(), subtask))
                .unwrap_or_default(),
        )
    }

    fn inputs(&mut self, name: &str, subtask: usize, mode: Mode) -> Inputs {
        Inputs::new(
            self.receivers
                .remove(&(name.to_string(), subtask))
                .unwrap_or_default(),
            mode,
        )
    }
}

/// Runs `job` to completion.
pub fn run(job: &Job, runtime: &Runtime) -> Result<Report, Failure> {
    // Every operator subtask is loaded, instantiated and opened before any input is
    // read, so a broken component fails the job before it consumes anything.
    let mut instances = Vec::new();
    for op in &job.operators {
        let component = runtime.load(&op.component)?;
        for subtask in 0..op.parallelism {
            let range = KeyGroupRange::for_subtask(job.max_parallelism, op.parallelism, subtask);
            let mut instance = OperatorInstance::new(
                runtime,
                &component,
                &op.name,
                op.key_by.is_some(),
                Box::new(MemoryBackend::new(range)),
            )?;
            instance.open(&op.config_json)?;
            instances.push((op.name.clone(), usize::from(subtask), instance));
        }
    }

    let mode = Mode::ExactlyOnce;
    let mut wiring = Wiring::new(job);
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

    for (name, subtask, instance) in instances {
        let inputs = wiring.inputs(&name, subtask, mode);
        let outputs = wiring.outputs(&name, subtask);
        spawn(
            format!("op-{name}-{subtask}"),
            Box::new(move || {
                operator::run(&name, instance, inputs, outputs).map(TaskReport::Operator)
            }),
        )?;
    }
    for sink in &job.sinks {
        for subtask in 0..usize::from(sink.parallelism) {
            let inputs = wiring.inputs(&sink.name, subtask, mode);
            let sink = sink.clone();
            spawn(
                format!("sink-{}-{subtask}", sink.name),
                Box::new(move || sink::run(&sink, subtask, inputs).map(TaskReport::Sink)),
            )?;
        }
    }
    for source in &job.sources {
        for subtask in 0..usize::from(source.parallelism) {
            let outputs = wiring.outputs(&source.name, subtask);
            let source = source.clone();
            spawn(
                format!("src-{}-{subtask}", source.name),
                Box::new(move || source::run(&source, subtask, outputs).map(TaskReport::Source)),
            )?;
        }
    }
    drop(done_tx);

    let mut report = Report::default();
    for _ in 0..tasks {
        match done_rx.recv() {
            Ok(Ok(TaskReport::Source(r))) => report.add_source(r),
            Ok(Ok(TaskReport::Operator(r))) => report.add_operator(r),
            Ok(Ok(TaskReport::Sink(r))) => report.add_sink(r),
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
            }
            None => self.operators.push(r),
        }
    }

    fn add_sink(&mut self, r: SinkReport) {
        match self.sinks.iter_mut().find(|s| s.name == r.name) {
            Some(s) => s.records += r.records,
            None => self.sinks.push(r),
        }
    }
}
