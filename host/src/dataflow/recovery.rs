//! A job's life across failures: resume from the latest checkpoint (or a savepoint),
//! restart after task failures as the restart strategy allows, cancel, and finish by
//! committing the sinks' last output before deleting the checkpoints.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::attempt::{Attempt, run_attempt};
use super::restore::{Restore, latest, open_restore};
use super::sink::{self, FinalPart};
use super::{Failure, Report, SinkReport, poison};
use crate::checkpoint::coordinator;
use crate::checkpoint::restart::Restarts;
use crate::checkpoint::{CheckpointError, Store};
use crate::job::{Job, OnCancel};
use crate::wasm::Runtime;

/// Runs `job` to completion: resumes from its latest completed checkpoint if it has
/// one, and restarts from the latest completed checkpoint after a task failure, as its
/// restart strategy allows. Setting `cancel` stops the job (sources stop between two
/// records) and applies `[checkpoint] on_cancel`.
pub fn run(
    job: &Job,
    runtime: &Runtime,
    start: &Start,
    cancel: &Arc<AtomicBool>,
) -> Result<Report, Failure> {
    let result = run_attempts(job, runtime, start, cancel);
    // Each subtask's local database is deleted with its backend; the folder that held
    // them goes too, if nothing else is in it (a folder a user named is never emptied).
    let _ = std::fs::remove_dir(&job.state.dir);
    result
}

fn run_attempts(
    job: &Job,
    runtime: &Runtime,
    start: &Start,
    cancel: &Arc<AtomicBool>,
) -> Result<Report, Failure> {
    let store = job
        .checkpoint
        .as_ref()
        .map(|c| Store::new(&c.dir, &job.name));
    if let Some(store) = &store
        && finish_previous(job, store)?
    {
        return Ok(Report {
            already_finished: true,
            ..Report::default()
        });
    }
    // Restarts go back to the savepoint until this run has completed a checkpoint.
    let savepoint = start
        .from_savepoint
        .as_deref()
        .map(|dir| open_restore(job, dir, start.allow_non_restored_state))
        .transpose()?;
    let first_own = store.as_ref().map(Store::next_id).transpose()?.unwrap_or(0);
    let latest_or_savepoint = || -> Result<Option<Restore>, Failure> {
        match latest(job, store.as_ref())? {
            Some(own) if savepoint.is_none() || own.metadata.checkpoint >= first_own => {
                Ok(Some(own))
            }
            _ => Ok(savepoint.clone()),
        }
    };
    let mut restore = latest_or_savepoint()?;
    let resumed_from = restore.as_ref().map(|r| r.metadata.checkpoint);
    if let Some(r) = &restore {
        eprintln!(
            "weir: resuming job `{}` from checkpoint {} ({})",
            job.name,
            r.metadata.checkpoint,
            r.dir.display()
        );
    }
    let commands = start
        .control
        .clone()
        .unwrap_or_else(crossbeam_channel::never);
    let guards: HashMap<String, Arc<poison::Guard>> = job
        .operators
        .iter()
        .map(|o| {
            let guard = poison::Guard::new(&o.name, o.on_poison.clone());
            (o.name.clone(), Arc::new(guard))
        })
        .collect();
    let mut restarts = Restarts::new(job.restart.clone());
    let mut checkpoints = coordinator::Summary::default();
    let mut attempt = 0u32;
    loop {
        let (result, summary) = run_attempt(Attempt {
            job,
            runtime,
            store: store.as_ref(),
            restore: restore.as_ref(),
            number: attempt,
            cancel,
            commands: &commands,
            guards: &guards,
            native: start.native,
        });
        checkpoints.stopped_with = checkpoints.stopped_with.or(summary.stopped_with);
        checkpoints.completed += summary.completed;
        checkpoints.aborted += summary.aborted;
        checkpoints.max_sync = checkpoints.max_sync.max(summary.max_sync);
        checkpoints.unaligned += summary.unaligned;
        checkpoints.channel_state_bytes += summary.channel_state_bytes;
        checkpoints
            .durations
            .extend(summary.durations.iter().copied());
        if summary.completed > 0 {
            checkpoints.last_bytes = summary.last_bytes;
            checkpoints.last_copied = summary.last_copied;
        }
        match result {
            Ok(mut report) => {
                finish(job, store.as_ref(), &report)?;
                report.resumed_from = resumed_from;
                report.restarts = restarts.failures();
                report.checkpoints = checkpoints;
                return Ok(report);
            }
            Err(Failure::Cancelled) if checkpoints.stopped_with.is_some() => {
                return Ok(Report {
                    stopped_with: checkpoints.stopped_with.clone(),
                    resumed_from,
                    restarts: restarts.failures(),
                    checkpoints,
                    ..Report::default()
                });
            }
            Err(Failure::Cancelled) => return cancelled(job, store.as_ref()),
            Err(failure) if failure.is_recoverable() && !cancel.load(Ordering::SeqCst) => {
                let Some(delay) = restarts.on_failure(Instant::now()) else {
                    return Err(failure);
                };
                restore = latest_or_savepoint()?;
                let from = match &restore {
                    Some(r) => format!("from checkpoint {}", r.metadata.checkpoint),
                    None => "from the start".into(),
                };
                eprintln!(
                    "weir: {failure}\nweir: restarting job `{}` {from} in {delay:?} (restart {})",
                    job.name,
                    restarts.failures()
                );
                if wait_before_restart(delay, &commands, cancel) {
                    return cancelled(job, store.as_ref());
                }
                attempt += 1;
            }
            Err(failure) => return Err(failure),
        }
    }
}

