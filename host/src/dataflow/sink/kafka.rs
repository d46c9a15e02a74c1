//! The Kafka sink: at-least-once (messages sent as they come, flushed at every barrier),
//! or exactly-once (the part files of [`super::PartFiles`], kept with the checkpoints,
//! each written to the topic in a transaction when its checkpoint completes; see
//! [`crate::kafka`] for the marker that makes a repeated commit write nothing twice).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Acks, FinalPart, Inputs, SinkReport};
use crate::checkpoint::coordinator::{AckState, FinalAck};
use crate::checkpoint::files::sync_dir;
use crate::checkpoint::{SinkState, Store};
use crate::dataflow::inputs::Event;
use crate::dataflow::{Failure, Stop};
use crate::job::{Job, KafkaDelivery, KafkaSink, Sink, SinkKind};
use crate::kafka::{Committer, Producer};

fn failed(sink: &str) -> impl Fn(String) -> Failure + '_ {
    move |error| Failure::Kafka {
        task: format!("sink `{sink}`"),
        error,
    }
}

fn transactional_id(ids: &str, subtask: usize) -> String {
    format!("{ids}-{subtask}")
}

/// Subtask `subtask`'s committer if the sink is exactly-once: its transactional id taken
/// over (a transaction left open by an earlier run is aborted).
pub(super) fn committer(
    sink: &Sink,
    settings: &KafkaSink,
    subtask: usize,
) -> Result<Option<Committer>, Stop> {
    let KafkaDelivery::ExactlyOnce { transactional_ids } = &settings.delivery else {
        return Ok(None);
    };
    let id = transactional_id(transactional_ids, subtask);
    Committer::new(&settings.client, &id, &settings.topic, settings.key.clone())
        .map(Some)
        .map_err(|e| Stop::Failed(failed(&sink.name)(e)))
}

/// Where an exactly-once sink's pending parts wait for their checkpoint.
pub(super) fn staging(store: &Store, sink: &str) -> PathBuf {
    store.sink_output(sink)
}

/// Commits part `n` in `file` (skipped if the topic has it already), then deletes it.
pub(super) fn publish(committer: &mut Committer, file: &Path, n: u64) -> io::Result<()> {
    committer.commit(n, file).map_err(io::Error::other)?;
    match fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A subtask's committer on a thread of its own, so that the sink goes on writing the
/// next part while the last one goes to the topic; parts are committed in the order
/// given. A failed commit ends the thread, and the next call says why.
pub(super) struct Background {
    queue: Option<crossbeam_channel::Sender<(PathBuf, u64)>>,
    thread: Option<std::thread::JoinHandle<io::Result<Committer>>>,
    /// Parts below it have been queued.
    queued: u64,
    /// Parts below it are committed (the committer's marker).
    committed: Arc<AtomicU64>,
}

impl Background {
    pub(super) fn new(mut committer: Committer) -> Background {
        let (queue, parts) = crossbeam_channel::unbounded::<(PathBuf, u64)>();
        let committed = Arc::new(AtomicU64::new(committer.next()));
        let marker = Arc::clone(&committed);
        let thread = std::thread::spawn(move || {
            for (file, n) in parts {
                publish(&mut committer, &file, n)?;
                marker.store(committer.next(), Ordering::Release);
            }
            Ok(committer)
        });
        Background {
            queue: Some(queue),
            thread: Some(thread),
            queued: 0,
            committed,
        }
    }

    /// Queues part `n` in `file` for its transaction.
    pub(super) fn part(&mut self, file: PathBuf, n: u64) -> io::Result<()> {
        let stopped = self.thread.as_ref().is_none_or(|t| t.is_finished());
        let queue = self.queue.as_ref().filter(|_| !stopped);
        match queue.map(|q| q.send((file, n))) {
            Some(Ok(())) => {
                self.queued = n + 1;
                Ok(())
            }
            _ => self
                .stop()
                .and(Err(io::Error::other("its committer stopped"))),
        }
    }

    /// Parts below this number have been queued.
    pub(super) fn queued_below(&self) -> u64 {
        self.queued
    }

    /// Parts below this number are committed.
    pub(super) fn committed_below(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Waits until every queued part is committed; returns the committer.
    pub(super) fn drain(mut self) -> io::Result<Committer> {
        self.queue = None;
        self.stop()
    }

    fn stop(&mut self) -> io::Result<Committer> {
        self.queue = None;
        let thread = self
            .thread
            .take()
            .ok_or_else(|| io::Error::other("its committer stopped"))?;
        thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("its committer panicked")))
    }
}

/// Runs an at-least-once sink subtask until its inputs end.
pub(super) fn at_least_once(
    sink: &Sink,
    settings: &KafkaSink,
    mut inputs: Inputs,
    mut acks: Acks,
    report: &mut SinkReport,
) -> Result<(), Stop> {
    let stop = |e| Stop::Failed(failed(&sink.name)(e));
    let producer =
        Producer::new(&settings.client, &settings.topic, settings.key.clone()).map_err(stop)?;
    while let Some(event) = inputs.next()? {
        match event {
            Event::Batch(batch, _) => {
                for record in &batch {
                    producer.send(&record.payload).map_err(stop)?;
                }
                report.records += batch.len() as u64;
            }
            Event::Checkpoint(snapshot) => {
                producer.flush().map_err(stop)?;
                acks.snapshot(snapshot, SinkState::default());
            }
            Event::ChannelState(id, state) => acks.channel_state(id, &state),
            Event::Watermark(_) | Event::Committed(_) | Event::Alarm => {}
        }
    }
    producer.flush().map_err(stop)?;
    acks.finished(Box::new(FinalAck(AckState::Sink(SinkState::default()))));
    Ok(())
}

