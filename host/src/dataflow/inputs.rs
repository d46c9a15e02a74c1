//! The reading side of a task: its input channels (one per upstream subtask), read in
//! turn except where barrier alignment blocks a channel.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::TryRecvError;

use super::alignment::{Aligner, Arrival, Decision};
use super::channel::{Bell, Received, Receiver};
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
    channels: Vec<Receiver>,
    /// Rung when a channel gets a message.
    bell: Arc<Bell>,
    /// The channel read first next time (channels take turns).
    turn: usize,
    /// Each channel's input index.
    input_of: Vec<u32>,
    aligner: Aligner,
    ended: Vec<bool>,
    ready: Vec<Event>,
    commits: Option<crossbeam_channel::Receiver<CheckpointId>>,
}

/// How often a task waiting for input looks at the coordinator's commits.
const COMMITS_POLL: Duration = Duration::from_millis(5);

impl Inputs {
    /// Reads `channels` (each with the index of the input it carries), aligning
    /// barriers in `mode`; waits on `bell`, which the channels ring.
    pub fn new(channels: Vec<(Receiver, u32)>, mode: Mode, bell: Arc<Bell>) -> Inputs {
        let n = channels.len();
        let (channels, input_of) = channels.into_iter().unzip();
        Inputs {
            channels,
            bell,
            turn: 0,
            input_of,
            aligner: Aligner::new(n, mode),
            ended: vec![false; n],
            ready: Vec::new(),
            commits: None,
        }
    }

    /// Also reports the coordinator's completed checkpoints, read from `commits`, as
    /// [`Event::Committed`] (never blocked by alignment).
    pub fn with_commits(mut self, commits: crossbeam_channel::Receiver<CheckpointId>) -> Inputs {
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
            let seen = self.bell.rings();
            if let Some(commits) = &self.commits {
                match commits.try_recv() {
                    Ok(id) => return Ok(Some(Event::Committed(id))),
                    Err(TryRecvError::Empty) => {}
                    // The coordinator has stopped: no more commits to wait for.
                    Err(TryRecvError::Disconnected) => self.commits = None,
                }
            }
            let Some((input, received)) = self.receive()? else {
                let poll = self.commits.is_some().then_some(COMMITS_POLL);
                self.bell.wait(seen, poll);
                continue;
            };
            let message = match received {
                Received::Message(message) => message,
                Received::Overtaking { .. } => {
                    unreachable!("no task sends unaligned barriers yet (issue 15)")
                }
            };
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
                // Barriers travel in band, so every snapshot is aligned. An abandoned
                // checkpoint simply never completes; the coordinator times it out.
                if let Decision::Snapshot { id, .. } = decision {
                    self.ready.push(Event::Checkpoint(id));
                }
            }
        }
    }

    /// The next message of a readable channel, the channels taking turns; none if none
    /// has one queued.
    fn receive(&mut self) -> Result<Option<(usize, Received)>, Stop> {
        let n = self.channels.len();
        for k in 0..n {
            let input = (self.turn + k) % n;
            if self.ended[input] || self.aligner.is_blocked(input) {
                continue;
            }
            let received = self.channels[input]
                .try_recv()
                .map_err(|_| Stop::Disconnected)?;
            if let Some(received) = received {
                self.turn = (input + 1) % n;
                return Ok(Some((input, received)));
            }
        }
        Ok(None)
    }
}
