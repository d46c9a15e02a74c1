//! Barrier alignment (seed 003, "Barriers" and "Unaligned Checkpointing"): the pure
//! decision of when a task with several input channels snapshots its state, which inputs
//! it must stop reading, and which of the records it reads afterwards are a checkpoint's
//! channel state.
//!
//! Invariants: in exactly-once mode every snapshot *n*, together with its channel state,
//! holds exactly the records before barrier *n* on every input. An aligned snapshot is
//! taken when every input has delivered *n* (or ended): an input that delivered *n* is
//! blocked until then, and there is no channel state. An unaligned snapshot is taken at
//! the first barrier *n* that overtook the records queued before it (or when the aligned
//! timeout fires): nothing is blocked, and until an input delivers *n* every record read
//! from it is channel state of *n* (the records the overtaking barrier jumped are copied
//! by the channel, not counted here). In at-least-once mode no input is ever blocked;
//! the snapshot is taken when the last input delivers *n*.

use crate::checkpoint::CheckpointId;
use crate::job::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Delivering records; has not delivered the pending barrier.
    Open,
    /// Delivered the pending barrier.
    Arrived,
    /// Has no more records or barriers.
    Ended,
}

/// The checkpoint a task is taking part in.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: CheckpointId,
    /// Set once its unaligned snapshot is taken (its channel state is being recorded).
    unaligned: bool,
}

/// Alignment state of one task.
#[derive(Debug, Clone)]
pub struct Aligner {
    mode: Mode,
    inputs: Vec<Input>,
    pending: Option<Pending>,
}

/// How a barrier reached the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Behind every record queued before it.
    InBand,
    /// Ahead of the records queued before it on its channel (an unaligned barrier): the
    /// channel copies those records as channel state.
    Overtaking,
}

/// What a task does after telling the aligner about a barrier, an end of input or a
/// timeout (no decision: keep going).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Snapshot now, then forward the barrier: aligned (every input delivered it or
    /// ended; no channel state) or unaligned (forward it ahead of queued output; the
    /// channel state follows with [`Decision::ChannelStateComplete`]).
    Snapshot {
        /// The checkpoint.
        id: CheckpointId,
        /// Whether the snapshot is unaligned.
        unaligned: bool,
    },
    /// Every input delivered the barrier of this unaligned snapshot (or ended): its
    /// channel state is complete.
    ChannelStateComplete(CheckpointId),
    /// A newer barrier overtook this pending one: it will not complete here; the
    /// coordinator times it out.
    Abandon(CheckpointId),
}

impl Aligner {
    /// An aligner for `inputs` channels.
    pub fn new(inputs: usize, mode: Mode) -> Aligner {
        Aligner {
            mode,
            inputs: vec![Input::Open; inputs],
            pending: None,
        }
    }

    /// Whether the task must not read from `input` now.
    pub fn is_blocked(&self, input: usize) -> bool {
        self.mode == Mode::ExactlyOnce
            && self.inputs[input] == Input::Arrived
            && !self.pending.is_some_and(|p| p.unaligned)
    }

    /// The checkpoint whose channel state a record read from `input` now belongs to:
    /// the pending unaligned one, until `input` delivers its barrier.
    pub fn in_flight(&self, input: usize) -> Option<CheckpointId> {
        let pending = self.pending.filter(|p| p.unaligned)?;
        (self.inputs[input] == Input::Open).then_some(pending.id)
    }

    /// The checkpoint the task is aligning (pending, its snapshot not taken yet).
    pub fn aligning(&self) -> Option<CheckpointId> {
        self.pending.filter(|p| !p.unaligned).map(|p| p.id)
    }

    /// Whether every input has ended.
    pub fn finished(&self) -> bool {
        self.inputs.iter().all(|i| *i == Input::Ended)
    }

