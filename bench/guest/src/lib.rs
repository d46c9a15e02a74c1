//! `host bench`'s workloads as one Wasm operator: `[operator.config] workload` picks
//! `count` (W1, W5), `dedup` (W2), `state-machine` (W3), `last-ten` (W4), `timer` (W6),
//! `window` (W7) or `slow` (BP). The host's
//! native baselines (`host/src/bench/native.rs`) do the same through the state backend.

use bench_workloads::{
    LAST, TERMINAL, TIMER_AFTER_MS, WINDOW_MS, Workload, event, item, spin, transition,
};
use guest_sdk::window::{Count, Fired, Windows};
use guest_sdk::{Config, Context, Error, ListState, MapState, Operator, Result, Timer, ValueState};
use serde::Deserialize;
use serde_json::{Value, json};

/// W1, W5: the count per key.
pub const COUNT: ValueState<u64> = ValueState::new("count");
/// W2: the items a user has seen.
pub const ITEMS: MapState<u64, bool> = MapState::new("items");
/// W3: the address's state.
pub const MACHINE: ValueState<u8> = ValueState::new("machine");
/// W4: the key's last sequence numbers.
pub const RECENT: ListState<u64> = ListState::new("recent");

/// W7: each key's counts per minute of event time.
pub const PER_MINUTE: Windows<Count<Event>> =
    Windows::tumbling("per-minute", WINDOW_MS, Count::new());

/// A generator record (its key travels separately).
#[derive(Deserialize)]
pub struct Event {
    seq: u64,
}

/// The operator.
#[derive(Default)]
pub struct Bench {
    workload: Workload,
}

impl Operator for Bench {
    type Input = Event;
    type Output = Value;

    fn open(&mut self, config: &Config) -> Result<()> {
        if let Some(name) = config.get::<String>("workload")? {
            self.workload = Workload::from_name(&name)
                .ok_or_else(|| Error::new(format!("unknown workload `{name}`")))?;
        }
        Ok(())
    }

    fn process(&mut self, input: Event, ctx: &mut Context<Value>) -> Result<()> {
        match self.workload {
            Workload::Count => COUNT.set(&(COUNT.get()?.unwrap_or(0) + 1)),
            Workload::RunningCount => {
                let count = COUNT.get()?.unwrap_or(0) + 1;
                COUNT.set(&count)?;
                ctx.emit(json!({"key": ctx.key(), "count": count}))
            }
            Workload::Timer => {
                COUNT.set(&(COUNT.get()?.unwrap_or(0) + 1))?;
                let time = ctx.timestamp().unwrap_or_default();
                ctx.register_event_time_timer(time + TIMER_AFTER_MS)
            }
            Workload::Window => {
                let fired = PER_MINUTE.add(&input, ctx)?;
                emit_windows(fired, ctx)
            }
            Workload::Slow => {
                core::hint::black_box(spin(input.seq));
                COUNT.set(&(COUNT.get()?.unwrap_or(0) + 1))
            }
            Workload::Dedup => {
                let item = item(input.seq);
                if ITEMS.contains(&item)? {
                    return Ok(());
                }
                ITEMS.put(&item, &true)?;
                ctx.emit(json!({"user": ctx.key(), "item": item}))
            }
            Workload::StateMachine => {
                let state = MACHINE.get()?.unwrap_or(0);
                let event = event(input.seq);
                match transition(state, event) {
                    Some(TERMINAL) => MACHINE.clear(),
                    Some(next) => MACHINE.set(&next),
                    None => ctx.emit(
                        json!({"address": ctx.key(), "state": state, "event": char::from(event).to_string()}),
                    ),
                }
            }
            Workload::LastTen => {
                RECENT.add(&input.seq)?;
                let recent = RECENT.get()?;
                if recent.len() > LAST {
                    RECENT.update(&recent[recent.len() - LAST..])?;
                }
                Ok(())
            }
        }
    }

    /// W6: a timer fires and does nothing more, as its native twin's does; W7: a
    /// window comes out.
    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<Value>) -> Result<()> {
        match self.workload {
            Workload::Window => {
                let fired = PER_MINUTE.on_timer(timer, ctx)?;
                emit_windows(fired, ctx)
            }
            _ => Ok(()),
        }
    }
}

/// W7's outputs: `{key, start, count}` per window that came out.
fn emit_windows(fired: Vec<Fired<u64>>, ctx: &mut Context<Value>) -> Result<()> {
    for fired in fired {
        if let Fired::Result { window, result, .. } = fired {
            ctx.emit(json!({"key": ctx.key(), "start": window.start, "count": result}))?;
        }
    }
    Ok(())
}

guest_sdk::export_operator!(Bench);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::Harness;

    fn harness(workload: &str) -> Harness<Bench> {
        Harness::with_config(json!({ "workload": workload })).unwrap()
    }

    #[test]
    fn every_workload_keeps_its_state() {
        let mut h = harness("count");
        for seq in 0..3 {
            h.push("k", json!({"seq": seq})).unwrap();
        }
        assert_eq!(h.state(&COUNT, "k"), Some(3));

        let mut h = harness("running-count");
        let outputs: Vec<Value> = (0..2)
            .flat_map(|seq| h.push("k", json!({"seq": seq})).unwrap())
            .collect();
        assert_eq!(h.state(&COUNT, "k"), Some(2));
        assert_eq!(
            outputs,
            [
                json!({"key": "k", "count": 1}),
                json!({"key": "k", "count": 2})
            ]
        );

        let mut h = harness("last-ten");
        for seq in 0..25 {
            h.push("k", json!({"seq": seq})).unwrap();
        }
        assert_eq!(h.state(&RECENT, "k"), (15..25).collect::<Vec<u64>>());

        let mut h = harness("dedup");
        let first = h.push("u", json!({"seq": 0})).unwrap();
        assert_eq!(first, [json!({"user": "u", "item": 0})]);
        assert!(h.push("u", json!({"seq": 1000})).unwrap().is_empty());

        let mut h = harness("state-machine");
        let alerts: usize = (0..202)
            .map(|seq| h.push("a", json!({"seq": seq})).unwrap().len())
            .sum();
        // The f at 100 breaks the run: it and the next three events (b e g from the
        // initial state) alert; the f at 201 alerts once.
        assert_eq!(alerts, 5);
    }
}
