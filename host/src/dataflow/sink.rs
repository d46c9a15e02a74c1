//! Sink tasks: write records as JSON lines to stdout, or to part files in a directory
//! with a two-phase commit.
//!
//! Delivery: the stdout sink is at-least-once (what it printed stays printed, and a
//! replay after a failure prints it again). The file sink is exactly-once: subtask *i*
//! writes `.part-<i>-<n>.inprogress`; at barrier *k* it syncs the file and renames it
//! `.part-<i>-<n>.pending` (phase one, acknowledged with checkpoint *k*); when *k*
//! completes it renames it `part-<i>-<n>.jsonl` (phase two). Hidden files are never
//! committed output: a job resuming from checkpoint *k* commits the pending files *k*
//! lists and deletes every other hidden file, whose records it replays.
//!
//! The Kafka sink ([`kafka`]) is at-least-once (sent as they come, flushed at every
//! barrier) or exactly-once: the same part files, kept with the checkpoints, whose phase
//! two is a transaction writing them to the topic.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::inputs::{Event, Inputs, Snapshot};
use super::{Failure, SinkReport, Stop};
use crate::checkpoint::channel_state::ChannelState;
use crate::checkpoint::coordinator::{AckState, Alignment, FinalAck, Finished, Handle, TaskId};
use crate::checkpoint::files::sync_dir;
use crate::checkpoint::metadata::CanonicalFile;
use crate::checkpoint::writer::write_channel_state;
use crate::checkpoint::{CheckpointId, SinkState, Store};
use crate::job::{Sink, SinkKind};
use crate::kafka::Committer;
use crate::record::KeyedRecord;

mod kafka;

pub use kafka::prepare_kafka;

/// Where a sink subtask's checkpoints go.
pub struct Checkpoints {
    /// Takes its checkpoint acknowledgements and, at the end, its final output.
    pub handle: Handle,
    /// The job's checkpoint store, for channel state.
    pub store: Store,
}

/// A sink subtask's acknowledgements: at once for an aligned snapshot, once its channel
/// state is written for an unaligned one.
struct Acks {
    checkpoints: Option<Checkpoints>,
    /// The stem of its file names: `<sink>-<subtask>`.
    name: String,
    /// The unaligned snapshot waiting for its channel state.
    waiting: Option<(CheckpointId, SinkState, Snapshot)>,
}

impl Acks {
    fn snapshot(&mut self, snapshot: Snapshot, state: SinkState) {
        match snapshot.unaligned {
            true => self.waiting = Some((snapshot.barrier.id, state, snapshot)),
            false => self.ack(snapshot, state, None),
        }
    }

    fn channel_state(&mut self, id: CheckpointId, in_flight: &ChannelState) {
        let Some((waiting, state, snapshot)) = self.waiting.take() else {
            return;
        };
        let Some(checkpoints) = &self.checkpoints else {
            return;
        };
        if waiting != id {
            return;
        }
        match write_channel_state(&checkpoints.store, id, &self.name, in_flight) {
            Ok(file) => self.ack(snapshot, state, file),
            Err(reason) => checkpoints.handle.decline(id, reason),
        }
    }

    fn ack(&self, snapshot: Snapshot, state: SinkState, channel_state: Option<CanonicalFile>) {
        if let Some(checkpoints) = &self.checkpoints {
            let alignment = Alignment {
                unaligned: snapshot.unaligned,
                duration: snapshot.alignment,
                channel_state,
            };
            let id = snapshot.barrier.id;
            checkpoints
                .handle
                .ack_aligned(id, AckState::Sink(state), alignment);
        }
    }

    /// The subtask has finished: `last` answers for it from now on.
    fn finished(self, last: Box<dyn Finished>) {
        if let Some(checkpoints) = self.checkpoints {
            checkpoints.handle.finished(last);
        }
    }
}

