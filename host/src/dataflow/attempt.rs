//! One attempt of a job: plan (load, instantiate, restore and open every operator
//! subtask; deal every source's splits; ready the sinks' folders), then spawn one thread
//! per subtask and the checkpoint coordinator, and collect what they report.
//!
//! Invariant: every operator subtask is opened before any source reads, so a broken
//! component or checkpoint fails before anything runs; an attempt returns only after
//! every one of its threads has stopped.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};

use super::inputs::Inputs;
use super::restore::Restore;
use super::wiring::Wiring;
use super::{
    Failure, NativeFactory, OperatorReport, Report, SinkReport, SourceReport, Stop,
    TASK_STACK_BYTES, operator, poison, sink, source,
};
use crate::checkpoint::SourceSplit;
use crate::checkpoint::Store;
use crate::checkpoint::channel_state::{ChannelState, Routing, redistribute};
use crate::checkpoint::coordinator::{self, Coordinator, TaskId};
use crate::job::{Job, Mode, SinkKind, SourceKind};
use crate::state::KeyGroupRange;
use crate::wasm::{OperatorError, OperatorInstance, Runtime, TaskInfo};

enum TaskReport {
    Source(SourceReport),
    Operator(OperatorReport),
    Sink(SinkReport),
}

/// What one attempt of a job runs from.
#[derive(Clone, Copy)]
pub(super) struct Attempt<'a> {
    pub(super) job: &'a Job,
    pub(super) runtime: &'a Runtime,
    pub(super) store: Option<&'a Store>,
    /// The checkpoint to restore, if any.
    pub(super) restore: Option<&'a Restore>,
    /// 0, then one more after each restart.
    pub(super) number: u32,
    pub(super) cancel: &'a Arc<AtomicBool>,
    pub(super) commands: &'a Receiver<coordinator::Command>,
    /// Each operator's poison guard, kept across attempts.
    pub(super) guards: &'a HashMap<String, Arc<poison::Guard>>,
    /// Native code to run in place of every component (`host bench`).
    pub(super) native: Option<NativeFactory>,
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
            let dir = job.state.dir.join(format!("{}-{subtask}", op.name));
            let backend = crate::state::open(job.state.backend, &dir, range).map_err(|error| {
                Failure::StateStore {
                    operator: op.name.clone(),
                    error,
                }
            })?;
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
                &op.inputs,
                &op.side_outputs,
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
    let mut in_flight = match restore {
        Some(r) => restored_channel_state(r, job)?,
        None => HashMap::new(),
    };
    let mut replay = |name: &str, subtask: usize, inputs: Inputs| match in_flight.get_mut(name) {
        Some(states) => inputs.with_replay(std::mem::take(&mut states[subtask])),
        None => inputs,
    };
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
        let inputs = replay(&name, subtask, wiring.inputs(&name, subtask, mode));
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
            SinkKind::Kafka(_) => match coordinator.as_deref() {
                Some(c) => sink::prepare_kafka(
                    sink,
                    c.store(),
                    restore
                        .and_then(|r| r.metadata.sinks.get(&sink.name))
                        .map(Vec::as_slice),
                )?,
                None => vec![0; usize::from(sink.parallelism)],
            },
            SinkKind::Stdout => vec![0; usize::from(sink.parallelism)],
        };
        for (subtask, first_part) in first_parts.into_iter().enumerate() {
            let task = TaskId::new(&sink.name, subtask);
            let mut inputs = replay(
                &sink.name,
                subtask,
                wiring.inputs(&sink.name, subtask, mode),
            );
            let mut checkpoints = None;
            if let Some(c) = coordinator.as_deref_mut() {
                let (handle, commits) = c.register_sink(task.clone());
                inputs = inputs.with_commits(commits);
                let store = c.store().clone();
                checkpoints = Some(sink::Checkpoints { handle, store });
            }
            let sink = sink.clone();
            spawn(
                format!("sink-{}-{subtask}", sink.name),
                Box::new(move || {
                    sink::run(&sink, task, inputs, first_part, checkpoints).map(TaskReport::Sink)
                }),
            )?;
        }
    }
    for source in &job.sources {
        let dealt = source_splits(source, restore)?;
        if let (SourceKind::Kafka(kafka), Some(c)) = (&source.kind, coordinator.as_deref_mut()) {
            let commit = crate::kafka::offset_committer(&source.name, kafka).map_err(|error| {
                Failure::Kafka {
                    task: format!("source `{}`", source.name),
                    error,
                }
            })?;
            c.on_completed(Box::new(commit));
        }
        let all: Arc<[SourceSplit]> = dealt.concat().into();
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
                subtask,
                dealt: Arc::clone(&all),
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

/// What each subtask of each operator and sink replays from `restore`'s channel state,
/// routed to the subtasks that now own it (see `channel_state::redistribute`).
fn restored_channel_state(
    restore: &Restore,
    job: &Job,
) -> Result<HashMap<String, Vec<ChannelState>>, Failure> {
    let consumers = job
        .operators
        .iter()
        .map(|op| {
            let routing = op.inputs.iter().map(|input| match input.broadcast {
                true => Routing::Broadcast,
                false if op.key_by.is_some() => Routing::Keyed,
                false => Routing::Unkeyed,
            });
            (&op.name, op.parallelism, routing.collect::<Vec<_>>())
        })
        .chain(job.sinks.iter().map(|sink| {
            (
                &sink.name,
                sink.parallelism,
                vec![Routing::Unkeyed; sink.inputs.len()],
            )
        }));
    let mut states = HashMap::new();
    for (name, parallelism, routing) in consumers {
        let Some(files) = restore.metadata.channel_states.get(name) else {
            continue;
        };
        let old_parallelism = files.iter().map(|f| f.subtask + 1).max().unwrap_or(0);
        let mut old = vec![ChannelState::default(); old_parallelism];
        for file in files {
            old[file.subtask] =
                crate::checkpoint::storage::read_channel_state(&restore.dir, &file.file)?;
        }
        let new = redistribute(&old, &routing, job.max_parallelism, parallelism);
        states.insert(name.clone(), new);
    }
    Ok(states)
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