    /// `input` delivered barrier `id`, arriving as `arrival`. Returns what to do; a stale
    /// barrier (older than the one pending) is ignored.
    pub fn on_barrier(
        &mut self,
        input: usize,
        id: CheckpointId,
        arrival: Arrival,
    ) -> Vec<Decision> {
        let mut decisions = Vec::new();
        match self.pending {
            Some(pending) if id < pending.id => return decisions,
            Some(pending) if id > pending.id => {
                decisions.push(Decision::Abandon(pending.id));
                self.reset();
                self.pending = Some(Pending {
                    id,
                    unaligned: false,
                });
            }
            Some(_) => {}
            None => {
                self.pending = Some(Pending {
                    id,
                    unaligned: false,
                })
            }
        }
        if self.inputs[input] == Input::Open {
            self.inputs[input] = Input::Arrived;
        }
        if arrival == Arrival::Overtaking && self.mode == Mode::ExactlyOnce {
            decisions.extend(self.go_unaligned());
        }
        decisions.extend(self.complete());
        decisions
    }

    /// `input` ended. An ended input counts as having delivered every barrier.
    pub fn on_end(&mut self, input: usize) -> Vec<Decision> {
        self.inputs[input] = Input::Ended;
        self.complete().into_iter().collect()
    }

    /// Checkpoint `id`'s aligned timeout passed: if the task is still aligning it, it
    /// snapshots unaligned now (the channels overtake the barriers still queued).
    pub fn on_timeout(&mut self, id: CheckpointId) -> Vec<Decision> {
        if self.mode != Mode::ExactlyOnce || self.pending.is_none_or(|p| p.id != id) {
            return Vec::new();
        }
        let mut decisions: Vec<Decision> = self.go_unaligned().into_iter().collect();
        decisions.extend(self.complete());
        decisions
    }

    /// Takes the pending checkpoint's unaligned snapshot, unless it is taken.
    fn go_unaligned(&mut self) -> Option<Decision> {
        let pending = self.pending.as_mut()?;
        if pending.unaligned {
            return None;
        }
        pending.unaligned = true;
        Some(Decision::Snapshot {
            id: pending.id,
            unaligned: true,
        })
    }

    /// Completes the pending checkpoint if every input has arrived or ended: its aligned
    /// snapshot, or its unaligned snapshot's channel state.
    fn complete(&mut self) -> Option<Decision> {
        let pending = self.pending?;
        if self.inputs.contains(&Input::Open) {
            return None;
        }
        self.reset();
        Some(match pending.unaligned {
            true => Decision::ChannelStateComplete(pending.id),
            false => Decision::Snapshot {
                id: pending.id,
                unaligned: false,
            },
        })
    }

