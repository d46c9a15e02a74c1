//! `guest_sdk::window` through the harness: what a window operator emits as the
//! watermark moves, with records late, within lateness and beyond it, and across a
//! restore.

use guest_sdk::testing::Harness;
use guest_sdk::window::{Count, Fired, Windows};
use guest_sdk::{Config, Context, Operator, Result, Timer};
use serde_json::{Value, json};

/// Counts per key in the windows the config names (`tumbling`, `sliding` or
/// `sessions`); emits `{start, end, count, update}`, and late records to its side
/// output `late`.
#[derive(Default)]
struct Counting {
    kind: String,
}

const TUMBLING: Windows<Count> =
    Windows::tumbling("tumbling", 10, Count::new()).allowed_lateness(5);
const SLIDING: Windows<Count> = Windows::sliding("sliding", 10, 5, Count::new());
const SESSIONS: Windows<Count> = Windows::sessions("sessions", 10, Count::new());

impl Counting {
    fn windows(&self) -> &'static Windows<Count> {
        match self.kind.as_str() {
            "sliding" => &SLIDING,
            "sessions" => &SESSIONS,
            _ => &TUMBLING,
        }
    }
}

fn emit(fired: Vec<Fired<u64>>, record: &Value, ctx: &mut Context<Value>) -> Result<()> {
    for fired in fired {
        match fired {
            Fired::Result {
                window,
                result,
                update,
            } => ctx.emit(json!({
                "start": window.start, "end": window.end, "count": result, "update": update
            }))?,
            Fired::Late => ctx.emit_to("late", record)?,
        }
    }
    Ok(())
}

impl Operator for Counting {
    type Input = Value;
    type Output = Value;

    fn open(&mut self, config: &Config) -> Result<()> {
        self.kind = config.get("windows")?.unwrap_or_default();
        Ok(())
    }

    fn process(&mut self, record: Value, ctx: &mut Context<Value>) -> Result<()> {
        let fired = self.windows().add(&record, ctx)?;
        emit(fired, &record, ctx)
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<Value>) -> Result<()> {
        let fired = self.windows().on_timer(timer, ctx)?;
        emit(fired, &Value::Null, ctx)
    }
}

fn harness(windows: &str) -> Harness<Counting> {
    Harness::with_config(json!({ "windows": windows })).expect("the operator opens")
}

fn window(start: i64, end: i64, count: u64, update: bool) -> Value {
    json!({"start": start, "end": end, "count": count, "update": update})
}

fn at(h: &mut Harness<Counting>, t: i64) -> Vec<Value> {
    h.push_at("k", t, json!({ "t": t }))
        .expect("the record is processed")
}

#[test]
fn a_tumbling_window_fires_at_its_end_again_within_lateness_and_reports_later_records() {
    let mut h = harness("tumbling");
    for t in [1, 3, 12] {
        assert!(at(&mut h, t).is_empty());
    }
    assert!(
        h.advance_watermark(8).unwrap().is_empty(),
        "[0, 10) ends at 9"
    );
    assert_eq!(h.advance_watermark(9).unwrap(), [window(0, 10, 2, false)]);
    // Within the 5 ms of lateness: counted, and the window fires again at once.
    assert_eq!(at(&mut h, 5), [window(0, 10, 3, true)]);
    assert!(h.advance_watermark(14).unwrap().is_empty(), "state goes");
    assert!(at(&mut h, 2).is_empty());
    assert_eq!(
        h.side_output("late"),
        [json!({ "t": 2 })],
        "too late: sent aside"
    );
    assert_eq!(open(&h, &TUMBLING_STATE), 1, "only [10, 20) is kept");
    assert_eq!(h.close().unwrap(), [window(10, 20, 1, false)]);
    assert!(h.timers("k").is_empty(), "no timer outlives its window");
}

/// The value state `TUMBLING` keeps its open windows in, for inspection.
const TUMBLING_STATE: guest_sdk::ValueState<Vec<Value>> = guest_sdk::ValueState::new("tumbling");

