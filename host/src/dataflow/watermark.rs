//! Watermarks (issue 16): the pure decisions of what event time a source and a task have
//! reached. A watermark *w* says no more records with a time ≤ *w* are expected.
//!
//! At a source, per split, with bounded out-of-orderness *d*: *w* = (the largest time
//! seen) − *d* − 1, as Flink's `BoundedOutOfOrdernessWatermarks`; the source's watermark
//! is the minimum over its active splits: one that has started and not finished (a split
//! a subtask has not begun to read does not hold it back: a file source reads its splits
//! one after another), and that has had a record within the idle timeout.
//! In a task, the watermark is the minimum over its inputs that are not idle, an ended
//! input counting as +∞; the task is idle when every input that has not ended is.
//!
//! Invariants: a watermark never goes back (a source's or a task's output is monotonic,
//! whatever its inputs do); it is +∞ once every split or input has ended.

use std::time::{Duration, Instant};

/// What a source or a task says about its event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Records up to this time are done (`i64::MAX`: all of them).
    At(i64),
    /// Nothing to say: every input is idle (downstream does not wait for it).
    Idle,
}

/// The end of time: every record has been seen.
pub const END: i64 = i64::MAX;

#[derive(Debug, Clone, Copy)]
struct Split {
    /// The largest event time seen, if any.
    max: Option<i64>,
    last_record: Instant,
    started: bool,
    finished: bool,
}

/// A source subtask's watermark over its splits.
#[derive(Debug, Clone)]
pub struct SourceWatermarks {
    out_of_orderness: i64,
    idle_timeout: Option<Duration>,
    splits: Vec<Split>,
    emitted: Option<i64>,
    /// Whether it last said `Idle`.
    idle: bool,
}

impl SourceWatermarks {
    /// Watermarks for `splits` splits with `out_of_orderness` milliseconds of disorder; a
    /// split without records for `idle_timeout` is idle. `now` starts every split's clock.
    pub fn new(
        splits: usize,
        out_of_orderness: Duration,
        idle_timeout: Option<Duration>,
        now: Instant,
    ) -> SourceWatermarks {
        let split = Split {
            max: None,
            last_record: now,
            started: false,
            finished: false,
        };
        SourceWatermarks {
            out_of_orderness: i64::try_from(out_of_orderness.as_millis()).unwrap_or(i64::MAX),
            idle_timeout,
            splits: vec![split; splits],
            emitted: None,
            idle: false,
        }
    }

    /// The subtask begins to read split `split` at `now`: from now on it holds the
    /// watermark back until it has records (or is idle).
    /// A split added while reading (a partition found on a Kafka topic), started now;
    /// returns its number.
    pub fn add_split(&mut self, now: Instant) -> usize {
        self.splits.push(Split {
            max: None,
            last_record: now,
            started: true,
            finished: false,
        });
        self.splits.len() - 1
    }

    pub fn on_started(&mut self, split: usize, now: Instant) {
        let split = &mut self.splits[split];
        split.started = true;
        split.last_record = now;
    }

    /// Split `split` read a record with event time `time` at `now`.
    pub fn on_record(&mut self, split: usize, time: i64, now: Instant) {
        let split = &mut self.splits[split];
        split.started = true;
        split.max = Some(split.max.map_or(time, |m| m.max(time)));
        split.last_record = now;
    }

    /// Split `split` has been read to its end.
    pub fn on_finished(&mut self, split: usize) {
        self.splits[split].finished = true;
    }

    /// The watermark to send at `now`, if it moved on (or the source went idle) since
    /// the last one sent.
    pub fn poll(&mut self, now: Instant) -> Option<Status> {
        if self.splits.iter().all(|s| s.finished) {
            return self.advance(END);
        }
        let mut active = self
            .splits
            .iter()
            .filter(|s| s.started && !s.finished)
            .peekable();
        // Nothing being read: nothing new to say.
        active.peek()?;
        let idle = |s: &Split| {
            self.idle_timeout
                .is_some_and(|t| now.duration_since(s.last_record) >= t)
        };
        let mut lowest = None::<i64>;
        let mut all_idle = true;
        for split in active.filter(|s| !idle(s)) {
            all_idle = false;
            // A split with no record yet holds the watermark where it is.
            let w = split.max.map_or(i64::MIN, |m| {
                m.saturating_sub(self.out_of_orderness).saturating_sub(1)
            });
            lowest = Some(lowest.map_or(w, |l| l.min(w)));
        }
        match lowest {
            _ if all_idle => {
                if self.idle || self.emitted == Some(END) {
                    return None;
                }
                self.idle = true;
                Some(Status::Idle)
            }
            Some(w) => self.advance(w),
            None => None,
        }
    }

