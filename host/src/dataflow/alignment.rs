//! Barrier alignment (seed 003, "Barriers"): the pure decision of when a task with
//! several input channels snapshots its state, and which inputs it must stop reading.
//!
//! Invariant: in exactly-once mode, a task never reads a record that follows barrier
//! *n* on one input before it has taken snapshot *n*: an input that delivered barrier
//! *n* is blocked until every input has delivered it (or ended). In at-least-once mode
//! no input is ever blocked; the snapshot is taken when the last input delivers *n*.

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

/// Alignment state of one task.
#[derive(Debug, Clone)]
pub struct Aligner {
    mode: Mode,
    inputs: Vec<Input>,
    pending: Option<CheckpointId>,
}

/// What a task does after telling the aligner about a barrier or an end of input (no
/// decision: keep going).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Every input delivered this barrier (or ended): snapshot, then forward it.
    Snapshot(CheckpointId),
    /// A newer barrier overtook this pending one (at-least-once only): it will not
    /// complete here; the coordinator times it out.
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
        self.mode == Mode::ExactlyOnce && self.inputs[input] == Input::Arrived
    }

    /// Whether every input has ended.
    pub fn finished(&self) -> bool {
        self.inputs.iter().all(|i| *i == Input::Ended)
    }

    /// `input` delivered barrier `id`. Returns what to do; a stale barrier (older than
    /// the one pending) is ignored.
    pub fn on_barrier(&mut self, input: usize, id: CheckpointId) -> Vec<Decision> {
        let mut decisions = Vec::new();
        match self.pending {
            Some(pending) if id < pending => return decisions,
            Some(pending) if id > pending => {
                decisions.push(Decision::Abandon(pending));
                self.reset();
                self.pending = Some(id);
            }
            Some(_) => {}
            None => self.pending = Some(id),
        }
        if self.inputs[input] == Input::Open {
            self.inputs[input] = Input::Arrived;
        }
        decisions.extend(self.complete());
        decisions
    }

    /// `input` ended. An ended input counts as having delivered every barrier.
    pub fn on_end(&mut self, input: usize) -> Vec<Decision> {
        self.inputs[input] = Input::Ended;
        self.complete().into_iter().collect()
    }

    /// Takes the snapshot decision if every input has arrived or ended.
    fn complete(&mut self) -> Option<Decision> {
        let id = self.pending?;
        if self.inputs.contains(&Input::Open) {
            return None;
        }
        self.reset();
        Some(Decision::Snapshot(id))
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
                Some(Item::Barrier(id)) => aligner.on_barrier(input, CheckpointId(*id)),
                None => {
                    ended[input] = true;
                    aligner.on_end(input)
                }
            };
            next[input] += 1;
            for decision in decisions {
                if let Decision::Snapshot(CheckpointId(id)) = decision {
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

    #[test]
    fn at_least_once_never_blocks_and_still_snapshots_every_barrier() {
        let shapes = shapes();
        for a in &shapes {
            for b in &shapes {
                let inputs = vec![a.clone(), b.clone()];
                for sequence in choice_sequences(6, 2) {
                    let mut aligner = Aligner::new(2, Mode::AtLeastOnce);
                    let _ = aligner.on_barrier(0, CheckpointId(1));
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
        assert_eq!(aligner.on_barrier(0, CheckpointId(3)), []);
        assert_eq!(
            aligner.on_barrier(0, CheckpointId(4)),
            [Decision::Abandon(CheckpointId(3))]
        );
        assert_eq!(aligner.on_barrier(1, CheckpointId(3)), []);
        assert_eq!(
            aligner.on_barrier(1, CheckpointId(4)),
            [Decision::Snapshot(CheckpointId(4))]
        );
    }

    #[test]
    fn one_input_snapshots_at_once() {
        let mut aligner = Aligner::new(1, Mode::ExactlyOnce);
        assert_eq!(
            aligner.on_barrier(0, CheckpointId(1)),
            [Decision::Snapshot(CheckpointId(1))]
        );
        assert!(!aligner.is_blocked(0));
    }

    #[test]
    fn an_input_ending_while_another_is_aligned_completes_the_checkpoint() {
        let mut aligner = Aligner::new(2, Mode::ExactlyOnce);
        assert_eq!(aligner.on_barrier(0, CheckpointId(1)), []);
        assert!(aligner.is_blocked(0));
        assert_eq!(aligner.on_end(1), [Decision::Snapshot(CheckpointId(1))]);
        assert!(!aligner.is_blocked(0));
        assert!(!aligner.finished());
        assert_eq!(
            aligner.on_barrier(0, CheckpointId(2)),
            [Decision::Snapshot(CheckpointId(2))]
        );
        assert_eq!(aligner.on_end(0), []);
        assert!(aligner.finished());
    }
}
