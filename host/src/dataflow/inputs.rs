//! The reading side of a task: its input channels (one per upstream subtask), read in
//! turn except where barrier alignment blocks a channel; overtaking barriers first. After
//! a restore, the restored channel state is replayed before any channel is read.
//!
//! Invariant: the channel state of an unaligned snapshot *n* is, per channel, exactly the
//! records the task processes after the snapshot that were sent before barrier *n*: the
//! copy an overtaking barrier brings of the records it jumped, and the records read from
//! a channel after the snapshot and before that channel's barrier *n*.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::TryRecvError;

use super::alignment::{Aligner, Arrival, Decision};
use super::channel::{Bell, Received, Receiver};
use super::watermark::{Status, TaskWatermarks};
use super::{BATCH_SIZE, Message, Stop};
use crate::checkpoint::channel_state::{ChannelState, InFlight};
use crate::checkpoint::{Barrier, CheckpointId};
use crate::job::Mode;
use crate::record::KeyedRecord;

/// What a task does next.
#[derive(Debug)]
pub enum Event {
    /// Process these records, which came from the task's input with this index (in the
    /// job file's `input` list).
    Batch(Vec<KeyedRecord>, u32),
    /// Snapshot state for this checkpoint, then forward its barrier: in band (aligned),
    /// or ahead of the task's queued output (unaligned; its channel state follows as
    /// [`Event::ChannelState`]).
    Checkpoint(Snapshot),
    /// The channel state of an unaligned snapshot, complete.
    ChannelState(CheckpointId, ChannelState),
    /// The task's watermark moved on (or every input went idle): forward it.
    Watermark(Status),
    /// The time [`Inputs::set_alarm`] asked for came (processing-time timers).
    Alarm,
    /// This checkpoint completed: its output may be committed.
    Committed(CheckpointId),
}

/// A snapshot to take.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// The barrier to forward.
    pub barrier: Barrier,
    /// Whether it is unaligned.
    pub unaligned: bool,
    /// From the first barrier of this checkpoint on any input to the snapshot.
    pub alignment: Duration,
}

/// The rest of a batch, given back.
struct GivenBack {
    records: Vec<KeyedRecord>,
    channel: usize,
    /// The checkpoint whose channel state the whole batch joined when it was delivered.
    recorded: Option<CheckpointId>,
}

/// One input channel of a task.
pub struct InputChannel {
    /// Its receiving end.
    pub receiver: Receiver,
    /// The index of the input it carries (in the task's `input` list).
    pub input: u32,
    /// The upstream subtask sending on it.
    pub producer: u32,
}

/// A task's input channels and their alignment.
pub struct Inputs {
    channels: Vec<InputChannel>,
    /// Rung when a channel gets a message.
    bell: Arc<Bell>,
    /// The channel read first next time (channels take turns).
    turn: usize,
    aligner: Aligner,
    watermarks: TaskWatermarks,
    ended: Vec<bool>,
    /// The newest checkpoint's barrier, and when it first arrived.
    barrier: Option<(Barrier, Instant)>,
    /// The channel state of the unaligned snapshot being recorded: per channel.
    recording: Option<(CheckpointId, Vec<Vec<KeyedRecord>>)>,
    /// Restored channel state still to be processed, in batches.
    replay: VecDeque<(Vec<KeyedRecord>, u32)>,
    /// The channel the last batch came from (none: it was replayed), and the checkpoint
    /// whose channel state it joined when delivered.
    last: Option<(usize, Option<CheckpointId>)>,
    /// The rest of a batch the task gave back to take a barrier first: it comes before
    /// anything else its channel delivers.
    given_back: Option<GivenBack>,
    ready: VecDeque<Event>,
    commits: Option<crossbeam_channel::Receiver<CheckpointId>>,
    /// When to deliver [`Event::Alarm`].
    alarm: Option<Instant>,
}

/// How often a task waiting for input looks at the coordinator's commits.
const COMMITS_POLL: Duration = Duration::from_millis(5);

