//! Test guest: the sequence checker. The generator numbers each key's records 0, 1, 2, …;
//! this operator keeps the last number per key in state and raises an alert when one is
//! missing or (exactly-once) repeated. It passes every record on as `{key, seq}`.
//!
//! Fault injection: in attempts below `fail_attempts`, each instance traps at its
//! `n`-th record, `n` drawn from `seed`, the attempt and the subtask — so a job fails
//! exactly `fail_attempts` times at places a seed chooses, then completes. In attempt
//! `fail_open_attempt` (if set, and not 0: after a restore) it traps in `open` instead.
//!
//! Back-pressure: `work` rounds of hashing per record make it as slow as a test needs
//! (guests have no clock to sleep on).
//!
//! Timers: with `timer_after_ms`, each record sets an event-time timer of its key at its
//! time plus that much (one per key and time), and each firing outputs `{key, timer,
//! watermark}`; with `processing_timer_after_ms`, a processing-time timer that far after
//! the wall clock, and each firing outputs `{key, processing_timer, late_ms}` (how long
//! after its time it fired).

use guest_sdk::{Config, Context, Operator, Result, TimeDomain, Timer, ValueState};
use serde::Deserialize;
use serde_json::{Value, json};

const LAST: ValueState<u64> = ValueState::new("last");

/// A generated record.
#[derive(Deserialize)]
pub struct Input {
    key: String,
    seq: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    fail_attempts: u32,
    seed: u64,
    /// Fail somewhere in records `first ..= first + window` of an attempt.
    first: u64,
    window: u64,
    /// Repeats are allowed (at-least-once) and reported as `duplicate`, not alerts.
    at_least_once: bool,
    /// Trap in `open` in this attempt.
    fail_open_attempt: Option<u32>,
    /// Rounds of hashing per record.
    work: u64,
    /// Output each record's event time too, as `time` (null when it has none).
    with_time: bool,
    /// Set an event-time timer this long after each record's time.
    timer_after_ms: Option<i64>,
    /// Set a processing-time timer this long after the wall clock, for each record.
    processing_timer_after_ms: Option<i64>,
}

/// The operator.
#[derive(Default)]
pub struct SequenceCheck {
    at_least_once: bool,
    processed: u64,
    fail_at: Option<u64>,
    work: u64,
    with_time: bool,
    timer_after_ms: Option<i64>,
    processing_timer_after_ms: Option<i64>,
}

impl Operator for SequenceCheck {
    type Input = Input;
    type Output = Value;

    fn open(&mut self, config: &Config) -> Result<()> {
        let settings: Settings = config.parse()?;
        let task = config.task();
        self.at_least_once = settings.at_least_once;
        self.work = settings.work;
        self.with_time = settings.with_time;
        self.timer_after_ms = settings.timer_after_ms;
        self.processing_timer_after_ms = settings.processing_timer_after_ms;
        if settings.fail_open_attempt == Some(task.attempt) {
            panic!("injected failure in open, attempt {}", task.attempt);
        }
        if task.attempt < settings.fail_attempts {
            let draw =
                mix(settings.seed ^ (u64::from(task.attempt) << 32) ^ u64::from(task.subtask));
            self.fail_at = Some(settings.first + draw % (settings.window + 1));
        }
        Ok(())
    }

    fn process(&mut self, input: Input, ctx: &mut Context<Value>) -> Result<()> {
        self.processed += 1;
        if Some(self.processed) == self.fail_at {
            panic!(
                "injected failure at record {} of this attempt",
                self.processed
            );
        }
        let mut hash = input.seq;
        for _ in 0..self.work {
            hash = mix(std::hint::black_box(hash));
        }
        std::hint::black_box(hash);
        let last = LAST.get()?;
        let expected = last.map_or(0, |l| l + 1);
        if input.seq > expected || (input.seq < expected && !self.at_least_once) {
            ctx.emit(json!({"alert": "sequence", "key": input.key, "expected": expected, "got": input.seq}))?;
        } else if input.seq < expected {
            return ctx.emit(json!({"duplicate": input.key, "seq": input.seq}));
        }
        LAST.set(&last.map_or(input.seq, |l| l.max(input.seq)))?;
        if let (Some(after), Some(time)) = (self.timer_after_ms, ctx.timestamp()) {
            ctx.register_event_time_timer(time + after)?;
        }
        if let Some(after) = self.processing_timer_after_ms {
            let at = ctx.current_processing_time() + after;
            ctx.register_processing_time_timer(at)?;
        }
        if self.with_time {
            let time = ctx.timestamp();
            return ctx.emit(json!({"key": input.key, "seq": input.seq, "time": time}));
        }
        ctx.emit(json!({"key": input.key, "seq": input.seq}))
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<Value>) -> Result<()> {
        let key = ctx.key().to_string();
        match timer.domain {
            TimeDomain::Event => {
                let watermark = ctx.current_watermark();
                ctx.emit(json!({"key": key, "timer": timer.timestamp, "watermark": watermark}))
            }
            TimeDomain::Processing => {
                let late = ctx.current_processing_time() - timer.timestamp;
                ctx.emit(json!({"key": key, "processing_timer": timer.timestamp, "late_ms": late}))
            }
        }
    }
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

guest_sdk::export_operator!(SequenceCheck);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::Harness;

