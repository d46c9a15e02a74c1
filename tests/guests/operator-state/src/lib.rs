//! Test guest: operator state. On the job's first start every subtask deals itself ten
//! tokens `"<subtask>-<n>"` into split list state, and its subtask number into union list
//! state; a restore (at any parallelism) adds nothing. So at every checkpoint the split
//! lists of all subtasks together hold exactly the first start's tokens, once each, and
//! after a restore every subtask's union list holds every first-start subtask. Each record is passed on
//! with the subtask's token and marker counts, and counted in split list state `seen`.

use guest_sdk::{Config, Context, Operator, OperatorListState, Result, UnionListState, ValueState};
use serde_json::{Value, json};

/// Work to share out: each element goes to exactly one subtask.
pub const TOKENS: OperatorListState<String> = OperatorListState::new("tokens");
/// What every subtask must know: the subtasks of the first start.
pub const STARTED: UnionListState<u32> = UnionListState::new("started");
/// Records this subtask has seen since its last restore, as one running count.
pub const SEEN: OperatorListState<u64> = OperatorListState::new("seen");
/// Keyed: the last number of each key (the sequence job's records pass through).
const LAST: ValueState<u64> = ValueState::new("last");

/// The operator.
#[derive(Default)]
pub struct OperatorState;

impl Operator for OperatorState {
    type Input = Value;
    type Output = Value;

    fn open(&mut self, config: &Config) -> Result<()> {
        let task = config.task();
        let mut started = STARTED.get()?;
        if started.is_empty() {
            let tokens: Vec<String> = (0..10).map(|n| format!("{}-{n}", task.subtask)).collect();
            TOKENS.add_all(&tokens)?;
            STARTED.add(&task.subtask)?;
        } else {
            // Union state gives every subtask every subtask's copy: keep one of each.
            started.sort_unstable();
            started.dedup();
            STARTED.update(&started)?;
        }
        Ok(())
    }

    fn process(&mut self, record: Value, ctx: &mut Context<Value>) -> Result<()> {
        let seen = SEEN.get()?.iter().sum::<u64>() + 1;
        SEEN.update(&[seen])?;
        if let Some(seq) = record["seq"].as_u64() {
            LAST.set(&seq)?;
        }
        ctx.emit(json!({
            "key": record["key"],
            "seq": record["seq"],
        }))
    }
}

guest_sdk::export_operator!(OperatorState);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::Harness;

    #[test]
    fn split_tokens_are_dealt_once_and_union_markers_reach_every_instance() {
        let mut harness = Harness::<OperatorState>::new().unwrap();
        harness.push("k", json!({"key": "k", "seq": 0})).unwrap();
        assert_eq!(harness.operator_state(&TOKENS).len(), 10);
        assert_eq!(harness.operator_state(&STARTED), [0]);
        for parallelism in [3, 2, 1, 4] {
            let restored =
                Harness::<OperatorState>::restore_rescaled(&[harness.snapshot()], parallelism)
                    .unwrap();
            let mut tokens: Vec<String> = restored
                .iter()
                .flat_map(|h| h.operator_state(&TOKENS))
                .collect();
            tokens.sort();
            let mut want: Vec<String> = (0..10).map(|n| format!("0-{n}")).collect();
            want.sort();
            assert_eq!(tokens, want, "split: each token once at p={parallelism}");
            for instance in &restored {
                assert_eq!(instance.operator_state(&STARTED), [0], "union: all to all");
            }
            let snapshots: Vec<_> = restored.iter().map(Harness::snapshot).collect();
            harness = Harness::restore_rescaled(&snapshots, 1).unwrap().remove(0);
        }
    }
}