    /// Moves on to `w` if it is later; a source that was idle says it is active again
    /// (at the watermark it had, if `w` is not later).
    fn advance(&mut self, w: i64) -> Option<Status> {
        let was_idle = std::mem::replace(&mut self.idle, false);
        match self.emitted {
            Some(e) if e >= w => was_idle.then_some(Status::At(e)),
            _ if w == i64::MIN => None,
            _ => {
                self.emitted = Some(w);
                Some(Status::At(w))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    At(i64),
    Idle(i64),
    Ended,
}

/// A task's watermark over its input channels.
#[derive(Debug, Clone)]
pub struct TaskWatermarks {
    inputs: Vec<Input>,
    /// The last watermark it forwarded (`i64::MIN`: none yet).
    watermark: i64,
    /// Whether it last forwarded `Idle`.
    idle: bool,
}

impl TaskWatermarks {
    /// Watermarks over `inputs` channels, none of which has said anything yet.
    pub fn new(inputs: usize) -> TaskWatermarks {
        TaskWatermarks {
            inputs: vec![Input::At(i64::MIN); inputs],
            watermark: i64::MIN,
            idle: false,
        }
    }

    /// `input` says `status`. Returns what the task forwards, if that changed.
    pub fn on_status(&mut self, input: usize, status: Status) -> Option<Status> {
        let known = match self.inputs[input] {
            Input::At(w) | Input::Idle(w) => w,
            Input::Ended => return None,
        };
        self.inputs[input] = match status {
            Status::At(w) => Input::At(w.max(known)),
            Status::Idle => Input::Idle(known),
        };
        self.update()
    }

    /// `input` ended: it counts as +∞ from now on.
    pub fn on_end(&mut self, input: usize) -> Option<Status> {
        self.inputs[input] = Input::Ended;
        self.update()
    }

    /// The task's current watermark (`i64::MIN` before any).
    pub fn current(&self) -> i64 {
        self.watermark
    }

    fn update(&mut self) -> Option<Status> {
        let mut open = self
            .inputs
            .iter()
            .filter(|i| **i != Input::Ended)
            .peekable();
        let lowest = match open.peek() {
            None => Some(END),
            Some(_) => open
                .filter_map(|i| match i {
                    Input::At(w) => Some(*w),
                    _ => None,
                })
                .min(),
        };
        match lowest {
            // Every open input is idle: say so once (nothing to say after the end).
            None if self.idle || self.watermark == END => None,
            None => {
                self.idle = true;
                Some(Status::Idle)
            }
            Some(w) if w > self.watermark || (self.idle && w > i64::MIN) => {
                self.idle = false;
                self.watermark = self.watermark.max(w);
                Some(Status::At(self.watermark))
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_source_trails_its_slowest_active_split_by_the_disorder() {
        let t0 = Instant::now();
        let mut w = SourceWatermarks::new(3, ms(100), None, t0);
        w.on_record(0, 1_000, t0);
        w.on_started(1, t0);
        assert_eq!(w.poll(t0), None, "split 1 has started, with no record yet");
        w.on_record(1, 5_000, t0);
        assert_eq!(w.poll(t0), Some(Status::At(899)));
        w.on_record(0, 700, t0);
        assert_eq!(w.poll(t0), None, "a late record does not move it back");
        w.on_record(0, 2_000, t0);
        assert_eq!(w.poll(t0), Some(Status::At(1_899)));
        w.on_finished(0);
        assert_eq!(
            w.poll(t0),
            Some(Status::At(4_899)),
            "a finished split stops holding"
        );
        w.on_finished(1);
        assert_eq!(w.poll(t0), None, "split 2 has not started: nothing to say");
        w.on_finished(2);
        assert_eq!(w.poll(t0), Some(Status::At(END)));
        assert_eq!(w.poll(t0), None);
    }

    #[test]
    fn an_idle_split_stops_holding_the_source_back() {
        let t0 = Instant::now();
        let mut w = SourceWatermarks::new(2, ms(0), Some(ms(50)), t0);
        w.on_record(0, 10, t0);
        w.on_record(1, 1_000, t0);
        assert_eq!(w.poll(t0), Some(Status::At(9)));
        w.on_record(1, 2_000, t0 + ms(60));
        assert_eq!(
            w.poll(t0 + ms(60)),
            Some(Status::At(1_999)),
            "split 0 is idle"
        );
        assert_eq!(w.poll(t0 + ms(200)), Some(Status::Idle), "both idle");
        w.on_record(0, 20, t0 + ms(210));
        assert_eq!(
            w.poll(t0 + ms(210)),
            Some(Status::At(1_999)),
            "active again, and never back: 19 is below 1999"
        );
        assert_eq!(w.poll(t0 + ms(210)), None);
    }

    #[test]
    fn a_task_holds_at_its_slowest_input_and_ignores_idle_and_ended_ones() {
        let mut w = TaskWatermarks::new(3);
        assert_eq!(
            w.on_status(0, Status::At(100)),
            None,
            "inputs 1, 2 say nothing yet"
        );
        assert_eq!(w.on_status(1, Status::At(50)), None);
        assert_eq!(w.on_status(2, Status::At(70)), Some(Status::At(50)));
        assert_eq!(w.on_status(1, Status::Idle), Some(Status::At(70)));
        // Input 1 is active again, at the 50 it had: the task stays at 70, never back.
        assert_eq!(w.on_status(1, Status::At(10)), None);
        assert_eq!(w.current(), 70);
        assert_eq!(w.on_end(2), None, "input 1 at 50 holds it");
        assert_eq!(w.on_status(1, Status::Idle), Some(Status::At(100)));
        assert_eq!(w.on_status(0, Status::Idle), Some(Status::Idle), "all idle");
        assert_eq!(w.on_end(0), None, "input 1 is still idle");
        assert_eq!(w.on_end(1), Some(Status::At(END)));
    }

    #[test]
    fn watermarks_are_monotonic_over_any_interleaving() {
        // A small exhaustive-ish walk: random statuses on 3 inputs never move the
        // forwarded watermark back, and ending every input reaches the end.
        let mut seed = 0x9e37_79b9_u64;
        for _ in 0..200 {
            let mut w = TaskWatermarks::new(3);
            let mut last = i64::MIN;
            for _ in 0..30 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let input = (seed >> 33) as usize % 3;
                let status = match (seed >> 40) % 4 {
                    0 => Status::Idle,
                    _ => Status::At(((seed >> 20) % 1000) as i64),
                };
                if let Some(Status::At(now)) = w.on_status(input, status) {
                    assert!(now >= last, "{now} after {last}");
                    last = now;
                }
            }
            for input in 0..3 {
                w.on_end(input);
            }
            assert_eq!(w.current(), END);
        }
    }
}
