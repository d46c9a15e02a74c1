//! The state machine of seed 000's example (after Flink's StateMachineExample): its
//! states, events and transitions. Pure; the `idle-alert` example includes this file
//! too (`#[path]`), so the machine is written once.

use serde::{Deserialize, Serialize};

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
