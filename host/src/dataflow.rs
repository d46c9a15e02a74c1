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
mod poison;
mod recovery;
mod sink;
mod source;
mod wiring;

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};

use crate::checkpoint::CheckpointId;
use crate::checkpoint::coordinator::{self, Coordinator, TaskId};
use crate::checkpoint::{CheckpointError, Store};
use crate::job::{Backend, Job, Mode, SinkKind};
use crate::record::KeyedRecord;
use crate::state::KeyGroupRange;
use crate::state::memory::MemoryBackend;
use crate::state::rocksdb::RocksDbBackend;
use crate::state::{StateBackend, StateError};
use crate::wasm::{OperatorError, OperatorInstance, Runtime, TaskInfo};

pub use edge::BadRecord;
pub use operator::{Logic, NativeFactory};
pub use recovery::{Restore, Start, run};
use wiring::Wiring;

/// Records per batch: one Wasm call per batch keeps the per-call cost (~0.2–1 µs) small
/// next to the per-record work.
pub const BATCH_SIZE: usize = 512;

/// Batches a channel holds before its producer waits.
const CHANNEL_BATCHES: usize = 16;
/// Stack of every task thread: the largest Wasm stack an operator may ask for, and as
/// much again for the host's own frames (host calls, state backends).
const TASK_STACK_BYTES: usize = 2 * crate::wasm::Limits::MAX_STACK_BYTES;

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
            Failure::Panic { .. } | Failure::Io { .. } | Failure::StateStore { .. } => true,
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
    /// Part files to commit once the whole job has finished: (pending, committed).
    pub final_parts: Vec<(PathBuf, PathBuf)>,
}

enum TaskReport {
    Source(SourceReport),
    Operator(OperatorReport),
    Sink(SinkReport),
}

/// What one attempt of a job runs from.
#[derive(Clone, Copy)]
pub(super) struct Attempt<'a> {
    job: &'a Job,
    runtime: &'a Runtime,
    store: Option<&'a Store>,
    /// The checkpoint to restore, if any.
    restore: Option<&'a Restore>,
    /// 0, then one more after each restart.
    number: u32,
    cancel: &'a Arc<AtomicBool>,
    commands: &'a Receiver<coordinator::Command>,
    /// Each operator's poison guard, kept across attempts.
    guards: &'a HashMap<String, Arc<poison::Guard>>,
    /// Native code to run in place of every component (`host bench`).
    native: Option<NativeFactory>,
}

/// One run of the job's tasks, from `attempt.restore` if given.
pub(super) fn run_attempt(attempt: Attempt<'_>) -> (Result<Report, Failure>, coordinator::Summary) {
    let Attempt { job, store, .. } = attempt;
    let result = (|| {
        let mut coordinator = match store.zip(job.checkpoint.as_ref()) {
            Some((store, checkpointing)) => Some(Coordinator::new(
                store.clone(),
                checkpointing.config.clone(),
                (&job.name, job.max_parallelism),
                attempt.commands.clone(),
                Arc::clone(attempt.cancel),
            )?),
            None => None,
        };
        let started = start_tasks(attempt, coordinator.as_mut())?;
        Ok((coordinator, started))
    })();
    let (coordinator, (done_rx, tasks)) = match result {
        Ok(started) => started,
        Err(failure) => return (Err(failure), coordinator::Summary::default()),
    };
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let coordinator = coordinator.map(|c| thread::spawn(move || c.run(stop_rx)));

    let mut report = Report::default();
    let mut failure = None;
    for _ in 0..tasks {
        match done_rx.recv() {
            Ok(Ok(TaskReport::Source(r))) => report.add_source(r),
            Ok(Ok(TaskReport::Operator(r))) => report.add_operator(r),
            Ok(Ok(TaskReport::Sink(r))) => report.add_sink(r),
            Ok(Err(Stop::Failed(f))) => {
                // Without checkpoints nothing restarts, and a task may be blocked on
                // stdin: report at once. Otherwise wait for every task to stop, so that
                // none of this attempt's threads is still writing when the next starts.
                if coordinator.is_none() {
                    return (Err(f), coordinator::Summary::default());
                }
                failure.get_or_insert(f);
            }
            Ok(Err(Stop::Disconnected)) => {}
            Err(_) => break,
        }
    }
    drop(stop_tx);
    let summary = match coordinator.map(|c| c.join()) {
        Some(Ok(Ok(summary))) => summary,
        Some(Ok(Err(e))) => {
            failure.get_or_insert(Failure::Checkpoint(e));
            coordinator::Summary::default()
        }
        Some(Err(_)) => {
            failure.get_or_insert(Failure::Panic {
                task: "checkpoint coordinator".into(),
                message: String::new(),
            });
            coordinator::Summary::default()
        }
        None => coordinator::Summary::default(),
    };
    if let Some(failure) = failure {
        return (Err(failure), summary);
    }
    report.sources.sort_by(|a, b| a.name.cmp(&b.name));
    report.operators.sort_by(|a, b| a.name.cmp(&b.name));
    report.sinks.sort_by(|a, b| a.name.cmp(&b.name));
    (Ok(report), summary)
}

