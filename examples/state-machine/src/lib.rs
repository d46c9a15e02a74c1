//! State machine (seed 000, after Flink's StateMachineExample): events per source address
//! must follow a state machine; an event that has no transition from the address's
//! current state raises an alert. Reaching the terminal state clears the address's state.
//! Keyed by `/address`; one `ValueState<State>` per address.
//!
//! ```text
//! Initial ──a──▶ W ──b──▶ Y ──e──▶ Z ──g──▶ Terminal
//!    └─────c──▶ X ──d──▶ Z       ▲
//!               W ──d────────────┘   X ──b──▶ Y
//! ```

use guest_sdk::{Context, Operator, Result, ValueState};
use serde::Serialize;

mod machine;
pub use machine::{Event, EventType, State};

/// The address's current state (absent means `Initial`).
pub const STATE: ValueState<State> = ValueState::new("state");

/// An invalid transition.
#[derive(Serialize)]
pub struct Alert {
    /// The source address.
    pub address: String,
    /// The state the address was in.
    pub state: State,
    /// The event that has no transition from it.
    pub event: EventType,
}

/// The operator.
#[derive(Default)]
pub struct StateMachine;

impl Operator for StateMachine {
    type Input = Event;
    type Output = Alert;

    fn process(&mut self, event: Event, ctx: &mut Context<Alert>) -> Result<()> {
        let state = STATE.get()?.unwrap_or(State::Initial);
        match state.transition(event.kind) {
            None => ctx.emit(Alert {
                address: event.address,
                state,
                event: event.kind,
            }),
            Some(State::Terminal) => STATE.clear(),
            Some(next) => STATE.set(&next),
        }
    }
}

guest_sdk::export_operator!(StateMachine);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::Harness;
    use serde_json::json;

    fn event(address: &str, kind: &str) -> (String, serde_json::Value) {
        (
            address.to_string(),
            json!({"address": address, "type": kind}),
        )
    }

    fn push(h: &mut Harness<StateMachine>, address: &str, kind: &str) -> Vec<serde_json::Value> {
        let (key, record) = event(address, kind);
        h.push(&key, record).unwrap()
    }

    #[test]
    fn a_valid_sequence_raises_nothing_and_ends_with_no_state() {
        let mut h = Harness::<StateMachine>::new().unwrap();
        for kind in ["a", "b", "e"] {
            assert!(push(&mut h, "10.0.0.1", kind).is_empty());
        }
        assert_eq!(h.state(&STATE, "10.0.0.1"), Some(State::Z));
        assert!(push(&mut h, "10.0.0.1", "g").is_empty());
        assert_eq!(
            h.state(&STATE, "10.0.0.1"),
            None,
            "terminal clears the state"
        );
    }

    #[test]
    fn an_invalid_transition_raises_an_alert_and_keeps_the_state() {
        let mut h = Harness::<StateMachine>::new().unwrap();
        push(&mut h, "10.0.0.1", "c");
        assert_eq!(
            push(&mut h, "10.0.0.1", "e"),
            [json!({"address": "10.0.0.1", "state": "X", "event": "e"})]
        );
        assert_eq!(h.state(&STATE, "10.0.0.1"), Some(State::X));
    }

    #[test]
    fn addresses_are_independent_across_a_restore() {
        let mut h = Harness::<StateMachine>::new().unwrap();
        push(&mut h, "A", "a");
        push(&mut h, "B", "c");
        let mut restored = Harness::<StateMachine>::restore(&h.snapshot()).unwrap();
        assert!(push(&mut restored, "A", "d").is_empty());
        assert_eq!(
            push(&mut restored, "B", "g"),
            [json!({"address": "B", "state": "X", "event": "g"})]
        );
    }

    #[test]
    fn every_listed_valid_event_has_a_transition() {
        for state in [
            State::Initial,
            State::W,
            State::X,
            State::Y,
            State::Z,
            State::Terminal,
        ] {
            for &event in state.valid_events() {
                assert!(state.transition(event).is_some(), "{state:?} {event:?}");
            }
        }
    }
}
