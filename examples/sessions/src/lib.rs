//! Sessions per user over click events (seed 000's session windows): a user's session
//! is a burst of clicks with no pause of 30 minutes or more, in event time. When the
//! watermark passes a session's end (its last click plus the gap), it comes out with
//! its length and page count. Clicks that arrive out of order and fall between two
//! sessions merge them into one.

use guest_sdk::window::{Count, Fired, Window, Windows};
use guest_sdk::{Context, Operator, Result, Timer};
use serde::Serialize;
use serde_json::Value;

/// How long a pause ends a session, in milliseconds.
pub const GAP_MS: i64 = 30 * 60_000;

/// Each user's sessions: a count of clicks per session window.
pub const SESSIONS: Windows<Count> = Windows::sessions("sessions", GAP_MS, Count::new());

/// One session.
#[derive(Debug, Serialize)]
pub struct Session {
    /// The user.
    pub user: String,
    /// The session's first click (epoch milliseconds).
    pub start: i64,
    /// Its last click plus the gap: when it ended.
    pub end: i64,
    /// From the first click to the last, in milliseconds.
    pub length_ms: i64,
    /// Clicks in it.
    pub pages: u64,
}

#[derive(Default)]
pub struct Sessions;

fn emit(fired: Vec<Fired<u64>>, click: &Value, ctx: &mut Context<Session>) -> Result<()> {
    for fired in fired {
        match fired {
            Fired::Result { window, result, .. } => {
                let Window { start, end } = window;
                let session = Session {
                    user: ctx.key().to_string(),
                    start,
                    end,
                    length_ms: end - GAP_MS - start,
                    pages: result,
                };
                ctx.emit_at(session, Some(window.max_timestamp()))?
            }
            Fired::Late => ctx.emit_to("late", click)?,
        }
    }
    Ok(())
}

impl Operator for Sessions {
    type Input = Value;
    type Output = Session;

    fn process(&mut self, click: Value, ctx: &mut Context<Session>) -> Result<()> {
        let fired = SESSIONS.add(&click, ctx)?;
        emit(fired, &click, ctx)
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<Session>) -> Result<()> {
        let fired = SESSIONS.on_timer(timer, ctx)?;
        emit(fired, &Value::Null, ctx)
    }
}

guest_sdk::export_operator!(Sessions);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::Harness;
    use serde_json::json;

    const MIN: i64 = 60_000;

    fn click(h: &mut Harness<Sessions>, ts: i64) -> Vec<Value> {
        h.push_at("ann", ts, json!({"user": "ann", "page": "/", "ts": ts}))
            .unwrap()
    }

    #[test]
    fn a_pause_of_the_gap_ends_a_session_and_a_click_between_two_merges_them() {
        let mut h = Harness::<Sessions>::new().unwrap();
        click(&mut h, 0);
        click(&mut h, 10 * MIN);
        // 31 minutes later: a second session.
        click(&mut h, 41 * MIN);
        // A click at 25 minutes arrives late, but both sessions are still open: one.
        click(&mut h, 25 * MIN);
        let out = h.advance_watermark(i64::MAX).unwrap();
        let session =
            json!({"user": "ann", "start": 0, "end": 71 * MIN, "length_ms": 41 * MIN, "pages": 4});
        assert_eq!(out, [session]);
    }
}