    fn reset(&mut self) {
        self.pending = None;
        for input in &mut self.inputs {
            if *input == Input::Arrived {
                *input = Input::Open;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aligned(id: u64) -> Decision {
        Decision::Snapshot {
            id: CheckpointId(id),
            unaligned: false,
        }
    }

    /// What one input delivers, in order.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Item {
        Record,
        Barrier(u64),
    }

    /// Runs a task over `inputs` (each ends after its items), choosing at every step
    /// which unblocked input delivers next by `choices`, and checks the invariants.
    /// Returns the snapshots taken, with the records each input had delivered before.
    fn simulate(
        inputs: &[Vec<Item>],
        mode: Mode,
        choices: &mut impl Iterator<Item = usize>,
    ) -> Vec<(u64, Vec<usize>)> {
        let mut aligner = Aligner::new(inputs.len(), mode);
        let mut next = vec![0usize; inputs.len()];
        let mut ended = vec![false; inputs.len()];
        let mut records = vec![0usize; inputs.len()];
        let mut snapshots = Vec::new();
        while !aligner.finished() {
            let ready: Vec<usize> = (0..inputs.len())
                .filter(|&i| !ended[i] && !aligner.is_blocked(i))
                .collect();
            assert!(!ready.is_empty(), "deadlock: every open input is blocked");
            let input = ready[choices.next().unwrap_or(0) % ready.len()];
            let decisions = match inputs[input].get(next[input]) {
                Some(Item::Record) => {
                    records[input] += 1;
                    Vec::new()
                }
                Some(Item::Barrier(id)) => {
                    aligner.on_barrier(input, CheckpointId(*id), Arrival::InBand)
                }
                None => {
                    ended[input] = true;
                    aligner.on_end(input)
                }
            };
            next[input] += 1;
            for decision in decisions {
                if let Decision::Snapshot {
                    id: CheckpointId(id),
                    unaligned: false,
                } = decision
                {
                    snapshots.push((id, records.clone()));
                }
            }
        }
        snapshots
    }

    /// Records before barrier `id` on each input (all of them if the input has none).
    fn records_before(inputs: &[Vec<Item>], id: u64) -> Vec<usize> {
        inputs
            .iter()
            .map(|items| {
                items
                    .iter()
                    .take_while(|item| **item != Item::Barrier(id))
                    .filter(|item| **item == Item::Record)
                    .count()
            })
            .collect()
    }

    /// Every input shape up to a size: records and barriers 1..=2 in order, any mix.
    fn shapes() -> Vec<Vec<Item>> {
        let mut shapes = Vec::new();
        for records in 0..3usize {
            for split in 0..=records {
                for split2 in split..=records {
                    let mut items = vec![Item::Record; split];
                    items.push(Item::Barrier(1));
                    items.extend(vec![Item::Record; split2 - split]);
                    items.push(Item::Barrier(2));
                    items.extend(vec![Item::Record; records - split2]);
                    shapes.push(items);
                }
            }
            // An input that ends without delivering the barriers (it ended earlier).
            shapes.push(vec![Item::Record; records]);
        }
        shapes
    }

    /// Enumerates choice sequences: every interleaving of short runs is reached by
    /// trying each branch at each of the first steps.
    fn choice_sequences(depth: usize, width: usize) -> Vec<Vec<usize>> {
        let mut all = vec![Vec::new()];
        for _ in 0..depth {
            all = all
                .into_iter()
                .flat_map(|prefix| {
                    (0..width).map(move |c| {
                        let mut next = prefix.clone();
                        next.push(c);
                        next
                    })
                })
                .collect();
        }
        all
    }

    #[test]
    fn exactly_once_snapshots_exactly_the_records_before_each_barrier() {
        let shapes = shapes();
        let choices = choice_sequences(6, 3);
        let mut runs = 0;
        for a in &shapes {
            for b in &shapes {
                for c in [None, Some(&shapes[3])] {
                    let mut inputs = vec![a.clone(), b.clone()];
                    inputs.extend(c.cloned());
                    for sequence in &choices {
                        let snapshots =
                            simulate(&inputs, Mode::ExactlyOnce, &mut sequence.iter().copied());
                        let expected: Vec<u64> = [1, 2]
                            .into_iter()
                            .filter(|id| inputs.iter().any(|i| i.contains(&Item::Barrier(*id))))
                            .collect();
                        let taken: Vec<u64> = snapshots.iter().map(|(id, _)| *id).collect();
                        assert_eq!(taken, expected, "inputs {inputs:?} choices {sequence:?}");
                        for (id, records) in &snapshots {
                            assert_eq!(
                                *records,
                                records_before(&inputs, *id),
                                "snapshot {id} of {inputs:?}"
                            );
                        }
                        runs += 1;
                    }
                }
            }
        }
        assert!(runs > 100_000, "{runs} runs");
    }

    /// One step of an unaligned run.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// The task reads the next item of an input.
        Read(usize),
        /// An input's next barrier overtakes the records before it (it is within the
        /// channel's queue, and it overtakes from the start or its timeout fired).
        Overtake(usize),
        /// A checkpoint's aligned timeout fires.
        Timeout(u64),
    }

    /// What an unaligned run took: per snapshot, whether unaligned and the records each
    /// input had delivered; per checkpoint, the channel state counted per input.
    #[derive(Debug, Default)]
    struct Taken {
        snapshots: Vec<(u64, bool, Vec<usize>)>,
        channel: std::collections::BTreeMap<u64, Vec<usize>>,
        complete: Vec<u64>,
        abandoned: Vec<u64>,
    }

    /// Runs an exactly-once task over `inputs`, where the barriers of `overtaking`
    /// checkpoints (and of any checkpoint once its timeout fired, if `timeouts`) may
    /// overtake records when within `window` items, choosing each step by `choices`.
    fn simulate_unaligned(
        inputs: &[Vec<Item>],
        overtaking: &[u64],
        window: usize,
        timeouts: bool,
        choices: &mut impl Iterator<Item = usize>,
    ) -> Taken {
        let n = inputs.len();
        let mut aligner = Aligner::new(n, Mode::ExactlyOnce);
        let (mut pos, mut read, mut ended) = (vec![0usize; n], vec![0usize; n], vec![false; n]);
        let mut overtaken: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut timed_out: Vec<u64> = Vec::new();
        let mut taken = Taken::default();
        // An input's next barrier that has not overtaken yet: (its index, its id).
        let next_barrier = |i: usize, pos: &[usize], overtaken: &[Vec<usize>]| {
            (pos[i]..inputs[i].len()).find_map(|at| match inputs[i][at] {
                Item::Barrier(id) if !overtaken[i].contains(&at) => Some((at, id)),
                _ => None,
            })
        };
        while !aligner.finished() {
            let mut steps = Vec::new();
            for i in 0..n {
                if !ended[i] && !aligner.is_blocked(i) {
                    steps.push(Step::Read(i));
                }
                if let Some((at, id)) = next_barrier(i, &pos, &overtaken) {
                    let may = overtaking.contains(&id) || timed_out.contains(&id);
                    if !ended[i] && may && at - pos[i] < window {
                        steps.push(Step::Overtake(i));
                    }
                }
            }
            if timeouts {
                steps.extend(
                    [1, 2]
                        .into_iter()
                        .filter(|id| !timed_out.contains(id))
                        .map(Step::Timeout),
                );
            }
            assert!(!steps.is_empty(), "deadlock: every open input is blocked");
            let decisions = match steps[choices.next().unwrap_or(0) % steps.len()] {
                Step::Read(i) => {
                    while overtaken[i].contains(&pos[i]) {
                        pos[i] += 1;
                    }
                    let item = inputs[i].get(pos[i]).copied();
                    pos[i] += 1;
                    match item {
                        Some(Item::Record) => {
                            read[i] += 1;
                            if let Some(CheckpointId(id)) = aligner.in_flight(i) {
                                taken.channel.entry(id).or_insert_with(|| vec![0; n])[i] += 1;
                            }
                            Vec::new()
                        }
                        Some(Item::Barrier(id)) => {
                            aligner.on_barrier(i, CheckpointId(id), Arrival::InBand)
                        }
                        None => {
                            ended[i] = true;
                            aligner.on_end(i)
                        }
                    }
                }
                Step::Overtake(i) => {
                    let (at, id) = next_barrier(i, &pos, &overtaken).expect("offered");
                    // The channel copies the records the barrier jumped.
                    let jumped = inputs[i][pos[i]..at]
                        .iter()
                        .enumerate()
                        .filter(|(k, item)| {
                            **item == Item::Record && !overtaken[i].contains(&(pos[i] + k))
                        })
                        .count();
                    taken.channel.entry(id).or_insert_with(|| vec![0; n])[i] += jumped;
                    overtaken[i].push(at);
                    aligner.on_barrier(i, CheckpointId(id), Arrival::Overtaking)
                }
                Step::Timeout(id) => {
                    timed_out.push(id);
                    aligner.on_timeout(CheckpointId(id))
                }
            };
            for decision in decisions {
                match decision {
                    Decision::Snapshot {
                        id: CheckpointId(id),
                        unaligned,
                    } => taken.snapshots.push((id, unaligned, read.clone())),
                    Decision::ChannelStateComplete(CheckpointId(id)) => taken.complete.push(id),
                    Decision::Abandon(CheckpointId(id)) => taken.abandoned.push(id),
                }
            }
        }
        taken
    }

    #[test]
    fn an_unaligned_snapshot_and_its_channel_state_hold_exactly_the_records_before_its_barrier() {
        let shapes = shapes();
        let choices = choice_sequences(5, 3);
        let (mut runs, mut unaligned_snapshots) = (0, 0);
        for a in &shapes {
            for b in &shapes {
                let inputs = vec![a.clone(), b.clone()];
                let barriers: Vec<u64> = [1, 2]
                    .into_iter()
                    .filter(|id| inputs.iter().any(|i| i.contains(&Item::Barrier(*id))))
                    .collect();
                for overtaking in [&[][..], &[1], &[2], &[1, 2]] {
                    for (window, timeouts) in [(1, false), (3, false), (3, true)] {
                        for sequence in &choices {
                            let taken = simulate_unaligned(
                                &inputs,
                                overtaking,
                                window,
                                timeouts,
                                &mut sequence.iter().copied(),
                            );
                            let case = format!(
                                "{inputs:?} overtaking {overtaking:?} window {window} \
                                 timeouts {timeouts} choices {sequence:?}"
                            );
                            let ids: Vec<u64> = taken.snapshots.iter().map(|s| s.0).collect();
                            let mut expected = barriers.clone();
                            expected.retain(|id| !taken.abandoned.contains(id) || ids.contains(id));
                            assert_eq!(ids, expected, "{case}");
                            for (id, unaligned, state) in &taken.snapshots {
                                if taken.abandoned.contains(id) {
                                    continue;
                                }
                                let channel = taken.channel.get(id).cloned().unwrap_or(vec![0; 2]);
                                if *unaligned {
                                    unaligned_snapshots += 1;
                                    assert!(taken.complete.contains(id), "{id} incomplete: {case}");
                                } else {
                                    assert_eq!(channel, [0, 0], "{id} aligned: {case}");
                                    assert!(!taken.complete.contains(id), "{case}");
                                }
                                let held: Vec<usize> =
                                    state.iter().zip(&channel).map(|(s, c)| s + c).collect();
                                assert_eq!(held, records_before(&inputs, *id), "{id}: {case}");
                            }
                            runs += 1;
                        }
                    }
                }
            }
        }
        assert!(runs > 100_000, "{runs} runs");
        assert!(
            unaligned_snapshots > runs / 2,
            "{unaligned_snapshots} of {runs}"
        );
    }

    #[test]
    fn without_overtaking_or_timeout_every_snapshot_is_aligned() {
        for a in shapes() {
            for b in shapes() {
                let inputs = vec![a.clone(), b];
                for sequence in choice_sequences(5, 2) {
                    let taken =
                        simulate_unaligned(&inputs, &[], 3, false, &mut sequence.into_iter());
                    assert!(taken.snapshots.iter().all(|s| !s.1), "{inputs:?}");
                    assert!(taken.channel.is_empty() && taken.complete.is_empty());
                }
            }
        }
    }

    #[test]
    fn the_timeout_switches_an_aligning_task_and_unblocks_its_inputs() {
        let mut aligner = Aligner::new(2, Mode::ExactlyOnce);
        assert_eq!(aligner.on_barrier(0, CheckpointId(1), Arrival::InBand), []);
        assert!(aligner.is_blocked(0));
        assert_eq!(aligner.in_flight(1), None);
        // A timeout of another checkpoint changes nothing.
        assert_eq!(aligner.on_timeout(CheckpointId(2)), []);
        assert_eq!(
            aligner.on_timeout(CheckpointId(1)),
            [Decision::Snapshot {
                id: CheckpointId(1),
                unaligned: true
            }]
        );
        assert!(!aligner.is_blocked(0));
        assert_eq!(
            (aligner.in_flight(0), aligner.in_flight(1)),
            (None, Some(CheckpointId(1)))
        );
        assert_eq!(aligner.on_timeout(CheckpointId(1)), [], "switched once");
        assert_eq!(
            aligner.on_barrier(1, CheckpointId(1), Arrival::InBand),
            [Decision::ChannelStateComplete(CheckpointId(1))]
        );
        assert_eq!(aligner.in_flight(1), None);
    }

    #[test]
    fn at_least_once_never_goes_unaligned() {
        let mut aligner = Aligner::new(2, Mode::AtLeastOnce);
        assert_eq!(
            aligner.on_barrier(0, CheckpointId(1), Arrival::Overtaking),
            []
        );
        assert_eq!(aligner.on_timeout(CheckpointId(1)), []);
        assert_eq!(aligner.in_flight(1), None);
        assert_eq!(
            aligner.on_barrier(1, CheckpointId(1), Arrival::InBand),
            [aligned(1)]
        );
    }

    #[test]
    fn at_least_once_never_blocks_and_still_snapshots_every_barrier() {
        let shapes = shapes();
        for a in &shapes {
            for b in &shapes {
                let inputs = vec![a.clone(), b.clone()];
                for sequence in choice_sequences(6, 2) {
                    let mut aligner = Aligner::new(2, Mode::AtLeastOnce);
                    let _ = aligner.on_barrier(0, CheckpointId(1), Arrival::InBand);
                    assert!(!aligner.is_blocked(0));
                    let snapshots =
                        simulate(&inputs, Mode::AtLeastOnce, &mut sequence.iter().copied());
                    for (id, records) in snapshots {
                        // Each input had delivered at least its records before the barrier.
                        let before = records_before(&inputs, id);
                        assert!(
                            records.iter().zip(&before).all(|(r, b)| r >= b),
                            "{inputs:?} {sequence:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_stale_barrier_is_ignored_and_a_newer_one_abandons_the_pending() {
        let mut aligner = Aligner::new(2, Mode::AtLeastOnce);
        assert_eq!(aligner.on_barrier(0, CheckpointId(3), Arrival::InBand), []);
        assert_eq!(
            aligner.on_barrier(0, CheckpointId(4), Arrival::InBand),
            [Decision::Abandon(CheckpointId(3))]
        );
        assert_eq!(aligner.on_barrier(1, CheckpointId(3), Arrival::InBand), []);
        assert_eq!(
            aligner.on_barrier(1, CheckpointId(4), Arrival::InBand),
            [aligned(4)]
        );
    }

    #[test]
    fn one_input_snapshots_at_once() {
        let mut aligner = Aligner::new(1, Mode::ExactlyOnce);
        assert_eq!(
            aligner.on_barrier(0, CheckpointId(1), Arrival::InBand),
            [aligned(1)]
        );
        assert!(!aligner.is_blocked(0));
    }

    #[test]
    fn an_input_ending_while_another_is_aligned_completes_the_checkpoint() {
        let mut aligner = Aligner::new(2, Mode::ExactlyOnce);
        assert_eq!(aligner.on_barrier(0, CheckpointId(1), Arrival::InBand), []);
        assert!(aligner.is_blocked(0));
        assert_eq!(aligner.on_end(1), [aligned(1)]);
        assert!(!aligner.is_blocked(0));
        assert!(!aligner.finished());
        assert_eq!(
            aligner.on_barrier(0, CheckpointId(2), Arrival::InBand),
            [aligned(2)]
        );
        assert_eq!(aligner.on_end(0), []);
        assert!(aligner.finished());
    }
}
