//! The reading side of a task: its input channels (one per upstream subtask), read in
//! arrival order except where barrier alignment blocks a channel.

use crossbeam_channel::{Receiver, Select};

use super::alignment::{Aligner, CheckpointId, Decision, Mode};
use super::{Message, Stop};
use crate::record::KeyedRecord;

/// What a task does next.
#[derive(Debug)]
pub enum Event {
    /// Process these records.
    Batch(Vec<KeyedRecord>),
    /// Snapshot state for this checkpoint, then forward its barrier.
    Checkpoint(CheckpointId),
}

/// A task's input channels and their alignment.
pub struct Inputs {
    channels: Vec<Receiver<Message>>,
    aligner: Aligner,
    ended: Vec<bool>,
    ready: Vec<Event>,
}

impl Inputs {
    /// Reads `channels`, aligning barriers in `mode`.
    pub fn new(channels: Vec<Receiver<Message>>, mode: Mode) -> Inputs {
        let n = channels.len();
        Inputs {
            channels,
            aligner: Aligner::new(n, mode),
            ended: vec![false; n],
            ready: Vec::new(),
        }
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
            let operation = select.select();
            let input = readable[operation.index()];
            let message = operation
                .recv(&self.channels[input])
                .map_err(|_| Stop::Disconnected)?;
            let decisions = match message {
                Message::Batch(records) => return Ok(Some(Event::Batch(records))),
                Message::Barrier(id) => self.aligner.on_barrier(input, id),
                Message::End => {
                    self.ended[input] = true;
                    self.aligner.on_end(input)
                }
            };
            for decision in decisions {
                // An abandoned checkpoint simply never completes; the coordinator
                // times it out.
                if let Decision::Snapshot(id) = decision {
                    self.ready.push(Event::Checkpoint(id));
                }
            }
        }
    }
}