/// How many windows `state` holds open for key `k`.
fn open(h: &Harness<Counting>, state: &guest_sdk::ValueState<Vec<Value>>) -> usize {
    h.state(state, "k").map_or(0, |windows| windows.len())
}

#[test]
fn a_record_is_in_every_sliding_window_that_covers_it() {
    let mut h = harness("sliding");
    at(&mut h, 7);
    at(&mut h, 12);
    let mut fired = h.close().unwrap();
    fired.sort_by_key(|w| w["start"].as_i64());
    assert_eq!(
        fired,
        [
            window(0, 10, 1, false),
            window(5, 15, 2, false),
            window(10, 20, 1, false)
        ]
    );
}

#[test]
fn sessions_merge_when_a_record_bridges_them_even_across_a_restore() {
    let mut h = harness("sessions");
    at(&mut h, 0);
    at(&mut h, 15);
    assert_eq!(open(&h, &SESSIONS_STATE), 2, "[0, 10) and [15, 25)");
    let mut h = Harness::<Counting>::restore(&h.snapshot()).unwrap();
    // [8, 18) touches both: one session [0, 25) of three records.
    at(&mut h, 8);
    assert_eq!(open(&h, &SESSIONS_STATE), 1);
    assert!(h.advance_watermark(23).unwrap().is_empty());
    assert_eq!(h.advance_watermark(24).unwrap(), [window(0, 25, 3, false)]);
    // A later burst is a session of its own.
    at(&mut h, 40);
    assert_eq!(h.close().unwrap(), [window(40, 50, 1, false)]);
}

/// The value state `SESSIONS` keeps its open windows in, for inspection.
const SESSIONS_STATE: guest_sdk::ValueState<Vec<Value>> = guest_sdk::ValueState::new("sessions");

#[test]
fn out_of_order_records_give_the_counts_a_brute_force_gives() {
    // Records at times 0..400 over 3 keys, each arriving up to 19 ms late (in the
    // order of time plus a jitter below 20); the watermark trails the highest time
    // seen by 20 ms, so nothing is late.
    let mut h = harness("tumbling");
    let mut times: Vec<i64> = (0..400).collect();
    times.sort_by_key(|t| t + (t * 7919) % 20);
    let mut fired = Vec::new();
    let mut highest = i64::MIN;
    for (n, t) in times.iter().enumerate() {
        let key = ["a", "b", "c"][n % 3];
        fired.extend(h.push_at(key, *t, json!({ "t": t })).unwrap());
        highest = highest.max(*t);
        fired.extend(h.advance_watermark(highest - 20).unwrap());
    }
    fired.extend(h.close().unwrap());
    assert!(
        h.side_output("late").is_empty(),
        "nothing came later than the disorder allows"
    );
    let mut counts: Vec<(i64, u64)> = Vec::new();
    for f in fired.iter().filter(|f| f["update"] == false) {
        let start = f["start"].as_i64().unwrap();
        match counts.iter_mut().find(|(s, _)| *s == start) {
            Some((_, c)) => *c += f["count"].as_u64().unwrap(),
            None => counts.push((start, f["count"].as_u64().unwrap())),
        }
    }
    counts.sort();
    let expected: Vec<(i64, u64)> = (0..40).map(|w| (w * 10, 10)).collect();
    assert_eq!(counts, expected, "each 10 ms window holds its 10 records");
}

#[test]
fn a_window_that_comes_into_being_after_its_end_passed_comes_out_once_as_no_update() {
    let mut h = harness("tumbling");
    assert!(h.advance_watermark(12).unwrap().is_empty());
    // [0, 10) has no record yet; the watermark is past its end but within lateness.
    assert_eq!(at(&mut h, 4), [window(0, 10, 1, false)]);
    assert_eq!(at(&mut h, 6), [window(0, 10, 2, true)]);
}