impl Inputs {
    /// Reads `channels`, aligning barriers in `mode`; waits on `bell`, which the channels
    /// ring.
    pub fn new(channels: Vec<InputChannel>, mode: Mode, bell: Arc<Bell>) -> Inputs {
        let n = channels.len();
        Inputs {
            channels,
            bell,
            turn: 0,
            aligner: Aligner::new(n, mode),
            watermarks: TaskWatermarks::new(n),
            ended: vec![false; n],
            barrier: None,
            recording: None,
            replay: VecDeque::new(),
            last: None,
            given_back: None,
            ready: VecDeque::new(),
            commits: None,
            alarm: None,
        }
    }

    /// Delivers [`Event::Alarm`] once `at` has come (before any further input), instead
    /// of an alarm set before; none: no alarm.
    pub fn set_alarm(&mut self, at: Option<Instant>) {
        self.alarm = at;
    }

    /// Also reports the coordinator's completed checkpoints, read from `commits`, as
    /// [`Event::Committed`] (never blocked by alignment).
    pub fn with_commits(mut self, commits: crossbeam_channel::Receiver<CheckpointId>) -> Inputs {
        self.commits = Some(commits);
        self
    }

    /// Delivers `restored` (this task's share of a restored checkpoint's channel state)
    /// before anything read from the channels.
    pub fn with_replay(mut self, restored: ChannelState) -> Inputs {
        for channel in restored.channels {
            for chunk in channel.records.chunks(BATCH_SIZE) {
                self.replay.push_back((chunk.to_vec(), channel.input));
            }
        }
        self
    }

    /// The task processed only part of the last batch, to take a barrier first: `rest`
    /// is delivered again, before anything else from its channel (and, if the barrier
    /// is unaligned, it is channel state as the records still queued are).
    pub fn give_back(&mut self, rest: Vec<KeyedRecord>, input: u32) {
        if rest.is_empty() {
            return;
        }
        match self.last {
            Some((channel, recorded)) => {
                self.given_back = Some(GivenBack {
                    records: rest,
                    channel,
                    recorded,
                })
            }
            None => self.replay.push_front((rest, input)),
        }
    }

    /// Whether the task should stop waiting for room downstream (or stop part-way
    /// through a batch) and read its inputs: an overtaking barrier is queued, or the
    /// checkpoint being aligned has timed out.
    pub fn has_priority(&self) -> bool {
        self.has_overtaking() || self.timed_out(Instant::now())
    }

    /// The checkpoint being aligned, if its aligned timeout has passed at `now`.
    fn timed_out(&self, now: Instant) -> bool {
        let aligning = self.aligner.aligning();
        self.barrier
            .is_some_and(|(b, _)| Some(b.id) == aligning && b.is_unaligned_at(now))
    }