/// `.part-<i>-<n>.pending` → `(i, n)`.
fn pending_number(name: &str) -> Option<(usize, u64)> {
    let (subtask, n) = name
        .strip_prefix(".part-")?
        .strip_suffix(".pending")?
        .split_once('-')?;
    Some((subtask.parse().ok()?, n.parse().ok()?))
}

/// Readies an exactly-once Kafka sink for an attempt at `parallelism`: takes over every
/// transactional id the restored checkpoint's subtasks or this attempt's use (aborting
/// what an earlier run left open), commits the parts the checkpoint lists that the topic
/// does not have yet, deletes the other pending parts (output past the checkpoint, which
/// will be replayed), and returns each subtask's first part number. An at-least-once
/// sink needs nothing.
pub fn prepare_kafka(
    sink: &Sink,
    store: &Store,
    restored: Option<&[SinkState]>,
) -> Result<Vec<u64>, Failure> {
    let parallelism = usize::from(sink.parallelism);
    let SinkKind::Kafka(settings) = &sink.kind else {
        return Ok(vec![0; parallelism]);
    };
    let KafkaDelivery::ExactlyOnce { transactional_ids } = &settings.delivery else {
        return Ok(vec![0; parallelism]);
    };
    let dir = store.sink_output(&sink.name);
    let io_failure = |what: &str| {
        let what = format!("{what} ({})", dir.display());
        let task = format!("sink `{}`", sink.name);
        move |error| Failure::Io { task, what, error }
    };
    fs::create_dir_all(&dir).map_err(io_failure("cannot create its pending output folder"))?;
    let restored = restored.unwrap_or_default();
    let mut first = vec![0; parallelism];
    for subtask in 0..restored.len().max(parallelism) {
        let id = transactional_id(transactional_ids, subtask);
        let mut committer =
            Committer::new(&settings.client, &id, &settings.topic, settings.key.clone())
                .map_err(failed(&sink.name))?;
        let state = restored.get(subtask);
        let next_part = state.and_then(|s| s.next_part);
        if let Some(next) = next_part
            && committer.next() > next
        {
            return Err(Failure::Restore {
                path: store.root().to_path_buf(),
                reason: format!(
                    "sink `{}`: topic `{}` already holds part {} of `{id}`, output of a \
                     later checkpoint than this one (whose parts end before {next}); \
                     resuming here would write that output twice. Resume from the latest \
                     checkpoint",
                    sink.name,
                    settings.topic,
                    committer.next() - 1
                ),
            });
        }
        let mut pending: Vec<(u64, &String)> = (state.map(|s| s.pending.as_slice()))
            .unwrap_or_default()
            .iter()
            .filter_map(|name| Some((pending_number(name)?.1, name)))
            .collect();
        pending.sort();
        for (n, name) in pending {
            publish(&mut committer, &dir.join(name), n).map_err(|e| Failure::Kafka {
                task: format!("sink `{}`", sink.name),
                error: format!("cannot commit a checkpoint's output: {e}"),
            })?;
        }
        if let Some(slot) = first.get_mut(subtask) {
            *slot = committer.next().max(next_part.unwrap_or(0));
        }
    }
    for entry in fs::read_dir(&dir).map_err(io_failure("cannot list its pending output"))? {
        let entry = entry.map_err(io_failure("cannot list its pending output"))?;
        if entry.file_name().to_string_lossy().starts_with(".part-") {
            fs::remove_file(entry.path()).map_err(io_failure("cannot delete pending output"))?;
        }
    }
    sync_dir(&dir).map_err(io_failure("cannot sync its pending output folder"))?;
    Ok(first)
}

/// Commits a part an exactly-once Kafka sink left pending when it finished.
pub(super) fn commit_final(part: &FinalPart, job: Option<&Job>) -> io::Result<()> {
    let FinalPart::Kafka {
        sink,
        subtask,
        part,
        pending,
    } = part
    else {
        return Ok(());
    };
    let settings = job.and_then(|job| {
        let found = job.sinks.iter().find(|s| &s.name == sink)?;
        match &found.kind {
            SinkKind::Kafka(settings) => Some(settings),
            _ => None,
        }
    });
    let Some(settings) = settings else {
        return Err(io::Error::other(format!(
            "the job has no Kafka sink `{sink}` to commit its last output with"
        )));
    };
    let KafkaDelivery::ExactlyOnce { transactional_ids } = &settings.delivery else {
        return Ok(());
    };
    let id = transactional_id(transactional_ids, *subtask);
    let mut committer =
        Committer::new(&settings.client, &id, &settings.topic, settings.key.clone())
            .map_err(io::Error::other)?;
    publish(&mut committer, pending, *part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_parts_are_numbered_by_subtask_and_part() {
        assert_eq!(pending_number(".part-3-12.pending"), Some((3, 12)));
        assert_eq!(pending_number(".part-3-12.inprogress"), None);
        assert_eq!(pending_number("part-3-12.jsonl"), None);
    }
}
