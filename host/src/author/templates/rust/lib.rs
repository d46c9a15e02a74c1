//! {{name}}: a running count of events per user. Make it yours: change `process`.

use guest_sdk::{Context, Operator, Result, ValueState};
use serde::{Deserialize, Serialize};

/// The user's count so far: keyed state, snapshotted and restored by the host.
const COUNT: ValueState<u64> = ValueState::new("count");

#[derive(Deserialize)]
pub struct Event {
    pub user: String,
}

#[derive(Serialize)]
pub struct Count {
    pub user: String,
    pub count: u64,
}

#[derive(Default)]
pub struct Counter;

impl Operator for Counter {
    type Input = Event;
    type Output = Count;

    fn process(&mut self, event: Event, ctx: &mut Context<Count>) -> Result<()> {
        let count = COUNT.get()?.unwrap_or(0) + 1;
        COUNT.set(&count)?;
        ctx.emit(Count {
            user: event.user,
            count,
        })
    }
}

guest_sdk::export_operator!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::Harness;
    use serde_json::json;

    #[test]
    fn counts_per_user_and_survives_a_restore() {
        let mut h = Harness::<Counter>::new().unwrap();
        let ada = json!({"user": "ada"});
        assert_eq!(h.push("ada", ada.clone()).unwrap(), [json!({"user": "ada", "count": 1})]);
        assert_eq!(h.state(&COUNT, "ada"), Some(1));
        let mut restored = Harness::<Counter>::restore(&h.snapshot()).unwrap();
        assert_eq!(restored.push("ada", ada).unwrap(), [json!({"user": "ada", "count": 2})]);
    }
}
