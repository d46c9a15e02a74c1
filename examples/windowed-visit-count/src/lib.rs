//! Visits per URL per minute of event time: seed 000's visit count over tumbling
//! one-minute windows (`guest_sdk::window`). A window's count comes out when the
//! watermark passes the window's end; a visit up to 10 s behind that is still counted
//! and the window comes out again, updated; later visits go to the side output `late`,
//! which the job file sends to a file of its own.

use guest_sdk::window::{Count, Fired, Windows};
use guest_sdk::{Context, Operator, Result, Timer};
use serde::Serialize;
use serde_json::Value;

/// Each URL's one-minute windows, kept 10 s after they fire.
pub const PER_MINUTE: Windows<Count> =
    Windows::tumbling("visits-per-minute", 60_000, Count::new()).allowed_lateness(10_000);

/// One window's count.
#[derive(Debug, Serialize)]
pub struct Visits {
    /// The URL.
    pub url: String,
    /// The window's first millisecond (epoch milliseconds).
    pub start: i64,
    /// The first millisecond after it.
    pub end: i64,
    /// Visits in it.
    pub visits: u64,
    /// Whether this updates a count that came out before (a late visit came).
    pub update: bool,
}

#[derive(Default)]
pub struct WindowedVisitCount;

impl WindowedVisitCount {
    fn emit(fired: Vec<Fired<u64>>, visit: &Value, ctx: &mut Context<Visits>) -> Result<()> {
        for fired in fired {
            match fired {
                Fired::Result {
                    window,
                    result,
                    update,
                } => {
                    let visits = Visits {
                        url: ctx.key().to_string(),
                        start: window.start,
                        end: window.end,
                        visits: result,
                        update,
                    };
                    ctx.emit_at(visits, Some(window.max_timestamp()))?
                }
                Fired::Late => ctx.emit_to("late", visit)?,
            }
        }
        Ok(())
    }
}

impl Operator for WindowedVisitCount {
    type Input = Value;
    type Output = Visits;

    fn process(&mut self, visit: Value, ctx: &mut Context<Visits>) -> Result<()> {
        let fired = PER_MINUTE.add(&visit, ctx)?;
        Self::emit(fired, &visit, ctx)
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<Visits>) -> Result<()> {
        let fired = PER_MINUTE.on_timer(timer, ctx)?;
        Self::emit(fired, &Value::Null, ctx)
    }
}

guest_sdk::export_operator!(WindowedVisitCount);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::Harness;
    use serde_json::json;

    fn visit(h: &mut Harness<WindowedVisitCount>, url: &str, ts: i64) -> Vec<Value> {
        h.push_at(url, ts, json!({"url": url, "ts": ts})).unwrap()
    }

    #[test]
    fn a_minute_comes_out_then_again_for_a_visit_within_lateness_and_later_ones_go_aside() {
        let mut h = Harness::<WindowedVisitCount>::new().unwrap();
        visit(&mut h, "/a", 1_000);
        visit(&mut h, "/a", 59_999);
        let counted = |visits: u64, update: bool| json!({"url": "/a", "start": 0, "end": 60_000, "visits": visits, "update": update});
        assert_eq!(h.advance_watermark(59_999).unwrap(), [counted(2, false)]);
        assert_eq!(visit(&mut h, "/a", 30_000), [counted(3, true)]);
        h.advance_watermark(69_999).unwrap();
        assert!(visit(&mut h, "/a", 30_001).is_empty());
        assert_eq!(h.side_output("late"), [json!({"url": "/a", "ts": 30_001})]);
    }
}
