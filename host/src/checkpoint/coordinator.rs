//! The checkpoint coordinator (seed 003, "Checkpointing"): triggers checkpoint *n* at
//! every source subtask, collects one acknowledgement per task with its state handle,
//! and completes *n* by writing its metadata last; then the sinks may commit.
//!
//! Tasks register before the job starts and get a [`Handle`], the one way they ack,
//! decline, and hand over their final state when they finish.
//!
//! Invariants: a checkpoint completes only when every source, operator and sink subtask
//! has acknowledged it; one that outlives its timeout, or that a task declines, is
//! aborted and its folder deleted, and the next one goes on. A task that has finished
//! takes part in every later checkpoint with its final state (as Flink's FLIP-147), so
//! checkpoints go on while any source runs; a task hands its final state over only after
//! every acknowledgement it sent, so a checkpoint it had already begun keeps the state of
//! its barrier.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select, unbounded};

use super::files::CheckpointError;
use super::metadata::{CanonicalFile, Metadata, SinkState, SourceSplit, StateFile, SubtaskFile};
use super::storage::Store;
use super::{Barrier, CheckpointId};
pub use crate::job::CheckpointConfig as Config;

/// A task: a subtask of a node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    /// The source, operator or sink.
    pub node: String,
    /// Its subtask index.
    pub subtask: usize,
}