/// Runs a subtask of `sink` until all of its inputs have ended. `first_part` is the
/// number of its first part file.
pub fn run(
    sink: &Sink,
    task: TaskId,
    mut inputs: Inputs,
    first_part: u64,
    checkpoints: Option<Checkpoints>,
) -> Result<SinkReport, Stop> {
    let io_failure = |what: String| {
        let task = format!("sink `{}`", sink.name);
        move |error: io::Error| Stop::Failed(Failure::Io { task, what, error })
    };
    let mut report = SinkReport {
        name: sink.name.clone(),
        ..SinkReport::default()
    };
    let mut acks = Acks {
        checkpoints,
        name: format!("{}-{}", task.node, task.subtask),
        waiting: None,
    };
    match &sink.kind {
        SinkKind::Stdout => {
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            while let Some(event) = inputs.next()? {
                match event {
                    Event::Batch(batch, _) => {
                        write_batch(&mut out, &batch)
                            .and_then(|()| out.flush())
                            .map_err(io_failure("cannot write to stdout".into()))?;
                        report.records += batch.len() as u64;
                    }
                    Event::Checkpoint(snapshot) => acks.snapshot(snapshot, SinkState::default()),
                    Event::ChannelState(id, state) => acks.channel_state(id, &state),
                    Event::Watermark(_) | Event::Committed(_) | Event::Alarm => {}
                }
            }
            acks.finished(Box::new(FinalAck(AckState::Sink(SinkState::default()))));
        }
        SinkKind::Kafka(settings) => {
            let Some(committer) = kafka::committer(sink, settings, task.subtask)? else {
                kafka::at_least_once(sink, settings, inputs, acks, &mut report)?;
                return Ok(report);
            };
            let store = &acks.checkpoints.as_ref();
            let dir = store
                .map(|c| kafka::staging(&c.store, &sink.name))
                .expect("validation: an exactly-once Kafka sink checkpoints");
            let parts = PartFiles {
                dir,
                subtask: task.subtask,
                next: first_part,
                current: None,
                pending: Vec::new(),
                publish: Publish::Kafka(kafka::Background::new(committer)),
            };
            write_parts(
                sink,
                parts,
                inputs,
                acks,
                &mut report,
                "commit its output to Kafka",
            )?;
        }
        SinkKind::File { path } => {
            let parts = PartFiles {
                dir: path.clone(),
                subtask: task.subtask,
                next: first_part,
                current: None,
                pending: Vec::new(),
                publish: Publish::Rename { committed_below: 0 },
            };
            write_parts(sink, parts, inputs, acks, &mut report, "commit part files")?;
        }
    }
    Ok(report)
}

/// Writes a sink subtask's input to `parts`: part files made pending at each barrier and
/// published (`committing` says how) when their checkpoint completes.
fn write_parts(
    sink: &Sink,
    mut parts: PartFiles,
    mut inputs: Inputs,
    acks: Acks,
    report: &mut SinkReport,
    committing: &str,
) -> Result<(), Stop> {
    let dir = parts.dir.clone();
    let failure = |what: &str| {
        let task = format!("sink `{}`", sink.name);
        let what = format!("cannot {what} ({})", dir.display());
        move |error: io::Error| Stop::Failed(Failure::Io { task, what, error })
    };
    let mut acks = acks;
    while let Some(event) = inputs.next()? {
        match event {
            Event::Batch(batch, _) => {
                parts.write(&batch).map_err(failure("write a part file"))?;
                report.records += batch.len() as u64;
            }
            Event::Checkpoint(snapshot) => {
                let id = snapshot.barrier.id;
                let state = parts.prepare(id).map_err(failure("close a part file"))?;
                acks.snapshot(snapshot, state);
            }
            Event::ChannelState(id, state) => acks.channel_state(id, &state),
            Event::Committed(id) => parts.commit(id).map_err(failure(committing))?,
            Event::Watermark(_) | Event::Alarm => {}
        }
    }
    let next_part = parts.next;
    let (final_parts, committer) = (parts.finish(&sink.name)).map_err(failure(committing))?;
    report.final_parts = final_parts.clone();
    acks.finished(Box::new(FinalParts {
        pending: final_parts,
        next_part,
        committer,
    }));
    Ok(())
}

