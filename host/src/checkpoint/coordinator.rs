//! The checkpoint coordinator (seed 003, "Checkpointing"): triggers checkpoint *n* at
//! every source subtask, collects one acknowledgement per task with its state handle,
//! and completes *n* by writing its metadata last; then the sinks may commit.
//!
//! Invariants: a checkpoint completes only when every source, operator and sink subtask
//! has acknowledged it; one that outlives its timeout, or that a task declines, is
//! aborted and its folder deleted, and the next one goes on;
//! once a source subtask has finished, no new checkpoint is triggered (a finished task
//! can no longer take part) and pending ones that it had not acknowledged are aborted.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};

use super::metadata::{Metadata, SinkState, SourcePosition, StateFile};
use super::storage::{CheckpointError, Store};

/// `[checkpoint]` timing and retention.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between triggers.
    pub interval: Duration,
    /// A checkpoint not complete after this is aborted.
    pub timeout: Duration,
    /// Least time between a completion and the next trigger.
    pub min_pause: Duration,
    /// Most checkpoints in flight at once.
    pub max_concurrent: usize,
    /// Completed checkpoints kept.
    pub retain: usize,
    /// Print a line for every completed checkpoint (`host run --verbose`).
    pub verbose: bool,
}

/// A task, by node name and subtask index.
pub type TaskId = (String, usize);

/// A task's acknowledgement of a checkpoint, with its state handle.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The checkpoint.
    pub checkpoint: u64,
    /// Who acknowledges.
    pub task: TaskId,
    /// Its part of the checkpoint.
    pub state: AckState,
}

/// A task's part of a checkpoint.
#[derive(Debug, Clone)]
pub enum AckState {
    /// A source subtask's position.
    Source(SourcePosition),
    /// An operator subtask's state file, and how long the task stopped to take it.
    Operator {
        /// The file written.
        file: StateFile,
        /// The synchronous part: the task was not processing records meanwhile.
        sync: Duration,
    },
    /// A sink subtask's pending output.
    Sink(SinkState),
}

/// Messages to the coordinator.
#[derive(Debug)]
pub enum Report {
    /// A task acknowledged a checkpoint.
    Ack(Ack),
    /// A source subtask reached its end.
    SourceFinished(TaskId),
    /// A task could not take its part in a checkpoint (writing its state failed).
    Declined {
        /// The checkpoint.
        checkpoint: u64,
        /// Why, for the log.
        reason: String,
    },
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
    /// Checkpoints aborted (timeout, or a source finished first).
    pub aborted: u64,
    /// The longest synchronous part of an operator snapshot.
    pub max_sync: Duration,
    /// Bytes of state the last completed checkpoint refers to.
    pub last_bytes: u64,
    /// Bytes the last completed checkpoint wrote (fewer when incremental).
    pub last_copied: u64,
}

struct Pending {
    started: Instant,
    acks: HashMap<TaskId, AckState>,
    savepoint: Option<SavepointRequest>,
}

impl Pending {
    /// Tells a waiting savepoint request that this checkpoint will not complete.
    fn abort(self, id: u64, why: &str) {
        if let Some((_, reply)) = self.savepoint {
            let _ = reply.send(Err(format!(
                "checkpoint {id} for the savepoint was aborted: {why}"
            )));
        }
    }
}

/// The coordinator of one job attempt.
pub struct Coordinator {
    /// Where checkpoints go.
    pub store: Store,
    /// Timing and retention.
    pub config: Config,
    /// The job's name and maximum parallelism, for the metadata.
    pub job: String,
    /// Key groups.
    pub max_parallelism: u16,
    /// Every task that must acknowledge a checkpoint.
    pub tasks: Vec<TaskId>,
    /// Source subtasks, with the channel that triggers them.
    pub triggers: Vec<(TaskId, Sender<u64>)>,
    /// Sink subtasks' channels for "checkpoint n completed: commit".
    pub commits: Vec<Sender<u64>>,
    /// The number of the first checkpoint to trigger.
    pub first_id: u64,
    /// Savepoint requests.
    pub commands: Receiver<Command>,
    /// Set to stop the job (after a stop-with-savepoint).
    pub cancel: Arc<AtomicBool>,
}