type Done = mpsc::Receiver<Result<TaskReport, Stop>>;

/// Instantiates, restores and opens every operator subtask, readies the sinks'
/// directories, and starts every task; returns where they report and how many there are.
fn start_tasks(
    attempt: Attempt<'_>,
    mut coordinator: Option<&mut Coordinator>,
) -> Result<(Done, usize), Failure> {
    let Attempt {
        job,
        runtime,
        restore,
        number: attempt,
        cancel,
        guards: attempt_guards,
        native,
        ..
    } = attempt;
    // Every operator subtask is loaded, instantiated, restored and opened before any
    // input is read, so a broken component or checkpoint fails before anything runs.
    let mut instances = Vec::new();
    let mut restoring = Duration::ZERO;
    for op in &job.operators {
        let component = runtime.load(&op.component, &op.sandbox.limits)?;
        let started = Instant::now();
        let snapshots = match restore {
            Some(r) => r
                .metadata
                .operators
                .get(&op.name)
                .into_iter()
                .flatten()
                .map(|file| crate::checkpoint::storage::read_state_file(&r.dir, file))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let mut operator_states = match restore {
            Some(r) => restored_operator_state(r, &op.name, op.parallelism)?,
            None => Vec::new(),
        }
        .into_iter();
        restoring += started.elapsed();
        for subtask in 0..op.parallelism {
            let range = KeyGroupRange::for_subtask(job.max_parallelism, op.parallelism, subtask);
            let backend: Box<dyn StateBackend> = match job.state.backend {
                Backend::Memory => Box::new(MemoryBackend::new(range)),
                Backend::RocksDb => {
                    let dir = job.state.dir.join(format!("{}-{subtask}", op.name));
                    Box::new(RocksDbBackend::create(&dir, range).map_err(|error| {
                        Failure::StateStore {
                            operator: op.name.clone(),
                            error,
                        }
                    })?)
                }
            };
            if let Some(native) = native {
                let logic = native(&op.config_json, backend).map_err(|message| {
                    Failure::Operator(OperatorError::Failed {
                        operator: op.name.clone(),
                        message,
                        on_record: None,
                        index: None,
                    })
                })?;
                instances.push((op.name.clone(), usize::from(subtask), logic));
                continue;
            }
            let mut instance = OperatorInstance::new(
                &component,
                &op.name,
                op.key_by.is_some(),
                backend,
                &op.sandbox,
            )?;
            let loading = Instant::now();
            for snapshot in &snapshots {
                instance.restore(snapshot)?;
            }
            if let Some(state) = operator_states.next() {
                instance.restore_operator_state(state);
            }
            restoring += loading.elapsed();
            let task = TaskInfo {
                subtask,
                parallelism: op.parallelism,
                attempt,
            };
            instance.open(&op.config_json, task)?;
            instances.push((op.name.clone(), usize::from(subtask), Box::new(instance)));
        }
    }
    if let Some(r) = restore {
        let bytes: u64 = r
            .metadata
            .operators
            .values()
            .flatten()
            .map(|f| f.bytes())
            .sum();
        eprintln!("weir: restored {bytes} bytes of state in {restoring:?}");
    }
    let mode = job
        .checkpoint
        .as_ref()
        .map_or(Mode::ExactlyOnce, |c| c.mode);
    let mut wiring = Wiring::new(job);
    let (done_tx, done_rx) = mpsc::channel::<Result<TaskReport, Stop>>();
    let mut tasks = 0;
    let mut spawn = |name: String, task: Box<dyn FnOnce() -> Result<TaskReport, Stop> + Send>| {
        let done = done_tx.clone();
        tasks += 1;
        let task_name = name.clone();
        thread::Builder::new()
            .name(name)
            // Room for the largest Wasm stack an operator may have, and the host's frames.
            .stack_size(TASK_STACK_BYTES)
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
        let guard = attempt_guards
            .get(&name)
            .cloned()
            .unwrap_or_else(|| Arc::new(poison::Guard::new(&name, Default::default())));
        let task = TaskId::new(&name, subtask);
        let checkpoints = coordinator.as_deref_mut().map(|c| operator::Checkpoints {
            store: c.store().clone(),
            handle: c.register_operator(task.clone()),
            incremental: job.state.incremental,
        });
        spawn(
            format!("op-{name}-{subtask}"),
            Box::new(move || {
                operator::run(task, instance, inputs, outputs, checkpoints, guard)
                    .map(TaskReport::Operator)
            }),
        )?;
    }
    for sink in &job.sinks {
        let first_parts = match &sink.kind {
            SinkKind::File { path } => {
                let restored = restore
                    .and_then(|r| r.metadata.sinks.get(&sink.name))
                    .map(Vec::as_slice);
                sink::prepare_dir(path, sink.parallelism, restored).map_err(|error| {
                    Failure::Io {
                        task: format!("sink `{}`", sink.name),
                        what: format!("cannot prepare {}", path.display()),
                        error,
                    }
                })?
            }
            SinkKind::Stdout => vec![0; usize::from(sink.parallelism)],
        };
        for (subtask, first_part) in first_parts.into_iter().enumerate() {
            let task = TaskId::new(&sink.name, subtask);
            let mut inputs = wiring.inputs(&sink.name, subtask, mode);
            let mut handle = None;
            if let Some(c) = coordinator.as_deref_mut() {
                let (registered, commits) = c.register_sink(task.clone());
                inputs = inputs.with_commits(commits);
                handle = Some(registered);
            }
            let sink = sink.clone();
            spawn(
                format!("sink-{}-{subtask}", sink.name),
                Box::new(move || {
                    sink::run(&sink, task, inputs, first_part, handle).map(TaskReport::Sink)
                }),
            )?;
        }
    }
    for source in &job.sources {
        let dealt = source_splits(source, restore)?;
        for (subtask, splits) in dealt.into_iter().enumerate() {
            let outputs = wiring.outputs(&source.name, subtask);
            let checkpoints = coordinator.as_deref_mut().map(|c| {
                let (handle, triggers) = c.register_source(TaskId::new(&source.name, subtask));
                source::Checkpoints { triggers, handle }
            });
            let context = source::Context {
                splits,
                checkpoints,
                cancel: Arc::clone(cancel),
            };
            let source = source.clone();
            spawn(
                format!("src-{}-{subtask}", source.name),
                Box::new(move || source::run(&source, context, outputs).map(TaskReport::Source)),
            )?;
        }
    }
    Ok((done_rx, tasks))
}

/// The operator state of `operator` in `restore`, shared out to `parallelism` subtasks as
/// each list state was registered.
fn restored_operator_state(
    restore: &Restore,
    operator: &str,
    parallelism: u16,
) -> Result<Vec<crate::state::operator::OperatorState>, Failure> {
    let files = restore.metadata.operator_states.get(operator);
    let Some(files) = files.filter(|f| !f.is_empty()) else {
        return Ok(Vec::new());
    };
    let old_parallelism = restore
        .metadata
        .operators
        .get(operator)
        .map_or(0, Vec::len)
        .max(files.iter().map(|f| f.subtask + 1).max().unwrap_or(0));
    let mut old = vec![crate::state::operator::OperatorState::default(); old_parallelism];
    for file in files {
        old[file.subtask] =
            crate::checkpoint::storage::read_operator_state(&restore.dir, &file.file)?;
    }
    Ok(crate::state::operator::redistribute(
        &old,
        usize::from(parallelism),
    ))
}

/// Each subtask's splits of `source`: the restored checkpoint's (with files that appeared
/// since), or the source's own from the start, dealt among its subtasks.
fn source_splits(
    source: &crate::job::Source,
    restore: Option<&Restore>,
) -> Result<Vec<Vec<crate::checkpoint::SourceSplit>>, Failure> {
    use source::split;
    let io_failure = |error| Failure::Io {
        task: format!("source `{}`", source.name),
        what: "cannot list its input".into(),
        error,
    };
    let restored = restore.and_then(|r| Some((r, r.metadata.sources.get(&source.name)?)));
    let splits = match restored {
        None => split::initial(&source.kind).map_err(io_failure)?,
        Some((restore, splits)) => {
            split::resume(&source.kind, splits.concat()).map_err(|e| match e {
                split::Resume::Io(error) => io_failure(error),
                split::Resume::Split(error) => Failure::Restore {
                    path: restore.dir.clone(),
                    reason: format!("source `{}`: {error}", source.name),
                },
            })?
        }
    };
    Ok(split::deal(
        splits,
        &source.kind,
        usize::from(source.parallelism),
    ))
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
