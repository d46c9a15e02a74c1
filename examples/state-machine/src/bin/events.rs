//! Generates state-machine events as JSON lines: interleaved valid sequences for many
//! addresses, with an occasional invalid event. Deterministic for a given seed.
//!
//! Usage: state-machine-events [ADDRESSES] [EVENTS] [SEED] [INVALID_PER_1000]

use state_machine::{Event, EventType, State};

fn main() {
    let arg = |i: usize, default: u64| -> u64 {
        std::env::args()
            .nth(i)
            .map(|a| {
                a.parse()
                    .unwrap_or_else(|_| panic!("argument {i} must be a number, got `{a}`"))
            })
            .unwrap_or(default)
    };
    let (addresses, events, seed, invalid_per_1000) =
        (arg(1, 20), arg(2, 200), arg(3, 42), arg(4, 30));
    let mut rng = SplitMix(seed);
    let mut states = vec![State::Initial; addresses as usize];
    for _ in 0..events {
        let index = (rng.next() % addresses) as usize;
        let state = states[index];
        let kind = if rng.next() % 1000 < invalid_per_1000 {
            EventType::F
        } else {
            let valid = state.valid_events();
            valid[(rng.next() % valid.len() as u64) as usize]
        };
        if let Some(next) = state.transition(kind) {
            states[index] = if next == State::Terminal {
                State::Initial
            } else {
                next
            };
        }
        let event = Event {
            address: format!("10.0.{}.{}", index / 256, index % 256),
            kind,
        };
        println!(
            "{}",
            serde_json::to_string(&event).expect("events serialize")
        );
    }
}

/// SplitMix64: a small, well-mixed, deterministic generator.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
