//! Counts per key with state that expires: `count` (value state) restarts at 1 once a
//! key was quiet for the TTL, `recent` (list state) holds the key's records of the last
//! TTL, and `total` (no TTL) counts every record. Its config gives the TTL: `ttl_ms`,
//! and `domain` (`"event"`, the default, or `"processing"`).

use guest_sdk::{Config, Context, ListState, Operator, Result, Ttl, ValueState};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Event {
    pub key: String,
}

#[derive(Serialize)]
pub struct Counts {
    pub key: String,
    pub count: u64,
    pub recent: usize,
    pub total: u64,
}

pub struct TtlCount {
    count: ValueState<u64>,
    recent: ListState<i64>,
    total: ValueState<u64>,
}

impl Default for TtlCount {
    fn default() -> TtlCount {
        TtlCount {
            count: ValueState::new("count"),
            recent: ListState::new("recent"),
            total: ValueState::new("total"),
        }
    }
}

impl Operator for TtlCount {
    type Input = Event;
    type Output = Counts;

    fn open(&mut self, config: &Config) -> Result<()> {
        let ttl_ms = config.get::<u64>("ttl_ms")?.unwrap_or(1_000);
        let ttl = match config.get::<String>("domain")?.as_deref() {
            None | Some("event") => Ttl::event_time(ttl_ms),
            Some("processing") => Ttl::processing_time(ttl_ms),
            Some(other) => {
                return Err(guest_sdk::Error::new(format!(
                    "domain `{other}`: say \"event\" or \"processing\""
                )));
            }
        };
        self.count = ValueState::new("count").with_ttl(ttl);
        self.recent = ListState::new("recent").with_ttl(ttl);
        Ok(())
    }

    fn process(&mut self, event: Event, ctx: &mut Context<Counts>) -> Result<()> {
        let count = self.count.get()?.unwrap_or(0) + 1;
        self.count.set(&count)?;
        self.recent.add(&ctx.timestamp().unwrap_or_default())?;
        let total = self.total.get()?.unwrap_or(0) + 1;
        self.total.set(&total)?;
        ctx.emit(Counts {
            key: event.key,
            count,
            recent: self.recent.get()?.len(),
            total,
        })
    }
}

guest_sdk::export_operator!(TtlCount);
