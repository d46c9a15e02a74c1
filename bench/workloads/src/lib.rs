//! The logic of `host bench`'s workloads, shared by the Wasm operator (`bench/guest`)
//! and the host's native baselines, so that both compute exactly the same thing and
//! differ only in where they run and how they reach state.
//!
//! Input records come from the generator: `{"key":"<prefix><k>","seq":<s>}`, where `s`
//! numbers the records of each key 0, 1, 2, …

#![no_std]

/// Which workload an operator runs (`[operator.config] workload = "…"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workload {
    /// W1 and W5: a count per key in a value state; emits nothing.
    #[default]
    Count,
    /// W2: per user, the set of item ids seen (a map state); emits each first sighting.
    Dedup,
    /// W3: the seed's state machine per address (a value state); emits an alert for an
    /// event without a transition.
    StateMachine,
    /// W4: the last ten sequence numbers per key (a list state); emits nothing.
    LastTen,
    /// W6: W1's count, and an event-time timer per record [`TIMER_AFTER_MS`] after its
    /// time (registered, then fired as the watermark passes it); emits nothing.
    Timer,
    /// W7: a count per key and tumbling [`WINDOW_MS`] window of event time; emits each
    /// window's count as the watermark passes its end.
    Window,
    /// BP: W1's count after [`spin`]: an operator slower than its source, so every
    /// channel into it stays full (checkpoints under back-pressure).
    Slow,
    /// W8: W1's count, emitting `{key, count}` for every record (output for a sink to
    /// carry).
    RunningCount,
}

/// W6: how far after its record's event time each timer fires.
pub const TIMER_AFTER_MS: i64 = 1000;

/// W7: the windows' length (Flink's `TumblingEventTimeWindows` of the peer's default).
pub const WINDOW_MS: i64 = 60_000;

/// BP's work per record: rounds of SplitMix64 over its sequence number.
pub fn spin(seq: u64) -> u64 {
    let mut z = seq;
    for _ in 0..SPIN_ROUNDS {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^= z >> 31;
    }
    z
}

/// Rounds per record in [`spin`]: about 300 µs of work in Wasm, so that an aligned
/// barrier waits seconds behind the 16 batches queued on each channel.
const SPIN_ROUNDS: u32 = 125_000;

impl Workload {
    /// The workload called `name` in an operator's config.
    pub fn from_name(name: &str) -> Option<Workload> {
        match name {
            "count" => Some(Workload::Count),
            "dedup" => Some(Workload::Dedup),
            "state-machine" => Some(Workload::StateMachine),
            "last-ten" => Some(Workload::LastTen),
            "slow" => Some(Workload::Slow),
            "timer" => Some(Workload::Timer),
            "window" => Some(Workload::Window),
            "running-count" => Some(Workload::RunningCount),
            _ => None,
        }
    }
}

/// W2: how many distinct items there are.
pub const ITEMS: u64 = 1000;

/// W2: the item a user's record `seq` (its `seq`-th record) is about: the items in
/// turn, as the Flink peer's `mode=dedup` has them (record `i` of user `i % K` is about
/// item `(i / K) % items`), so that both do the same work.
pub fn item(seq: u64) -> u64 {
    seq % ITEMS
}

/// W3's states; an address without state is `INITIAL`.
pub const INITIAL: u8 = 0;
const W: u8 = 1;
const X: u8 = 2;
const Y: u8 = 3;
const Z: u8 = 4;
/// Reaching it clears the address's state.
pub const TERMINAL: u8 = 5;

/// W3: the event of an address's record `seq`: the valid run `a b e g` over and over,
/// except that every 101st event is `f`, which no state accepts.
pub fn event(seq: u64) -> u8 {
    if seq % 101 == 100 {
        b'f'
    } else {
        [b'a', b'b', b'e', b'g'][(seq % 4) as usize]
    }
}

/// W3: the state after `event`, or `None` if there is no such transition (an alert).
pub fn transition(state: u8, event: u8) -> Option<u8> {
    match (state, event) {
        (INITIAL, b'a') => Some(W),
        (INITIAL, b'c') => Some(X),
        (W | X, b'b') => Some(Y),
        (W | X, b'd') | (Y, b'e') => Some(Z),
        (Z, b'g') => Some(TERMINAL),
        _ => None,
    }
}

/// W4: how many sequence numbers a key keeps.
pub const LAST: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_valid_run_ends_in_terminal_and_f_is_never_accepted() {
        let mut state = INITIAL;
        for seq in 0..4 {
            state = transition(state, event(seq)).unwrap();
        }
        assert_eq!(state, TERMINAL);
        assert_eq!(event(100), b'f');
        assert!((INITIAL..=TERMINAL).all(|s| transition(s, b'f').is_none()));
    }
}
