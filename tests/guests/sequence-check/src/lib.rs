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

use guest_sdk::{Config, Context, Operator, Result, ValueState};
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
}

/// The operator.
#[derive(Default)]
pub struct SequenceCheck {
    at_least_once: bool,
    processed: u64,
    fail_at: Option<u64>,
    work: u64,
    with_time: bool,
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
        if self.with_time {
            let time = ctx.timestamp();
            return ctx.emit(json!({"key": input.key, "seq": input.seq, "time": time}));
        }
        ctx.emit(json!({"key": input.key, "seq": input.seq}))
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
