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
use serde::{Deserialize, Serialize};

/// The address's current state (absent means `Initial`).
pub const STATE: ValueState<State> = ValueState::new("state");

/// States of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// No event seen yet.
    Initial,
    /// After `a`.
    W,
    /// After `c`.
    X,
    /// After `b`.
    Y,
    /// After `d` or `e`.
    Z,
    /// After `g`: the sequence is complete.
    Terminal,
}

/// Event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// Event `a`.
    A,
    /// Event `b`.
    B,
    /// Event `c`.
    C,
    /// Event `d`.
    D,
    /// Event `e`.
    E,
    /// Event `f` (never valid: the generator's way to break a sequence).
    F,
    /// Event `g`.
    G,
}

impl State {
    /// The state after `event`, or `None` if the machine has no such transition.
    pub fn transition(self, event: EventType) -> Option<State> {
        use EventType::*;
        use State::*;
        match (self, event) {
            (Initial, A) => Some(W),
            (Initial, C) => Some(X),
            (W | X, B) => Some(Y),
            (W | X, D) => Some(Z),
            (Y, E) => Some(Z),
            (Z, G) => Some(Terminal),
            _ => None,
        }
    }

    /// Valid events from this state; empty for `Terminal`.
    pub fn valid_events(self) -> &'static [EventType] {
        use EventType::*;
        match self {
            State::Initial => &[A, C],
            State::W | State::X => &[B, D],
            State::Y => &[E],
            State::Z => &[G],
            State::Terminal => &[],
        }
    }
}

/// An event from one source address.
#[derive(Debug, Serialize, Deserialize)]
pub struct Event {
    /// The source address.
    pub address: String,
    /// The event's type.
    #[serde(rename = "type")]
    pub kind: EventType,
}

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