/// A cancelled job: keeps or deletes its checkpoints as `on_cancel` says.
fn cancelled(job: &Job, store: Option<&Store>) -> Result<Report, Failure> {
    if let (Some(store), Some(checkpointing)) = (store, &job.checkpoint) {
        if checkpointing.on_cancel == OnCancel::Delete {
            store.discard_all()?;
            eprintln!(
                "weir: job `{}` cancelled; its checkpoints were deleted (on_cancel = \"delete\")",
                job.name
            );
        } else {
            eprintln!(
                "weir: job `{}` cancelled; its checkpoints are kept in {}: `host run` resumes from the latest",
                job.name,
                store.root().display()
            );
        }
    }
    Err(Failure::Cancelled)
}

/// Waits `delay` before a restart; returns early, `true`, if the job is cancelled
/// meanwhile. A savepoint asked for now cannot be taken (no task runs): it is refused,
/// and a stop by signal then cancels the job instead.
fn wait_before_restart(
    delay: Duration,
    commands: &Receiver<coordinator::Command>,
    cancel: &AtomicBool,
) -> bool {
    let deadline = Instant::now() + delay;
    while !cancel.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        // Cancellation is a flag, so look at it at least every 100 ms.
        crossbeam_channel::select! {
            recv(commands) -> command => {
                if let Ok(coordinator::Command::Savepoint { reply, .. }) = command {
                    let _ = reply.send(Err("the job is waiting to restart after a failure".into()));
                }
            }
            default(left.min(Duration::from_millis(100))) => {}
        }
    }
    true
}

/// Where a run starts when not from the job's own latest checkpoint.
#[derive(Debug, Clone, Default)]
pub struct Start {
    /// A savepoint (or any completed checkpoint's folder) to start from.
    pub from_savepoint: Option<PathBuf>,
    /// Start even if the savepoint holds state of operators the job no longer has.
    pub allow_non_restored_state: bool,
    /// Savepoint requests from the control endpoint.
    pub control: Option<Receiver<coordinator::Command>>,
    /// Runs every operator as this native code instead of its component: `host bench`'s
    /// baselines only.
    pub native: Option<super::NativeFactory>,
}

const FINISHED: &str = "_finished";

/// After every task finished: commits the sinks' final part files and deletes the
/// job's checkpoints. A marker listing the files is written first, so that a crash in
/// between is completed by the next `host run` instead of replaying committed output.
fn finish(job: &Job, store: Option<&Store>, report: &Report) -> Result<(), Failure> {
    let parts: Vec<FinalPart> = report
        .sinks
        .iter()
        .flat_map(|s| s.final_parts.clone())
        .collect();
    let io_failure = |what: &str| {
        let what = what.to_string();
        move |error| Failure::Io {
            task: "job".into(),
            what,
            error,
        }
    };
    let Some(store) = store else {
        return sink::commit_final(&parts, Some(job))
            .map_err(io_failure("cannot commit the sinks' output"));
    };
    let marker = store.root().join(FINISHED);
    std::fs::create_dir_all(store.root())
        .map_err(io_failure("cannot create the checkpoint directory"))?;
    let listing = serde_json::to_vec(&parts).expect("paths serialize");
    crate::checkpoint::files::write_synced(&marker, &listing)
        .map_err(io_failure("cannot write the finish marker"))?;
    sink::commit_final(&parts, Some(job)).map_err(io_failure("cannot commit the sinks' output"))?;
    store.discard_all()?;
    std::fs::remove_file(&marker).map_err(io_failure("cannot remove the finish marker"))
}

/// Completes a finish that a crash interrupted; returns whether there was one.
fn finish_previous(job: &Job, store: &Store) -> Result<bool, Failure> {
    let marker = store.root().join(FINISHED);
    let Ok(listing) = std::fs::read(&marker) else {
        return Ok(false);
    };
    // Markers before Kafka sinks listed (pending, committed) paths.
    let old = |listing: &[u8]| {
        let paths: Vec<(PathBuf, PathBuf)> = serde_json::from_slice(listing)?;
        Ok::<_, serde_json::Error>(
            (paths.into_iter())
                .map(|(pending, committed)| FinalPart::File { pending, committed })
                .collect(),
        )
    };
    let parts: Vec<FinalPart> = serde_json::from_slice(&listing)
        .or_else(|_| old(&listing))
        .map_err(|e| {
            Failure::Checkpoint(CheckpointError::State {
                path: marker.clone(),
                reason: format!("malformed finish marker: {e}"),
            })
        })?;
    let report = Report {
        sinks: vec![SinkReport {
            final_parts: parts,
            ..SinkReport::default()
        }],
        ..Report::default()
    };
    finish(job, Some(store), &report)?;
    Ok(true)
}
