//! Dedup: passes each record through the first time its primary key (the operator's
//! `key_by`) is seen, and drops every later record with the same key.

use guest_sdk::{Context, Operator, Result, ValueState};
use serde_json::Value;

/// Whether this key was seen.
pub const SEEN: ValueState<bool> = ValueState::new("seen");

/// The operator.
#[derive(Default)]
pub struct Dedup;

impl Operator for Dedup {
    type Input = Value;
    type Output = Value;

    fn process(&mut self, record: Value, ctx: &mut Context<Value>) -> Result<()> {
        if SEEN.get()?.unwrap_or(false) {
            return Ok(());
        }
        SEEN.set(&true)?;
        ctx.emit(record)
    }
}

guest_sdk::export_operator!(Dedup);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::Harness;
    use serde_json::json;

    #[test]
    fn each_key_passes_once() {
        let mut h = Harness::<Dedup>::new().unwrap();
        let out = h
            .push_batch(&[
                ("1", json!({"id": 1, "v": "first"})),
                ("2", json!({"id": 2})),
                ("1", json!({"id": 1, "v": "again"})),
            ])
            .unwrap();
        assert_eq!(out, [json!({"id": 1, "v": "first"}), json!({"id": 2})]);
        assert_eq!(h.state(&SEEN, "1"), Some(true));
    }

    #[test]
    fn keys_seen_before_a_restore_stay_seen() {
        let mut h = Harness::<Dedup>::new().unwrap();
        h.push("1", json!({"id": 1})).unwrap();
        let mut restored = Harness::<Dedup>::restore(&h.snapshot()).unwrap();
        assert!(restored.push("1", json!({"id": 1})).unwrap().is_empty());
        assert_eq!(
            restored.push("3", json!({"id": 3})).unwrap(),
            [json!({"id": 3})]
        );
    }
}