impl Coordinator {
    /// Runs until `stop` fires or is dropped.
    pub fn run(
        self,
        reports: Receiver<Report>,
        stop: Receiver<()>,
    ) -> Result<Summary, CheckpointError> {
        let mut summary = Summary::default();
        let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
        let mut next_id = self.first_id;
        let mut next_trigger = Instant::now() + self.config.interval;
        let mut last_completion: Option<Instant> = None;
        let mut finished_sources = false;
        loop {
            let now = Instant::now();
            // Abort what outlived its timeout.
            let expired: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| now.duration_since(p.started) >= self.config.timeout)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                if let Some(p) = pending.remove(&id) {
                    p.abort(id, "it timed out");
                }
                summary.aborted += 1;
                eprintln!(
                    "weir: checkpoint {id} expired after {:?} and was aborted",
                    self.config.timeout
                );
                self.store.discard(id)?;
            }
            let paused =
                last_completion.is_some_and(|t| now.duration_since(t) < self.config.min_pause);
            if !finished_sources
                && now >= next_trigger
                && pending.len() < self.config.max_concurrent
                && !paused
            {
                self.trigger(&mut pending, &mut next_id, None);
                next_trigger = now + self.config.interval;
            }
            let wake = pending
                .values()
                .map(|p| p.started + self.config.timeout)
                .chain((!finished_sources).then_some(next_trigger))
                .min()
                .unwrap_or(now + self.config.interval)
                .max(now + Duration::from_millis(1));
            select! {
                recv(stop) -> _ => return Ok(summary),
                recv(self.commands) -> command => match command {
                    Ok(Command::Savepoint { reply, .. }) if finished_sources => {
                        let _ = reply.send(Err("the job's sources have finished: no savepoint can be taken".into()));
                    }
                    Ok(Command::Savepoint { stop, reply }) => {
                        self.trigger(&mut pending, &mut next_id, Some((stop, reply)));
                    }
                    // The endpoint is gone: nothing more to serve.
                    Err(_) => {}
                },
                recv(reports) -> report => match report {
                    Err(_) => return Ok(summary),
                    Ok(Report::SourceFinished(task)) => {
                        finished_sources = true;
                        let stranded: Vec<u64> = pending
                            .iter()
                            .filter(|(_, p)| !p.acks.contains_key(&task))
                            .map(|(id, _)| *id)
                            .collect();
                        for id in stranded {
                            if let Some(p) = pending.remove(&id) {
                                p.abort(id, "a source finished first");
                            }
                            summary.aborted += 1;
                            self.store.discard(id)?;
                        }
                    }
                    Ok(Report::Declined { checkpoint, reason }) => {
                        if let Some(p) = pending.remove(&checkpoint) {
                            p.abort(checkpoint, &reason);
                            summary.aborted += 1;
                            eprintln!("weir: checkpoint {checkpoint} aborted: {reason}");
                            self.store.discard(checkpoint)?;
                        }
                    }
                    Ok(Report::Ack(ack)) => {
                        let Some(p) = pending.get_mut(&ack.checkpoint) else { continue };
                        if let AckState::Operator { sync, .. } = &ack.state {
                            summary.max_sync = summary.max_sync.max(*sync);
                        }
                        p.acks.insert(ack.task, ack.state);
                        if self.tasks.iter().all(|t| p.acks.contains_key(t)) {
                            let id = ack.checkpoint;
                            let done = pending.remove(&id).expect("pending checkpoint");
                            let metadata = self.metadata(id, done.acks);
                            let files = || metadata.operators.values().flatten();
                            summary.last_bytes = files().map(StateFile::bytes).sum();
                            summary.last_copied = files().map(StateFile::copied).sum();
                            self.store.complete(&metadata)?;
                            summary.completed += 1;
                            if self.config.verbose {
                                eprintln!(
                                    "weir: checkpoint {id} completed in {:?} ({} bytes of state, {} bytes written)",
                                    done.started.elapsed(),
                                    summary.last_bytes,
                                    summary.last_copied
                                );
                            }
                            last_completion = Some(Instant::now());
                            for commit in &self.commits {
                                let _ = commit.send(id);
                            }
                            if let Some((stop, reply)) = done.savepoint {
                                let saved = self.store.save(id);
                                let _ = reply.send(saved.as_ref().map(Clone::clone).map_err(ToString::to_string));
                                if let (true, Ok(path)) = (stop, saved) {
                                    summary.stopped_with = Some(path);
                                    self.cancel.store(true, Ordering::SeqCst);
                                }
                            }
                            // Older pending checkpoints can no longer complete usefully.
                            let older: Vec<u64> = pending.range(..id).map(|(id, _)| *id).collect();
                            for old in older {
                                if let Some(p) = pending.remove(&old) {
                                    p.abort(old, "a newer checkpoint completed first");
                                }
                                summary.aborted += 1;
                                self.store.discard(old)?;
                            }
                            self.store.retain(self.config.retain)?;
                        }
                    }
                },
                default(wake.saturating_duration_since(Instant::now())) => {}
            }
        }
    }

    /// Triggers checkpoint `next_id` at every source.
    fn trigger(
        &self,
        pending: &mut BTreeMap<u64, Pending>,
        next_id: &mut u64,
        savepoint: Option<SavepointRequest>,
    ) {
        for (_, trigger) in &self.triggers {
            // A source that has just ended reports it; the checkpoint is then aborted.
            let _ = trigger.send(*next_id);
        }
        pending.insert(
            *next_id,
            Pending {
                started: Instant::now(),
                acks: HashMap::new(),
                savepoint,
            },
        );
        *next_id += 1;
    }

    fn metadata(&self, id: u64, acks: HashMap<TaskId, AckState>) -> Metadata {
        let mut metadata = Metadata {
            job: self.job.clone(),
            checkpoint: id,
            max_parallelism: self.max_parallelism,
            sources: BTreeMap::new(),
            operators: BTreeMap::new(),
            sinks: BTreeMap::new(),
        };
        let mut acks: Vec<(TaskId, AckState)> = acks.into_iter().collect();
        acks.sort_by(|a, b| a.0.cmp(&b.0));
        for ((node, _), state) in acks {
            match state {
                AckState::Source(position) => {
                    metadata.sources.entry(node).or_default().push(position)
                }
                AckState::Operator { file, .. } => {
                    metadata.operators.entry(node).or_default().push(file)
                }
                AckState::Sink(sink) => metadata.sinks.entry(node).or_default().push(sink),
            }
        }
        metadata
    }
}