impl TaskId {
    /// Subtask `subtask` of `node`.
    pub fn new(node: &str, subtask: usize) -> TaskId {
        TaskId {
            node: node.to_string(),
            subtask,
        }
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` subtask {}", self.node, self.subtask)
    }
}

/// A task's part of a checkpoint.
#[derive(Debug, Clone)]
pub enum AckState {
    /// A source subtask's splits, with how far it has read each.
    Source(Vec<SourceSplit>),
    /// An operator subtask's state files, and how long the task stopped to take them.
    Operator {
        /// The keyed state's file (or RocksDB files).
        file: StateFile,
        /// The operator state's file, when it has operator state.
        operator_state: Option<CanonicalFile>,
        /// The synchronous part: the task was not processing records meanwhile.
        sync: Duration,
    },
    /// A sink subtask's pending output.
    Sink(SinkState),
}

/// How a task's snapshot met its checkpoint's barrier.
#[derive(Debug, Clone, Default)]
pub struct Alignment {
    /// The snapshot was unaligned: the barrier overtook records in flight.
    pub unaligned: bool,
    /// From the first barrier on any input to the snapshot.
    pub duration: Duration,
    /// The records in flight across an unaligned barrier, if there were any.
    pub channel_state: Option<CanonicalFile>,
}

/// A finished task's part in the checkpoints taken after its end.
pub trait Finished: Send {
    /// Its part of checkpoint `id` (written into the checkpoint if it has files).
    fn state(&mut self, id: CheckpointId) -> Result<AckState, String>;

    /// Checkpoint `id` completed: what it lists of this task's output may be committed.
    fn completed(&mut self, _id: CheckpointId) -> Result<(), String> {
        Ok(())
    }
}

/// A finished task whose part never changes (a source's read-out splits).
pub struct FinalAck(pub AckState);

impl Finished for FinalAck {
    fn state(&mut self, _: CheckpointId) -> Result<AckState, String> {
        Ok(self.0.clone())
    }
}

/// What [`Coordinator::on_completed`] calls.
pub type OnCompleted = Box<dyn FnMut(&Metadata) -> Result<(), String> + Send>;

/// Messages from tasks to the coordinator.
enum Report {
    Ack {
        checkpoint: CheckpointId,
        task: TaskId,
        state: AckState,
        alignment: Box<Alignment>,
    },
    Declined {
        checkpoint: CheckpointId,
        reason: String,
    },
    Finished {
        task: TaskId,
        last: Box<dyn Finished>,
    },
}

/// A registered task's link to the coordinator.
#[derive(Clone)]
pub struct Handle {
    task: TaskId,
    reports: Sender<Report>,
}

impl Handle {
    /// Acknowledges checkpoint `id` with this task's part of it (a task without inputs,
    /// which never aligns).
    pub fn ack(&self, id: CheckpointId, state: AckState) {
        self.ack_aligned(id, state, Alignment::default());
    }

    /// Acknowledges checkpoint `id` with this task's part of it and how its snapshot
    /// met the barrier.
    pub fn ack_aligned(&self, id: CheckpointId, state: AckState, alignment: Alignment) {
        let _ = self.reports.send(Report::Ack {
            checkpoint: id,
            task: self.task.clone(),
            state,
            alignment: Box::new(alignment),
        });
    }

    /// This task cannot take its part in checkpoint `id` (writing its state failed).
    pub fn decline(&self, id: CheckpointId, reason: String) {
        let _ = self.reports.send(Report::Declined {
            checkpoint: id,
            reason,
        });
    }

    /// This task has finished: `last` answers for it in every later checkpoint. Call it
    /// after every acknowledgement the task will send.
    pub fn finished(self, last: Box<dyn Finished>) {
        let _ = self.reports.send(Report::Finished {
            task: self.task,
            last,
        });
    }
}

/// Requests from outside the job (the control endpoint).
#[derive(Debug)]
pub enum Command {
    /// Take a savepoint now; with `stop`, stop the job once it is complete.
    Savepoint {
        /// Stop the job after the savepoint.
        stop: bool,
        /// Where the savepoint went, or why there is none.
        reply: Sender<Result<PathBuf, String>>,
    },
}

/// A savepoint request waiting for its checkpoint.
type SavepointRequest = (bool, Sender<Result<PathBuf, String>>);

/// What the coordinator did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Set when the job was stopped with a savepoint: its folder.
    pub stopped_with: Option<PathBuf>,
    /// Checkpoints completed.
    pub completed: u64,
    /// Checkpoints aborted (timeout, declined, or overtaken).
    pub aborted: u64,
    /// The longest synchronous part of an operator snapshot.
    pub max_sync: Duration,
    /// Bytes of state the last completed checkpoint refers to.
    pub last_bytes: u64,
    /// Bytes the last completed checkpoint wrote (fewer when incremental).
    pub last_copied: u64,
    /// Checkpoints completed with at least one unaligned snapshot.
    pub unaligned: u64,
    /// How long each completed checkpoint took, trigger to metadata, in order.
    pub durations: Vec<Duration>,
    /// Bytes of channel state, over every completed checkpoint.
    pub channel_state_bytes: u64,
}

struct Pending {
    started: Instant,
    acks: HashMap<TaskId, (AckState, Alignment)>,
    savepoint: Option<SavepointRequest>,
}

impl Pending {
    /// Tells a waiting savepoint request that this checkpoint will not complete.
    fn abort(self, id: CheckpointId, why: &str) {
        if let Some((_, reply)) = self.savepoint {
            let _ = reply.send(Err(format!(
                "checkpoint {} for the savepoint was aborted: {why}",
                id.0
            )));
        }
    }
}

/// The coordinator of one job attempt.
pub struct Coordinator {
    store: Store,
    config: Config,
    /// The job's name and maximum parallelism, for the metadata.
    job: String,
    max_parallelism: u16,
    /// Every task that must acknowledge a checkpoint.
    tasks: Vec<TaskId>,
    /// Source subtasks, with the channel that triggers them.
    triggers: Vec<(TaskId, Sender<Barrier>)>,
    /// Sink subtasks' channels for "checkpoint n completed: commit".
    commits: Vec<Sender<CheckpointId>>,
    /// Called with each completed checkpoint's metadata (a Kafka source's offsets are
    /// committed to its group for lag tools).
    on_completed: std::sync::Mutex<Vec<OnCompleted>>,
    first_id: u64,
    commands: Receiver<Command>,
    /// Set to stop the job (after a stop-with-savepoint).
    cancel: Arc<AtomicBool>,
    reports: (Sender<Report>, Receiver<Report>),
}

impl Coordinator {
    /// A coordinator of `job` (its name and maximum parallelism) writing into `store`,
    /// numbering checkpoints from the store's next free number; `commands` are savepoint
    /// requests, and a stop-with-savepoint sets `cancel`.
    pub fn new(
        store: Store,
        config: Config,
        job: (&str, u16),
        commands: Receiver<Command>,
        cancel: Arc<AtomicBool>,
    ) -> Result<Coordinator, CheckpointError> {
        Ok(Coordinator {
            first_id: store.next_id()?,
            store,
            config,
            job: job.0.to_string(),
            max_parallelism: job.1,
            tasks: Vec::new(),
            triggers: Vec::new(),
            commits: Vec::new(),
            on_completed: Default::default(),
            commands,
            cancel,
            reports: unbounded(),
        })
    }

    /// The store checkpoints go to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn register(&mut self, task: TaskId) -> Handle {
        self.tasks.push(task.clone());
        Handle {
            task,
            reports: self.reports.0.clone(),
        }
    }

    /// Registers a source subtask: its handle, and the channel its triggers come on.
    pub fn register_source(&mut self, task: TaskId) -> (Handle, Receiver<Barrier>) {
        let (trigger_tx, trigger_rx) = unbounded();
        self.triggers.push((task.clone(), trigger_tx));
        (self.register(task), trigger_rx)
    }

    /// Registers an operator subtask.
    pub fn register_operator(&mut self, task: TaskId) -> Handle {
        self.register(task)
    }

    /// Has `hook` called with the metadata of every checkpoint that completes (after it
    /// is durable; a hook's failure is reported, and fails nothing).
    pub fn on_completed(&mut self, hook: OnCompleted) {
        let hooks = self.on_completed.get_mut();
        hooks.unwrap_or_else(|e| e.into_inner()).push(hook);
    }

    /// Registers a sink subtask: its handle, and the channel that says which checkpoint
    /// completed (so its output may be committed).
    pub fn register_sink(&mut self, task: TaskId) -> (Handle, Receiver<CheckpointId>) {
        let (commit_tx, commit_rx) = unbounded();
        self.commits.push(commit_tx);
        (self.register(task), commit_rx)
    }

    /// Runs until `stop` fires or is dropped.
    pub fn run(self, stop: Receiver<()>) -> Result<Summary, CheckpointError> {
        let reports = self.reports.1.clone();
        let mut run = Run {
            coordinator: &self,
            summary: Summary::default(),
            pending: BTreeMap::new(),
            finished: HashMap::new(),
            last_completion: None,
        };
        let mut next_id = self.first_id;
        let mut next_trigger = Instant::now() + self.config.interval;
        loop {
            let now = Instant::now();
            run.expire(now)?;
            let sources_run = run.sources_running();
            let paused = run
                .last_completion
                .is_some_and(|t| now.duration_since(t) < self.config.min_pause);
            // A savepoint's aligned barrier must not be overtaken by a checkpoint's.
            let saving = run.pending.values().any(|p| p.savepoint.is_some());
            if sources_run
                && now >= next_trigger
                && run.pending.len() < self.config.max_concurrent
                && !paused
                && !saving
            {
                run.trigger(&mut next_id, None)?;
                next_trigger = now + self.config.interval;
            }
            let wake = run
                .pending
                .values()
                .map(|p| p.started + self.config.timeout)
                .chain(sources_run.then_some(next_trigger))
                .min()
                .unwrap_or(now + self.config.interval)
                .max(now + Duration::from_millis(1));
            select! {
                recv(stop) -> _ => return Ok(run.summary),
                recv(self.commands) -> command => match command {
                    Ok(Command::Savepoint { reply, .. }) if !sources_run => {
                        let _ = reply.send(Err("the job's sources have finished: no savepoint can be taken".into()));
                    }
                    Ok(Command::Savepoint { stop, reply }) => {
                        run.trigger(&mut next_id, Some((stop, reply)))?;
                    }
                    // The endpoint is gone: nothing more to serve.
                    Err(_) => {}
                },
                recv(reports) -> report => match report {
                    Err(_) => return Ok(run.summary),
                    Ok(Report::Finished { task, last }) => run.finished(task, last)?,
                    Ok(Report::Declined { checkpoint, reason }) => {
                        eprintln!("weir: checkpoint {} aborted: {reason}", checkpoint.0);
                        run.abort(checkpoint, &reason)?;
                    }
                    Ok(Report::Ack { checkpoint, task, state, alignment }) => {
                        let Some(p) = run.pending.get_mut(&checkpoint) else { continue };
                        if let AckState::Operator { sync, .. } = &state {
                            run.summary.max_sync = run.summary.max_sync.max(*sync);
                        }
                        p.acks.insert(task, (state, *alignment));
                        run.complete_if_acked(checkpoint)?;
                    }
                },
                default(wake.saturating_duration_since(Instant::now())) => {}
            }
        }
    }

    fn metadata(&self, id: CheckpointId, acks: HashMap<TaskId, (AckState, Alignment)>) -> Metadata {
        let mut metadata = Metadata {
            job: self.job.clone(),
            checkpoint: id.0,
            max_parallelism: self.max_parallelism,
            sources: BTreeMap::new(),
            operators: BTreeMap::new(),
            operator_states: BTreeMap::new(),
            sinks: BTreeMap::new(),
            channel_states: BTreeMap::new(),
        };
        let mut acks: Vec<(TaskId, (AckState, Alignment))> = acks.into_iter().collect();
        acks.sort_by(|a, b| a.0.cmp(&b.0));
        for (TaskId { node, subtask }, (state, alignment)) in acks {
            if let Some(file) = alignment.channel_state {
                let files = metadata.channel_states.entry(node.clone()).or_default();
                files.push(SubtaskFile { subtask, file });
            }
            match state {
                AckState::Source(splits) => metadata.sources.entry(node).or_default().push(splits),
                AckState::Operator {
                    file,
                    operator_state,
                    ..
                } => {
                    if let Some(file) = operator_state {
                        let files = metadata.operator_states.entry(node.clone()).or_default();
                        files.push(SubtaskFile { subtask, file });
                    }
                    metadata.operators.entry(node).or_default().push(file)
                }
                AckState::Sink(sink) => metadata.sinks.entry(node).or_default().push(sink),
            }
        }
        metadata
    }
}

/// The coordinator's loop state.
struct Run<'a> {
    coordinator: &'a Coordinator,
    summary: Summary,
    pending: BTreeMap<CheckpointId, Pending>,
    /// Finished tasks, answering for themselves in every later checkpoint.
    finished: HashMap<TaskId, Box<dyn Finished>>,
    last_completion: Option<Instant>,
}

impl Run<'_> {
    /// Whether some source subtask is still reading (else no checkpoint is triggered:
    /// the job is draining).
    fn sources_running(&self) -> bool {
        let triggers = &self.coordinator.triggers;
        triggers.is_empty() || triggers.iter().any(|(t, _)| !self.finished.contains_key(t))
    }

    /// Triggers checkpoint `next_id` at every running source; finished tasks answer at once.
    fn trigger(
        &mut self,
        next_id: &mut u64,
        savepoint: Option<SavepointRequest>,
    ) -> Result<(), CheckpointError> {
        let id = CheckpointId(*next_id);
        *next_id += 1;
        let started = Instant::now();
        let barrier = Barrier {
            id,
            // Savepoints stay aligned: they must be canonical and relocatable.
            unaligned_at: match savepoint {
                Some(_) => None,
                None => self.coordinator.config.unaligned.map(|t| started + t),
            },
        };
        for (task, trigger) in &self.coordinator.triggers {
            if !self.finished.contains_key(task) {
                // A source that has just ended will answer with its final state instead.
                let _ = trigger.send(barrier);
            }
        }
        self.pending.insert(
            id,
            Pending {
                started,
                acks: HashMap::new(),
                savepoint,
            },
        );
        let mut failed = None;
        for (task, last) in &mut self.finished {
            match last.state(id) {
                Ok(state) => {
                    let pending = self.pending.get_mut(&id).expect("inserted above");
                    pending
                        .acks
                        .insert(task.clone(), (state, Alignment::default()));
                }
                Err(reason) => {
                    failed = Some(format!("finished task {task}: {reason}"));
                    break;
                }
            }
        }
        match failed {
            Some(why) => {
                eprintln!("weir: checkpoint {} aborted: {why}", id.0);
                self.abort(id, &why)
            }
            None => self.complete_if_acked(id),
        }
    }

    /// `task` finished: it answers for the pending checkpoints it has not acknowledged,
    /// and for every later one. Once every source has finished the job is draining to its
    /// end, which commits its output without a checkpoint: pending ones are aborted
    /// rather than completed with every task's final state written once more.
    fn finished(
        &mut self,
        task: TaskId,
        mut last: Box<dyn Finished>,
    ) -> Result<(), CheckpointError> {
        if self.coordinator.config.verbose {
            eprintln!("weir: task {task} finished; later checkpoints keep its final state");
        }
        let draining = self
            .coordinator
            .triggers
            .iter()
            .all(|(t, _)| *t == task || self.finished.contains_key(t));
        let waiting: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.acks.contains_key(&task))
            .map(|(id, _)| *id)
            .collect();
        if draining {
            for id in waiting {
                self.abort(id, "the job's sources have finished")?;
            }
            self.finished.insert(task, last);
            return Ok(());
        }
        for id in waiting {
            match last.state(id) {
                Ok(state) => {
                    if let Some(p) = self.pending.get_mut(&id) {
                        p.acks.insert(task.clone(), (state, Alignment::default()));
                    }
                    self.complete_if_acked(id)?;
                }
                Err(reason) => {
                    let why = format!("finished task {task}: {reason}");
                    eprintln!("weir: checkpoint {} aborted: {why}", id.0);
                    self.abort(id, &why)?;
                }
            }
        }
        self.finished.insert(task, last);
        Ok(())
    }

    /// Aborts what outlived its timeout.
    fn expire(&mut self, now: Instant) -> Result<(), CheckpointError> {
        let timeout = self.coordinator.config.timeout;
        let expired: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.started) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            eprintln!(
                "weir: checkpoint {} expired after {timeout:?} and was aborted",
                id.0
            );
            self.abort(id, "it timed out")?;
        }
        Ok(())
    }

    /// Aborts pending checkpoint `id`, if it still is, and deletes its folder; `why` goes
    /// to a savepoint request waiting for it.
    fn abort(&mut self, id: CheckpointId, why: &str) -> Result<(), CheckpointError> {
        let Some(p) = self.pending.remove(&id) else {
            return Ok(());
        };
        p.abort(id, why);
        self.summary.aborted += 1;
        self.coordinator.store.discard(id.0)
    }

    /// Completes checkpoint `id` if every task has acknowledged it: writes its metadata,
    /// tells the sinks and finished tasks, answers a savepoint request, and aborts older
    /// pending checkpoints.
    fn complete_if_acked(&mut self, id: CheckpointId) -> Result<(), CheckpointError> {
        let coordinator = self.coordinator;
        let Some(p) = self.pending.get(&id) else {
            return Ok(());
        };
        if !coordinator.tasks.iter().all(|t| p.acks.contains_key(t)) {
            return Ok(());
        }
        let timeout = coordinator.config.timeout;
        if p.started.elapsed() >= timeout {
            // Its last acknowledgement came too late (finished tasks answer at once).
            eprintln!(
                "weir: checkpoint {} expired after {timeout:?} and was aborted",
                id.0
            );
            return self.abort(id, "it timed out");
        }
        let done = self.pending.remove(&id).expect("pending checkpoint");
        let alignment = done.acks.values().map(|(_, a)| a);
        let unaligned = alignment.clone().any(|a| a.unaligned);
        let aligning = alignment.map(|a| a.duration).max().unwrap_or_default();
        let metadata = coordinator.metadata(id, done.acks);
        let files = || metadata.operators.values().flatten();
        self.summary.last_bytes = files().map(StateFile::bytes).sum();
        self.summary.last_copied = files().map(StateFile::copied).sum();
        coordinator.store.complete(&metadata)?;
        crate::fault::crash_if(crate::fault::Point::AfterMetadata, id.0, None);
        self.summary.completed += 1;
        self.summary.unaligned += u64::from(unaligned);
        self.summary.durations.push(done.started.elapsed());
        let in_flight: u64 = metadata
            .channel_states
            .values()
            .flatten()
            .map(|f| f.file.bytes)
            .sum();
        self.summary.channel_state_bytes += in_flight;
        if coordinator.config.verbose {
            let how = match unaligned {
                true => format!("unaligned, {in_flight} bytes of channel state"),
                false => "aligned".to_string(),
            };
            eprintln!(
                "weir: checkpoint {} completed in {:?}, {how}, alignment {aligning:?} ({} bytes \
                 of state, {} bytes written)",
                id.0,
                done.started.elapsed(),
                self.summary.last_bytes,
                self.summary.last_copied
            );
        }
        self.last_completion = Some(Instant::now());
        for commit in &coordinator.commits {
            let _ = commit.send(id);
        }
        let mut hooks = (coordinator.on_completed.lock()).unwrap_or_else(|e| e.into_inner());
        for hook in hooks.iter_mut() {
            if let Err(reason) = hook(&metadata) {
                eprintln!("weir: after checkpoint {}: {reason}", id.0);
            }
        }
        for (task, last) in &mut self.finished {
            if let Err(reason) = last.completed(id) {
                eprintln!(
                    "weir: finished task {task} could not commit checkpoint {}: {reason}",
                    id.0
                );
            }
        }
        if let Some((stop, reply)) = done.savepoint {
            let saved = coordinator.store.save(id.0);
            let _ = reply.send(
                saved
                    .as_ref()
                    .map(Clone::clone)
                    .map_err(ToString::to_string),
            );
            if let (true, Ok(path)) = (stop, saved) {
                self.summary.stopped_with = Some(path);
                coordinator.cancel.store(true, Ordering::SeqCst);
            }
        }
        // Older pending checkpoints can no longer complete usefully.
        let older: Vec<CheckpointId> = self.pending.range(..id).map(|(id, _)| *id).collect();
        for old in older {
            if let Some(p) = self.pending.remove(&old) {
                p.abort(old, "a newer checkpoint completed first");
            }
            self.summary.aborted += 1;
            coordinator.store.discard(old.0)?;
        }
        coordinator.store.retain(coordinator.config.retain)
    }
}
