//! Test guest: echoes records and counts them per key, and misbehaves when a record's
//! `do` field says so (`panic`, `fail`), so tests can see how the host reports it.

use guest_sdk::{Config, Context, Error, Operator, Result, ValueState};
use serde::Deserialize;
use serde_json::Value;

const SEEN: ValueState<u64> = ValueState::new("seen");

#[derive(Deserialize)]
struct Command {
    #[serde(rename = "do", default)]
    action: String,
    #[serde(default)]
    message: String,
}

/// Counts records per key when `count` is set in the config; otherwise stateless.
#[derive(Default)]
pub struct Misbehave {
    count: bool,
}

impl Operator for Misbehave {
    type Input = Value;
    type Output = Value;

    fn open(&mut self, config: &Config) -> Result<()> {
        self.count = config.get("count")?.unwrap_or(false);
        Ok(())
    }

    fn process(&mut self, record: Value, ctx: &mut Context<Value>) -> Result<()> {
        let command = Command::deserialize(&record)?;
        match command.action.as_str() {
            "panic" => panic!("{}", command.message),
            "fail" => return Err(Error::new(command.message)),
            _ => {}
        }
        if self.count {
            let seen = SEEN.get()?.unwrap_or(0) + 1;
            SEEN.set(&seen)?;
        }
        ctx.emit(record)
    }
}

guest_sdk::export_operator!(Misbehave);