    #[test]
    fn gaps_and_repeats_raise_alerts() {
        let mut h = Harness::<SequenceCheck>::new().unwrap();
        assert_eq!(
            h.push("a", json!({"key": "a", "seq": 0})).unwrap(),
            [json!({"key": "a", "seq": 0})]
        );
        let out = h.push("a", json!({"key": "a", "seq": 2})).unwrap();
        assert_eq!(out[0]["alert"], "sequence");
        let out = h.push("a", json!({"key": "a", "seq": 2})).unwrap();
        assert_eq!(
            out[0]["got"], 2,
            "a repeat is an alert in exactly-once mode"
        );
    }

    #[test]
    fn each_record_sets_a_timer_that_fires_once_the_watermark_passes_it() {
        let config = json!({"timer_after_ms": 10});
        let mut h = Harness::<SequenceCheck>::with_config(config).unwrap();
        h.push_at("a", 100, json!({"key": "a", "seq": 0})).unwrap();
        h.push_at("a", 95, json!({"key": "a", "seq": 1})).unwrap();
        h.push_at("b", 100, json!({"key": "b", "seq": 0})).unwrap();
        assert!(h.advance_watermark(104).unwrap().is_empty(), "none early");
        let fired = h.advance_watermark(110).unwrap();
        assert_eq!(
            fired,
            [
                json!({"key": "a", "timer": 105, "watermark": 110}),
                json!({"key": "a", "timer": 110, "watermark": 110}),
                json!({"key": "b", "timer": 110, "watermark": 110}),
            ]
        );
        h.push_at("a", 200, json!({"key": "a", "seq": 2})).unwrap();
        let restored = Harness::<SequenceCheck>::restore(&h.snapshot());
        let ended = restored.unwrap().close().unwrap();
        assert_eq!(
            ended,
            [json!({"key": "a", "timer": 210, "watermark": i64::MAX})],
            "the end of input fires the rest, after a restore too"
        );
    }

    #[test]
    fn processing_time_timers_follow_the_clock_they_are_given() {
        let config = json!({"processing_timer_after_ms": 50});
        let mut h = Harness::<SequenceCheck>::with_config(config).unwrap();
        h.advance_processing_time(1_000).unwrap();
        h.push("a", json!({"key": "a", "seq": 0})).unwrap();
        assert!(h.advance_processing_time(1_049).unwrap().is_empty());
        assert_eq!(
            h.advance_processing_time(1_060).unwrap(),
            [json!({"key": "a", "processing_timer": 1_050, "late_ms": 10})]
        );
    }

    #[test]
    fn fails_once_per_early_attempt_and_never_after() {
        let config = json!({"fail_attempts": 1, "seed": 7, "first": 3, "window": 0});
        let mut h = Harness::<SequenceCheck>::with_config(config).unwrap();
        for seq in 0..2 {
            h.push("a", json!({"key": "a", "seq": seq})).unwrap();
        }
        let snapshot = h.snapshot();
        let third = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            h.push("a", json!({"key": "a", "seq": 2}))
        }));
        assert!(third.is_err(), "attempt 0 fails at its third record");
        let mut restored = Harness::<SequenceCheck>::restore(&snapshot).unwrap();
        for seq in 2..10 {
            assert_eq!(
                restored
                    .push("a", json!({"key": "a", "seq": seq}))
                    .unwrap()
                    .len(),
                1
            );
        }
    }
}