    /// The next event, or `None` once every input has ended.
    pub fn next(&mut self) -> Result<Option<Event>, Stop> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            if let Some((records, input)) = self.replay.pop_front() {
                self.last = None;
                return Ok(Some(Event::Batch(records, input)));
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
            let now = Instant::now();
            if self.alarm.take_if(|at| *at <= now).is_some() {
                return Ok(Some(Event::Alarm));
            }
            if self.timed_out(now) {
                let id = self.aligner.aligning().expect("timed out while aligning");
                let decisions = self.aligner.on_timeout(id);
                self.apply(decisions, None);
                continue;
            }
            if self.given_back.is_some()
                && !self.has_overtaking()
                && let Some(rest) = self.given_back.take()
            {
                return Ok(Some(self.delivered(
                    rest.channel,
                    rest.records,
                    rest.recorded,
                )));
            }
            let Some((input, received)) = self.receive()? else {
                let deadline = self
                    .barrier
                    .filter(|(b, _)| Some(b.id) == self.aligner.aligning())
                    .and_then(|(b, _)| b.unaligned_at)
                    .map(|at| at.saturating_duration_since(now));
                let poll = self.commits.is_some().then_some(COMMITS_POLL);
                let alarm = self.alarm.map(|at| at.saturating_duration_since(now));
                let wait = deadline.into_iter().chain(poll).chain(alarm).min();
                self.bell.wait(seen, wait);
                continue;
            };
            match received {
                Received::Overtaking { barrier, in_flight } => {
                    self.on_barrier(input, barrier, Arrival::Overtaking, Some(in_flight))
                }
                Received::Message(Message::Batch(records)) => {
                    return Ok(Some(self.delivered(input, records, None)));
                }
                Received::Message(Message::Barrier(barrier)) => {
                    self.on_barrier(input, barrier, Arrival::InBand, None)
                }
                Received::Message(Message::Watermark(status)) => {
                    if let Some(status) = self.watermarks.on_status(input, status) {
                        return Ok(Some(Event::Watermark(status)));
                    }
                }
                Received::Message(Message::End) => {
                    self.ended[input] = true;
                    if let Some(status) = self.watermarks.on_end(input) {
                        self.ready.push_back(Event::Watermark(status));
                    }
                    let decisions = self.aligner.on_end(input);
                    self.apply(decisions, None);
                }
            }
        }
    }

    /// Channel `channel` delivers `records`: channel state if they are in flight (and
    /// not recorded already, for checkpoint `recorded`).
    fn delivered(
        &mut self,
        channel: usize,
        records: Vec<KeyedRecord>,
        recorded: Option<CheckpointId>,
    ) -> Event {
        let in_flight = self.aligner.in_flight(channel);
        if let Some(id) = in_flight.filter(|id| Some(*id) != recorded) {
            self.record(id, channel, records.iter().cloned());
        }
        self.last = Some((channel, in_flight.or(recorded)));
        Event::Batch(records, self.channels[channel].input)
    }

    fn has_overtaking(&self) -> bool {
        self.channels.iter().any(|c| c.receiver.has_overtaking())
    }

    /// `input` delivered `barrier`; `jumped` is the copy of the records it overtook, if
    /// it overtook.
    fn on_barrier(
        &mut self,
        input: usize,
        barrier: Barrier,
        arrival: Arrival,
        jumped: Option<Vec<KeyedRecord>>,
    ) {
        if self.barrier.is_none_or(|(b, _)| b.id < barrier.id) {
            self.barrier = Some((barrier, Instant::now()));
        }
        let decisions = self.aligner.on_barrier(input, barrier.id, arrival);
        self.apply(decisions, jumped.map(|j| (barrier.id, input, j)));
    }

    /// Carries out the aligner's decisions; `jumped` (checkpoint, channel, records) joins
    /// that checkpoint's channel state before it is complete.
    fn apply(
        &mut self,
        decisions: Vec<Decision>,
        mut jumped: Option<(CheckpointId, usize, Vec<KeyedRecord>)>,
    ) {
        let mut decisions = VecDeque::from(decisions);
        while let Some(decision) = decisions.pop_front() {
            match decision {
                Decision::Snapshot { id, unaligned } => {
                    let (barrier, first) = self.barrier.expect("a barrier arrived");
                    debug_assert_eq!(barrier.id, id);
                    self.ready.push_back(Event::Checkpoint(Snapshot {
                        barrier,
                        unaligned,
                        alignment: first.elapsed(),
                    }));
                    if unaligned {
                        self.recording = Some((id, vec![Vec::new(); self.channels.len()]));
                        decisions.extend(self.overtake_queued(id));
                    }
                }
                Decision::ChannelStateComplete(id) => {
                    if let Some((id, input, records)) = jumped.take() {
                        self.record_jumped(id, input, records);
                    }
                    if let Some((recorded, channels)) = self.recording.take() {
                        debug_assert_eq!(recorded, id);
                        let state = self.channel_state(channels);
                        self.ready.push_back(Event::ChannelState(id, state));
                    }
                }
                // A newer barrier overtook it: it never completes here, and the
                // coordinator times it out.
                Decision::Abandon(id) => {
                    if self.recording.as_ref().is_some_and(|(r, _)| *r == id) {
                        self.recording = None;
                    }
                }
            }
        }
        if let Some((id, input, records)) = jumped {
            self.record_jumped(id, input, records);
        }
    }

    /// Unaligned snapshot `id` is taken: every in-band barrier `id` still queued on a
    /// channel overtakes the records before it, which join the channel state.
    fn overtake_queued(&mut self, id: CheckpointId) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for input in 0..self.channels.len() {
            if self.aligner.in_flight(input) != Some(id) {
                continue;
            }
            if let Some(jumped) = self.channels[input].receiver.overtake(id) {
                self.record_jumped(id, input, jumped);
                decisions.extend(self.aligner.on_barrier(input, id, Arrival::Overtaking));
            }
        }
        decisions
    }

    /// Adds `jumped`, the records a barrier `id` overtook on channel `input`, to its
    /// channel state: after the part of a batch from that channel given back, which was
    /// before them.
    fn record_jumped(&mut self, id: CheckpointId, input: usize, jumped: Vec<KeyedRecord>) {
        let rest = self.given_back.as_ref();
        if let Some(rest) = rest.filter(|r| r.channel == input && r.recorded != Some(id)) {
            let records = rest.records.clone();
            self.record(id, input, records);
        }
        self.record(id, input, jumped);
    }

    /// Adds `records`, read or jumped on channel `input`, to checkpoint `id`'s channel
    /// state, if it is being recorded.
    fn record(
        &mut self,
        id: CheckpointId,
        input: usize,
        records: impl IntoIterator<Item = KeyedRecord>,
    ) {
        if let Some((recording, channels)) = &mut self.recording
            && *recording == id
        {
            channels[input].extend(records);
        }
    }

    fn channel_state(&self, recorded: Vec<Vec<KeyedRecord>>) -> ChannelState {
        let channels = recorded
            .into_iter()
            .zip(&self.channels)
            .filter(|(records, _)| !records.is_empty())
            .map(|(records, channel)| InFlight {
                input: channel.input,
                producer: channel.producer,
                records,
            })
            .collect();
        ChannelState { channels }
    }

    /// The next message of a readable channel: an overtaking barrier first, else the
    /// channels taking turns; none if none has one queued.
    fn receive(&mut self) -> Result<Option<(usize, Received)>, Stop> {
        let n = self.channels.len();
        for input in 0..n {
            if !self.ended[input] && self.channels[input].receiver.has_overtaking() {
                let received = self.channels[input].receiver.try_recv();
                if let Some(received) = received.map_err(|_| Stop::Disconnected)? {
                    return Ok(Some((input, received)));
                }
            }
        }
        for k in 0..n {
            let input = (self.turn + k) % n;
            if self.ended[input] || self.aligner.is_blocked(input) {
                continue;
            }
            let received = self.channels[input]
                .receiver
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::channel::{Sender, channel};
    use crate::state::KeyGroup;

    fn records(from: u64, n: u64) -> Vec<KeyedRecord> {
        (from..from + n)
            .map(|i| KeyedRecord {
                key: Default::default(),
                key_group: KeyGroup(0),
                payload: i.to_string().into_bytes(),
                timestamp: None,
                origin: None,
            })
            .collect()
    }

    fn numbers(records: &[KeyedRecord]) -> Vec<u64> {
        let text = |r: &KeyedRecord| String::from_utf8(r.payload.clone()).unwrap();
        records.iter().map(|r| text(r).parse().unwrap()).collect()
    }

    /// A task reading `n` channels (input i from producer i), exactly-once.
    fn task(n: usize) -> (Inputs, Vec<Sender>) {
        let bell = Arc::new(Bell::default());
        let (senders, channels) = (0..n)
            .map(|i| {
                let (tx, rx) = channel(16, Arc::new(Bell::default()), Arc::clone(&bell));
                let channel = InputChannel {
                    receiver: rx,
                    input: i as u32,
                    producer: i as u32,
                };
                (tx, channel)
            })
            .unzip();
        (Inputs::new(channels, Mode::ExactlyOnce, bell), senders)
    }

    fn next(inputs: &mut Inputs) -> Event {
        inputs.next().unwrap().expect("an event")
    }

    fn batch(inputs: &mut Inputs) -> Vec<u64> {
        match next(inputs) {
            Event::Batch(records, _) => numbers(&records),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    fn unaligned(id: u64) -> Barrier {
        Barrier {
            id: CheckpointId(id),
            unaligned_at: Some(Instant::now()),
        }
    }

    #[test]
    fn an_overtaking_barrier_snapshots_at_once_and_records_what_is_in_flight() {
        let (mut inputs, tx) = task(2);
        tx[0].try_send(Message::Batch(records(0, 2))).unwrap();
        tx[1].try_send(Message::Batch(records(10, 2))).unwrap();
        tx[0].send_overtaking(unaligned(1)).unwrap();
        match next(&mut inputs) {
            Event::Checkpoint(snapshot) => {
                assert!(snapshot.unaligned);
                assert_eq!(snapshot.barrier.id, CheckpointId(1));
            }
            other => panic!("the barrier comes first, got {other:?}"),
        }
        // Both queued batches are processed after the snapshot; input 1's barrier is still
        // to come, so what it delivers is recorded as it is read.
        let mut read = [batch(&mut inputs), batch(&mut inputs)];
        read.sort();
        assert_eq!(read, [vec![0, 1], vec![10, 11]]);
        tx[1].try_send(Message::Batch(records(12, 1))).unwrap();
        assert_eq!(batch(&mut inputs), [12]);
        tx[1].force_send(Message::Barrier(unaligned(1))).unwrap();
        tx[1].try_send(Message::Batch(records(13, 1))).unwrap();
        match next(&mut inputs) {
            Event::ChannelState(id, state) => {
                assert_eq!(id, CheckpointId(1));
                let by_input: Vec<(u32, Vec<u64>)> = state
                    .channels
                    .iter()
                    .map(|c| (c.input, numbers(&c.records)))
                    .collect();
                assert_eq!(by_input, [(0, vec![0, 1]), (1, vec![10, 11, 12])]);
            }
            other => panic!("expected the channel state, got {other:?}"),
        }
        assert_eq!(batch(&mut inputs), [13], "after its barrier: not recorded");
    }

    #[test]
    fn an_aligned_barrier_stays_aligned_within_its_timeout() {
        let (mut inputs, tx) = task(2);
        for sender in &tx {
            sender
                .force_send(Message::Barrier(barrier_in(4, 10_000)))
                .unwrap();
        }
        match next(&mut inputs) {
            Event::Checkpoint(snapshot) => assert!(!snapshot.unaligned),
            other => panic!("expected the snapshot, got {other:?}"),
        }
    }

    #[test]
    fn an_aligned_barrier_that_times_out_overtakes_the_backlog_still_ahead_of_it() {
        let (mut inputs, tx) = task(2);
        // Its aligned timeout is already over when it arrives (no test waits on a clock).
        let due = Barrier {
            id: CheckpointId(5),
            unaligned_at: Some(Instant::now()),
        };
        tx[0].force_send(Message::Barrier(due)).unwrap();
        tx[0].try_send(Message::Batch(records(0, 1))).unwrap();
        tx[1].try_send(Message::Batch(records(10, 2))).unwrap();
        tx[1].try_send(Message::Batch(records(12, 1))).unwrap();
        tx[1].force_send(Message::Barrier(due)).unwrap();
        // Input 0 delivers the barrier and would block; the timeout makes it unaligned.
        match next(&mut inputs) {
            Event::Checkpoint(snapshot) => assert!(snapshot.unaligned, "the timeout passed"),
            other => panic!("expected the snapshot, got {other:?}"),
        }
        match next(&mut inputs) {
            Event::ChannelState(id, state) => {
                assert_eq!(id, CheckpointId(5));
                assert_eq!(state.channels.len(), 1);
                assert_eq!(state.channels[0].input, 1);
                assert_eq!(numbers(&state.channels[0].records), [10, 11, 12]);
            }
            other => panic!("expected the channel state, got {other:?}"),
        }
        let mut rest = [batch(&mut inputs), batch(&mut inputs), batch(&mut inputs)];
        rest.sort();
        assert_eq!(
            rest,
            [vec![0], vec![10, 11], vec![12]],
            "input 0 is unblocked, and the jumped batches are still processed"
        );
    }

    #[test]
    fn the_rest_of_a_batch_given_back_for_a_barrier_is_channel_state_ahead_of_the_queue() {
        let (mut inputs, tx) = task(1);
        tx[0].try_send(Message::Batch(records(0, 4))).unwrap();
        tx[0].try_send(Message::Batch(records(4, 2))).unwrap();
        assert_eq!(batch(&mut inputs), [0, 1, 2, 3]);
        tx[0].send_overtaking(unaligned(1)).unwrap();
        assert!(inputs.has_priority());
        // The task processed records 0 and 1, then stopped for the barrier.
        inputs.give_back(records(2, 2), 0);
        assert!(matches!(next(&mut inputs), Event::Checkpoint(s) if s.unaligned));
        match next(&mut inputs) {
            Event::ChannelState(_, state) => {
                assert_eq!(numbers(&state.channels[0].records), [2, 3, 4, 5]);
            }
            other => panic!("expected the channel state, got {other:?}"),
        }
        assert_eq!(batch(&mut inputs), [2, 3], "the rest comes first");
        assert_eq!(batch(&mut inputs), [4, 5]);
    }

    #[test]
    fn a_batch_recorded_in_flight_and_partly_given_back_is_recorded_once() {
        let (mut inputs, tx) = task(2);
        tx[0].send_overtaking(unaligned(1)).unwrap();
        assert!(matches!(next(&mut inputs), Event::Checkpoint(s) if s.unaligned));
        tx[1].try_send(Message::Batch(records(10, 4))).unwrap();
        assert_eq!(batch(&mut inputs), [10, 11, 12, 13]);
        inputs.give_back(records(12, 2), 1);
        assert_eq!(batch(&mut inputs), [12, 13]);
        tx[1].force_send(Message::Barrier(unaligned(1))).unwrap();
        match next(&mut inputs) {
            Event::ChannelState(_, state) => {
                assert_eq!(numbers(&state.channels[0].records), [10, 11, 12, 13]);
            }
            other => panic!("expected the channel state, got {other:?}"),
        }
    }

    #[test]
    fn a_task_forwards_the_slowest_of_its_inputs_watermarks() {
        use crate::dataflow::watermark::Status;
        let (mut inputs, tx) = task(2);
        tx[0]
            .force_send(Message::Watermark(Status::At(100)))
            .unwrap();
        tx[1]
            .force_send(Message::Watermark(Status::At(50)))
            .unwrap();
        assert!(matches!(
            next(&mut inputs),
            Event::Watermark(Status::At(50))
        ));
        tx[1].force_send(Message::End).unwrap();
        assert!(matches!(
            next(&mut inputs),
            Event::Watermark(Status::At(100))
        ));
    }

    #[test]
    fn restored_channel_state_is_replayed_before_anything_new() {
        let (inputs, tx) = task(1);
        tx[0].try_send(Message::Batch(records(100, 1))).unwrap();
        let restored = ChannelState {
            channels: vec![InFlight {
                input: 0,
                producer: 3,
                records: records(0, BATCH_SIZE as u64 + 1),
            }],
        };
        let mut inputs = inputs.with_replay(restored);
        assert_eq!(batch(&mut inputs).len(), BATCH_SIZE);
        assert_eq!(batch(&mut inputs), [BATCH_SIZE as u64]);
        assert_eq!(batch(&mut inputs), [100]);
    }

    fn barrier_in(id: u64, ms: u64) -> Barrier {
        Barrier {
            id: CheckpointId(id),
            unaligned_at: Some(Instant::now() + Duration::from_millis(ms)),
        }
    }
}
