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

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::inputs::{Event, Inputs, Snapshot};
use super::{Failure, SinkReport, Stop};
use crate::checkpoint::channel_state::ChannelState;
use crate::checkpoint::coordinator::{AckState, Alignment, FinalAck, Finished, Handle, TaskId};
use crate::checkpoint::files::sync_dir;
use crate::checkpoint::metadata::CanonicalFile;
use crate::checkpoint::writer::write_channel_state;
use crate::checkpoint::{CheckpointId, SinkState, Store};
use crate::job::{Sink, SinkKind};
use crate::record::KeyedRecord;

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
        SinkKind::File { path } => {
            let mut parts = PartFiles {
                dir: path.clone(),
                subtask: task.subtask,
                next: first_part,
                current: None,
                pending: Vec::new(),
            };
            let failure = |what: &str| io_failure(format!("cannot {what} in {}", path.display()));
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
                    Event::Committed(id) => {
                        parts.commit(id).map_err(failure("commit part files"))?
                    }
                    Event::Watermark(_) | Event::Alarm => {}
                }
            }
            let next_part = parts.next;
            report.final_parts = parts.finish().map_err(failure("close a part file"))?;
            acks.finished(Box::new(FinalParts {
                pending: report.final_parts.clone(),
                next_part,
            }));
        }
    }
    Ok(report)
}

fn write_batch(out: &mut impl Write, batch: &[KeyedRecord]) -> io::Result<()> {
    for record in batch {
        out.write_all(&record.payload)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// One file sink subtask's part files.
struct PartFiles {
    dir: PathBuf,
    subtask: usize,
    next: u64,
    current: Option<(BufWriter<File>, u64)>,
    /// Pending part numbers, with the checkpoint that commits them.
    pending: Vec<(CheckpointId, u64)>,
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
    fn commit(&mut self, completed: CheckpointId) -> io::Result<()> {
        let (done, rest): (Vec<_>, Vec<_>) =
            self.pending.iter().partition(|(c, _)| *c <= completed);
        for (_, n) in &done {
            commit_part(&self.dir, &self.pending_name(*n))?;
        }
        if !done.is_empty() {
            sync_dir(&self.dir)?;
        }
        self.pending = rest;
        Ok(())
    }

    /// At the end of input: everything still open or pending, as (pending, committed)
    /// paths for the job to commit once every task has finished.
    fn finish(mut self) -> io::Result<Vec<(PathBuf, PathBuf)>> {
        self.prepare(CheckpointId(u64::MAX))?;
        Ok(self
            .pending
            .iter()
            .map(|(_, n)| {
                let name = self.pending_name(*n);
                (self.dir.join(&name), self.dir.join(committed_name(&name)))
            })
            .collect())
    }
}

/// A finished file sink subtask's output: pending in every checkpoint after its end until
/// one completes, which commits it.
struct FinalParts {
    /// (pending, committed) paths; empty once committed.
    pending: Vec<(PathBuf, PathBuf)>,
    next_part: u64,
}

impl Finished for FinalParts {
    fn state(&mut self, _: CheckpointId) -> Result<AckState, String> {
        let pending = self
            .pending
            .iter()
            .filter_map(|(p, _)| Some(p.file_name()?.to_string_lossy().into_owned()))
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
        commit_final(&self.pending).map_err(|e| format!("cannot commit its part files: {e}"))?;
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

/// Commits final part files: `(pending, committed)` paths.
pub fn commit_final(parts: &[(PathBuf, PathBuf)]) -> io::Result<()> {
    for (pending, committed) in parts {
        match fs::rename(pending, committed) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
        if let Some(dir) = committed.parent() {
            sync_dir(dir)?;
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