fn write_batch(out: &mut impl Write, batch: &[KeyedRecord]) -> io::Result<()> {
    for record in batch {
        out.write_all(&record.payload)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// One sink subtask's part files.
struct PartFiles {
    dir: PathBuf,
    subtask: usize,
    next: u64,
    current: Option<(BufWriter<File>, u64)>,
    /// Pending part numbers, with the checkpoint that commits them.
    pending: Vec<(CheckpointId, u64)>,
    /// What committing a part does.
    publish: Publish,
}

/// Where a pending part goes when its checkpoint completes.
enum Publish {
    /// Renamed `part-<i>-<n>.jsonl`, in the sink's directory (parts below
    /// `committed_below` are).
    Rename { committed_below: u64 },
    /// Written to a Kafka topic in a transaction, then deleted, on a thread of its own.
    Kafka(kafka::Background),
}

impl Publish {
    fn part(&mut self, dir: &Path, pending: &str, n: u64) -> io::Result<()> {
        match self {
            Publish::Rename { committed_below } => {
                commit_part(dir, pending)?;
                *committed_below = n + 1;
                Ok(())
            }
            Publish::Kafka(background) => background.part(dir.join(pending), n),
        }
    }

    /// Every part below this number has been handed over to be committed.
    fn queued_below(&self) -> u64 {
        match self {
            Publish::Rename { committed_below } => *committed_below,
            Publish::Kafka(background) => background.queued_below(),
        }
    }

    /// Every part below this number is committed.
    fn committed_below(&self) -> u64 {
        match self {
            Publish::Rename { committed_below } => *committed_below,
            Publish::Kafka(background) => background.committed_below(),
        }
    }
}

/// A part left pending when a sink subtask finished, to commit once the job has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "kebab-case")]
pub enum FinalPart {
    /// A file sink's part: renamed from `pending` to `committed`.
    File {
        /// Its hidden name.
        pending: PathBuf,
        /// Its committed name.
        committed: PathBuf,
    },
    /// An exactly-once Kafka sink's part, written to its topic by subtask `subtask`'s
    /// transactional id.
    Kafka {
        /// The sink.
        sink: String,
        /// The subtask that wrote it.
        subtask: usize,
        /// Its number.
        part: u64,
        /// The file.
        pending: PathBuf,
    },
}

impl PartFiles {
    fn in_progress(&self, n: u64) -> PathBuf {
        self.dir
            .join(format!(".part-{}-{n}.inprogress", self.subtask))
    }

    fn pending_name(&self, n: u64) -> String {
        format!(".part-{}-{n}.pending", self.subtask)
    }

    fn write(&mut self, batch: &[KeyedRecord]) -> io::Result<()> {
        if self.current.is_none() {
            let n = self.next;
            self.next += 1;
            self.current = Some((BufWriter::new(File::create(self.in_progress(n))?), n));
        }
        let (out, _) = self.current.as_mut().expect("opened above");
        write_batch(out, batch)
    }

    /// Phase one: the current file becomes pending, committed by `checkpoint`.
    fn prepare(&mut self, checkpoint: CheckpointId) -> io::Result<SinkState> {
        self.prune();
        if let Some((out, n)) = self.current.take() {
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            fs::rename(self.in_progress(n), self.dir.join(self.pending_name(n)))?;
            sync_dir(&self.dir)?;
            self.pending.push((checkpoint, n));
        }
        Ok(SinkState {
            pending: self
                .pending
                .iter()
                .map(|(_, n)| self.pending_name(*n))
                .collect(),
            next_part: Some(self.next),
        })
    }

    /// Phase two: checkpoint `completed` is durable; commit what it covers.
    ///
    /// A part stays pending, listed in every later checkpoint, until it is committed:
    /// a Kafka part is committed on the committer's thread, maybe after the next barrier.
    fn commit(&mut self, completed: CheckpointId) -> io::Result<()> {
        let due: Vec<u64> = (self.pending.iter())
            .filter(|(c, n)| *c <= completed && self.publish.queued_below() <= *n)
            .map(|(_, n)| *n)
            .collect();
        for n in &due {
            self.publish.part(&self.dir, &self.pending_name(*n), *n)?;
        }
        if !due.is_empty() && matches!(self.publish, Publish::Rename { .. }) {
            sync_dir(&self.dir)?;
        }
        self.prune();
        Ok(())
    }

    /// Drops the parts that are committed from `pending`.
    fn prune(&mut self) {
        let committed = self.publish.committed_below();
        self.pending.retain(|(_, n)| *n >= committed);
    }

    /// At the end of input: everything still open or pending, for the job to commit
    /// once every task has finished (or a later checkpoint, with `Publish`).
    fn finish(mut self, sink: &str) -> io::Result<(Vec<FinalPart>, Option<Committer>)> {
        self.prepare(CheckpointId(u64::MAX))?;
        // The parts already queued are committed before the last ones, by this subtask.
        let rename = Publish::Rename { committed_below: 0 };
        let committer = match std::mem::replace(&mut self.publish, rename) {
            Publish::Rename { .. } => None,
            Publish::Kafka(background) => Some(background.drain()?),
        };
        if let Some(committer) = &committer {
            self.pending.retain(|(_, n)| *n >= committer.next());
        }
        let parts = (self.pending.iter())
            .map(|(_, n)| {
                let name = self.pending_name(*n);
                match committer {
                    None => FinalPart::File {
                        pending: self.dir.join(&name),
                        committed: self.dir.join(committed_name(&name)),
                    },
                    Some(_) => FinalPart::Kafka {
                        sink: sink.to_string(),
                        subtask: self.subtask,
                        part: *n,
                        pending: self.dir.join(&name),
                    },
                }
            })
            .collect();
        Ok((parts, committer))
    }
}

/// A finished sink subtask's output: pending in every checkpoint after its end until
/// one completes, which commits it.
struct FinalParts {
    /// Empty once committed.
    pending: Vec<FinalPart>,
    next_part: u64,
    /// An exactly-once Kafka sink's committer.
    committer: Option<Committer>,
}

impl Finished for FinalParts {
    fn state(&mut self, _: CheckpointId) -> Result<AckState, String> {
        let pending = (self.pending.iter())
            .filter_map(|p| match p {
                FinalPart::File { pending, .. } | FinalPart::Kafka { pending, .. } => {
                    Some(pending.file_name()?.to_string_lossy().into_owned())
                }
            })
            .collect();
        Ok(AckState::Sink(SinkState {
            pending,
            next_part: Some(self.next_part),
        }))
    }

    fn completed(&mut self, _: CheckpointId) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        for part in &self.pending {
            match (part, &mut self.committer) {
                (FinalPart::Kafka { part, pending, .. }, Some(committer)) => {
                    kafka::publish(committer, pending, *part)
                }
                (part, _) => commit_final(std::slice::from_ref(part), None),
            }
            .map_err(|e| format!("cannot commit its output: {e}"))?;
        }
        self.pending.clear();
        Ok(())
    }
}

/// `.part-<i>-<n>.pending` → `part-<i>-<n>.jsonl`.
pub fn committed_name(pending: &str) -> String {
    let name = pending.strip_prefix('.').unwrap_or(pending);
    format!("{}.jsonl", name.strip_suffix(".pending").unwrap_or(name))
}

/// Renames a pending part file to its committed name; one already committed is left
/// alone, so committing twice (after a crash) is harmless.
fn commit_part(dir: &Path, pending: &str) -> io::Result<()> {
    match fs::rename(dir.join(pending), dir.join(committed_name(pending))) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Readies a file sink's directory for an attempt: commits the pending files that
/// `restored` lists, deletes every other hidden part file (output past the checkpoint,
/// which will be replayed), and returns each subtask's first part number (after every
/// committed part, so nothing committed is overwritten).
pub fn prepare_dir(
    dir: &Path,
    parallelism: u16,
    restored: Option<&[SinkState]>,
) -> io::Result<Vec<u64>> {
    fs::create_dir_all(dir)?;
    for state in restored.unwrap_or_default() {
        for pending in &state.pending {
            commit_part(dir, pending)?;
        }
    }
    let mut next = vec![0u64; usize::from(parallelism)];
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(".part-") {
            fs::remove_file(dir.join(&name))?;
        } else if let Some((subtask, n)) = part_number(&name)
            && let Some(slot) = next.get_mut(subtask)
        {
            *slot = (*slot).max(n + 1);
        }
    }
    sync_dir(dir)?;
    Ok(next)
}

/// A committed part file in `dir` that a checkpoint whose sink subtasks recorded
/// `restored` does not cover (committed by a later checkpoint), if any.
pub fn committed_after(dir: &Path, restored: &[SinkState]) -> io::Result<Option<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some((subtask, n)) = part_number(&name)
            && let Some(Some(next)) = restored.get(subtask).map(|s| s.next_part)
            && n >= next
        {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// `part-<i>-<n>.jsonl` → `(i, n)`.
fn part_number(name: &str) -> Option<(usize, u64)> {
    let (subtask, n) = name
        .strip_prefix("part-")?
        .strip_suffix(".jsonl")?
        .split_once('-')?;
    Some((subtask.parse().ok()?, n.parse().ok()?))
}

/// Commits the parts sinks left pending when they finished; committing one twice is
/// harmless. Kafka parts need the `job` (for their sink's settings).
pub fn commit_final(parts: &[FinalPart], job: Option<&crate::job::Job>) -> io::Result<()> {
    for part in parts {
        match part {
            FinalPart::File { pending, committed } => {
                match fs::rename(pending, committed) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    other => other?,
                }
                if let Some(dir) = committed.parent() {
                    sync_dir(dir)?;
                }
            }
            FinalPart::Kafka { .. } => kafka::commit_final(part, job)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeyGroup;

    fn records(n: usize) -> Vec<KeyedRecord> {
        (0..n)
            .map(|i| KeyedRecord {
                key: Default::default(),
                key_group: KeyGroup(0),
                payload: format!("{{\"i\":{i}}}").into_bytes(),
                timestamp: None,
                origin: None,
            })
            .collect()
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn parts_committed_after_a_checkpoint_are_found_by_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["part-0-1.jsonl", "part-1-7.jsonl", ".part-0-4.pending"] {
            fs::write(dir.path().join(name), "{}\n").unwrap();
        }
        let state = |next| SinkState {
            pending: Vec::new(),
            next_part: next,
        };
        let after = |states: &[SinkState]| committed_after(dir.path(), states).unwrap();
        // Subtask 1's part 7 was committed after a checkpoint that stopped at part 5.
        assert_eq!(
            after(&[state(Some(2)), state(Some(5))]),
            Some("part-1-7.jsonl".into())
        );
        // Pending files do not count; nor do subtasks without a record.
        assert_eq!(after(&[state(Some(2)), state(Some(8))]), None);
        assert_eq!(after(&[state(Some(2))]), None);
        assert_eq!(after(&[state(None), state(None)]), None);
    }

    #[test]
    fn output_becomes_visible_only_when_its_checkpoint_completes() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = PartFiles {
            dir: dir.path().into(),
            subtask: 1,
            next: 0,
            current: None,
            pending: Vec::new(),
            publish: Publish::Rename { committed_below: 0 },
        };
        parts.write(&records(2)).unwrap();
        let state = parts.prepare(CheckpointId(1)).unwrap();
        assert_eq!(state.pending, [".part-1-0.pending"]);
        parts.write(&records(1)).unwrap();
        parts.prepare(CheckpointId(2)).unwrap();
        assert!(
            visible(dir.path()).is_empty(),
            "nothing committed before completion"
        );
        parts.commit(CheckpointId(1)).unwrap();
        assert_eq!(visible(dir.path()), ["part-1-0.jsonl"]);
        assert_eq!(
            fs::read_to_string(dir.path().join("part-1-0.jsonl")).unwrap(),
            "{\"i\":0}\n{\"i\":1}\n"
        );
        // A checkpoint with no new output prepares nothing new.
        assert_eq!(
            parts.prepare(CheckpointId(3)).unwrap().pending,
            [".part-1-1.pending"]
        );
        parts.commit(CheckpointId(3)).unwrap();
        assert_eq!(visible(dir.path()), ["part-1-0.jsonl", "part-1-1.jsonl"]);
    }

    #[test]
    fn resuming_commits_what_the_checkpoint_lists_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = PartFiles {
            dir: dir.path().into(),
            subtask: 0,
            next: 0,
            current: None,
            pending: Vec::new(),
            publish: Publish::Rename { committed_below: 0 },
        };
        parts.write(&records(1)).unwrap();
        let at_checkpoint = parts.prepare(CheckpointId(1)).unwrap();
        parts.write(&records(1)).unwrap();
        parts.prepare(CheckpointId(2)).unwrap(); // checkpoint 2 never completes
        parts.write(&records(1)).unwrap(); // in progress at the crash
        drop(parts);
        let next = prepare_dir(dir.path(), 2, Some(std::slice::from_ref(&at_checkpoint))).unwrap();
        assert_eq!(visible(dir.path()), ["part-0-0.jsonl"]);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "hidden files deleted"
        );
        assert_eq!(next, [1, 0]);
        // Resuming twice from the same checkpoint changes nothing.
        assert_eq!(
            prepare_dir(dir.path(), 2, Some(&[at_checkpoint])).unwrap(),
            [1, 0]
        );
        assert_eq!(committed_name(".part-3-12.pending"), "part-3-12.jsonl");
    }
}
