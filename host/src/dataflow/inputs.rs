//! The reading side of a task: its input channels (one per upstream subtask), read in
//! arrival order except where barrier alignment blocks a channel.

use crossbeam_channel::{Receiver, Select};

use super::alignment::{Aligner, Arrival, Decision};
use super::{Message, Stop};
use crate::checkpoint::CheckpointId;
use crate::job::Mode;
use crate::record::KeyedRecord;

/// What a task does next.
#[derive(Debug)]
pub enum Event {
    /// Process these records, which came from the task's input with this index (in the
    /// job file's `input` list).
    Batch(Vec<KeyedRecord>, u32),
    /// Snapshot state for this checkpoint, then forward its barrier.
    Checkpoint(CheckpointId),
    /// This checkpoint completed: its output may be committed.
    Committed(CheckpointId),
}

/// A task's input channels and their alignment.
pub struct Inputs {
    channels: Vec<Receiver<Message>>,
    /// Each channel's input index.
    input_of: Vec<u32>,
    aligner: Aligner,
    ended: Vec<bool>,
    ready: Vec<Event>,
    commits: Option<Receiver<CheckpointId>>,
}

impl Inputs {
    /// Reads `channels` (each with the index of the input it carries), aligning
    /// barriers in `mode`.
    pub fn new(channels: Vec<(Receiver<Message>, u32)>, mode: Mode) -> Inputs {
        let n = channels.len();
        let (channels, input_of) = channels.into_iter().unzip();
        Inputs {
            channels,
            input_of,
            aligner: Aligner::new(n, mode),
            ended: vec![false; n],
            ready: Vec::new(),
            commits: None,
        }
    }

    /// Also reports the coordinator's completed checkpoints, read from `commits`, as
    /// [`Event::Committed`] (never blocked by alignment).
    pub fn with_commits(mut self, commits: Receiver<CheckpointId>) -> Inputs {
        self.commits = Some(commits);
        self
    }

    /// The next event, or `None` once every input has ended.
    pub fn next(&mut self) -> Result<Option<Event>, Stop> {
        loop {
            if !self.ready.is_empty() {
                return Ok(Some(self.ready.remove(0)));
            }
            if self.aligner.finished() {
                return Ok(None);
            }
            let readable: Vec<usize> = (0..self.channels.len())
                .filter(|&i| !self.ended[i] && !self.aligner.is_blocked(i))
                .collect();
            let mut select = Select::new();
            for &i in &readable {
                select.recv(&self.channels[i]);
            }
            if let Some(commits) = &self.commits {
                select.recv(commits);
            }
            let operation = select.select();
            if operation.index() == readable.len() {
                let commits = self.commits.as_ref().expect("selected the commits channel");
                match operation.recv(commits) {
                    Ok(id) => return Ok(Some(Event::Committed(id))),
                    // The coordinator has stopped: no more commits to wait for.
                    Err(_) => self.commits = None,
                }
                continue;
            }
            let input = readable[operation.index()];
            let message = operation
                .recv(&self.channels[input])
                .map_err(|_| Stop::Disconnected)?;
            let decisions = match message {
                Message::Batch(records) => {
                    return Ok(Some(Event::Batch(records, self.input_of[input])));
                }
                Message::Barrier(id) => self.aligner.on_barrier(input, id, Arrival::InBand),
                Message::End => {
                    self.ended[input] = true;
                    self.aligner.on_end(input)
                }
            };
            for decision in decisions {
                // An abandoned checkpoint simply never completes; the coordinator
                // times it out.
                // Barriers travel in band: every snapshot is aligned.
                if let Decision::Snapshot { id, .. } = decision {
                    self.ready.push(Event::Checkpoint(id));
                }
            }
        }
    }
}
