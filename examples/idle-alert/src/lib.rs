//! Idle alert: seed 000's state machine (the `state-machine` example), plus an alert when
//! an address has not reached the terminal state within 30 s of event time after its
//! last event. Each address keeps one event-time timer, moved on by every event and
//! deleted when its sequence completes; a timer that fires means the address went quiet
//! mid-sequence. Keyed by `/address`; records carry their event time (`/ts`).

use guest_sdk::{Config, Context, Operator, Result, Timer, ValueState};
use serde::Serialize;

#[path = "../../state-machine/src/machine.rs"]
mod machine;
pub use machine::{Event, EventType, State};

/// The address's current state (absent means `Initial`).
pub const STATE: ValueState<State> = ValueState::new("state");
/// When the address's idle timer fires (absent: none set).
pub const DEADLINE: ValueState<i64> = ValueState::new("deadline");

/// How long an address may stay quiet mid-sequence, by default.
const IDLE_MS: i64 = 30_000;

/// What the operator reports about an address.
#[derive(Debug, Serialize)]
#[serde(tag = "alert", rename_all = "lowercase")]
pub enum Alert {
    /// An event with no transition from the address's state.
    Invalid {
        /// The source address.
        address: String,
        /// Its state.
        state: State,
        /// The event.
        event: EventType,
    },
    /// No event for `idle_ms` of event time, short of the terminal state.
    Idle {
        /// The source address.
        address: String,
        /// The state it stayed in.
        state: State,
        /// When its last event happened (epoch milliseconds).
        last_event: i64,
    },
}

/// The operator: `[operator.config] idle_ms` (default 30000).
#[derive(Default)]
pub struct IdleAlert {
    idle_ms: i64,
}

impl Operator for IdleAlert {
    type Input = Event;
    type Output = Alert;

    fn open(&mut self, config: &Config) -> Result<()> {
        self.idle_ms = config.get("idle_ms")?.unwrap_or(IDLE_MS);
        Ok(())
    }

    fn process(&mut self, event: Event, ctx: &mut Context<Alert>) -> Result<()> {
        let time = ctx.timestamp().ok_or_else(|| {
            guest_sdk::Error::new("the record has no event time: set `event_time`")
        })?;
        let state = STATE.get()?.unwrap_or(State::Initial);
        let next = state.transition(event.kind);
        if let Some(deadline) = DEADLINE.get()? {
            ctx.delete_event_time_timer(deadline)?;
            DEADLINE.clear()?;
        }
        match next {
            None => ctx.emit(Alert::Invalid {
                address: event.address,
                state,
                event: event.kind,
            })?,
            Some(State::Terminal) => return STATE.clear(),
            Some(next) => STATE.set(&next)?,
        }
        // Still mid-sequence: alert if nothing more comes for `idle_ms`.
        let deadline = time + self.idle_ms;
        ctx.register_event_time_timer(deadline)?;
        DEADLINE.set(&deadline)
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<Alert>) -> Result<()> {
        DEADLINE.clear()?;
        let state = STATE.get()?.unwrap_or(State::Initial);
        ctx.emit(Alert::Idle {
            address: ctx.key().to_string(),
            state,
            last_event: timer.timestamp - self.idle_ms,
        })
    }
}

guest_sdk::export_operator!(IdleAlert);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::Harness;
    use serde_json::{Value, json};

    fn push(h: &mut Harness<IdleAlert>, address: &str, kind: &str, ts: i64) -> Vec<Value> {
        let record = json!({"address": address, "type": kind, "ts": ts});
        h.push_at(address, ts, record).unwrap()
    }

    fn idle(address: &str, state: &str, last_event: i64) -> Value {
        json!({"alert": "idle", "address": address, "state": state, "last_event": last_event})
    }

    #[test]
    fn an_address_quiet_mid_sequence_raises_one_idle_alert() {
        let mut h = Harness::<IdleAlert>::new().unwrap();
        push(&mut h, "A", "a", 1_000);
        push(&mut h, "A", "b", 5_000);
        assert!(h.advance_watermark(34_999).unwrap().is_empty(), "not yet");
        assert_eq!(
            h.advance_watermark(35_000).unwrap(),
            [idle("A", "Y", 5_000)]
        );
        assert!(h.advance_watermark(100_000).unwrap().is_empty(), "once");
        assert_eq!(h.state(&STATE, "A"), Some(State::Y), "the state stays");
    }

    #[test]
    fn completing_the_sequence_deletes_the_timer() {
        let mut h = Harness::<IdleAlert>::new().unwrap();
        for (kind, ts) in [("a", 0), ("d", 10_000), ("g", 20_000)] {
            assert!(push(&mut h, "A", kind, ts).is_empty());
        }
        assert!(h.timers("A").is_empty());
        assert!(h.close().unwrap().is_empty(), "nothing fires at the end");
    }

    #[test]
    fn each_event_moves_the_deadline_and_the_end_fires_what_is_pending() {
        let mut h = Harness::<IdleAlert>::new().unwrap();
        push(&mut h, "A", "c", 0);
        push(&mut h, "B", "a", 0);
        push(&mut h, "A", "b", 25_000);
        assert_eq!(h.advance_watermark(40_000).unwrap(), [idle("B", "W", 0)]);
        let restored = Harness::<IdleAlert>::restore(&h.snapshot());
        assert_eq!(
            restored.unwrap().close().unwrap(),
            [idle("A", "Y", 25_000)],
            "a restored timer fires at the end of the input"
        );
    }

    #[test]
    fn an_invalid_event_alerts_and_keeps_the_address_watched() {
        let mut h = Harness::<IdleAlert>::new().unwrap();
        push(&mut h, "A", "a", 0);
        assert_eq!(
            push(&mut h, "A", "e", 1_000),
            [json!({"alert": "invalid", "address": "A", "state": "W", "event": "e"})]
        );
        assert_eq!(
            h.advance_watermark(31_000).unwrap(),
            [idle("A", "W", 1_000)]
        );
    }
}
