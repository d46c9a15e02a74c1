//! Two inputs, one broadcast: each record names its input; broadcast state changes only
//! with broadcast records; keyed state is reached from a broadcast record only through
//! `for_each_key`, and then for every key of the instance.

use guest_sdk::testing::Harness;
use guest_sdk::{BroadcastState, Context, Operator, Result, ValueState};
use serde_json::{Value, json};

const SEEN: ValueState<u64> = ValueState::new("seen");
const FLAGS: BroadcastState<String, bool> = BroadcastState::new("flags");

/// Events count per key; a control record (`{"do": …}`) on the broadcast input `control`
/// sets a flag, touches keyed state without a key, or counts every key up.
#[derive(Default)]
struct Probe;

impl Operator for Probe {
    type Input = Value;
    type Output = Value;

    fn process(&mut self, record: Value, ctx: &mut Context<Value>) -> Result<()> {
        let input = ctx.input().to_string();
        match record["do"].as_str() {
            Some("flag") => FLAGS.put(&"on".to_string(), &true)?,
            Some("keyed") => {
                SEEN.get()?;
            }
            Some("bump") => ctx.for_each_key(&SEEN, |key, ctx| {
                let seen = SEEN.get()?.unwrap_or(0) + 100;
                SEEN.set(&seen)?;
                ctx.emit(json!({"key": key, "seen": seen}))
            })?,
            _ => {
                let seen = SEEN.get()?.unwrap_or(0) + 1;
                SEEN.set(&seen)?;
                let flag = FLAGS.get(&"on".to_string())?.unwrap_or(false);
                ctx.emit(json!({"input": input, "key": ctx.key(), "seen": seen, "flag": flag}))?;
            }
        }
        Ok(())
    }
}

fn probe() -> Harness<Probe> {
    Harness::with_inputs(json!({}), &["events"], &["control"]).expect("the probe opens")
}

#[test]
fn records_name_their_input_and_broadcast_state_is_read_everywhere() {
    let mut h = probe();
    assert_eq!(
        h.push_to("events", "a", json!({})).unwrap(),
        [json!({"input": "events", "key": "a", "seen": 1, "flag": false})]
    );
    h.push_to("control", "ignored", json!({"do": "flag"}))
        .unwrap();
    assert_eq!(
        h.push_to("events", "a", json!({})).unwrap(),
        [json!({"input": "events", "key": "a", "seen": 2, "flag": true})]
    );
    assert_eq!(h.broadcast_state(&FLAGS), [("on".to_string(), true)]);
    assert!(h.push_to("nowhere", "a", json!({})).is_err());
}

#[test]
fn broadcast_state_changes_only_with_broadcast_records() {
    let mut h = probe();
    let error = h
        .push_to("events", "a", json!({"do": "flag"}))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("can only change while processing a record of a broadcast input"),
        "{error}"
    );
    assert!(h.broadcast_state(&FLAGS).is_empty());
}

#[test]
fn a_broadcast_record_reaches_keyed_state_only_key_by_key() {
    let mut h = probe();
    let error = h
        .push_to("control", "", json!({"do": "keyed"}))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("out of reach while processing a record of broadcast input `control`"),
        "{error}"
    );
    h.push_batch_to(
        "events",
        &[("b", json!({})), ("a", json!({})), ("b", json!({}))],
    )
    .unwrap();
    assert_eq!(
        h.push_to("control", "", json!({"do": "bump"})).unwrap(),
        [
            json!({"key": "a", "seen": 101}),
            json!({"key": "b", "seen": 102})
        ]
    );
    assert_eq!(h.state(&SEEN, "b"), Some(102));
    // Outside a broadcast record, for_each_key is refused.
    let error = h
        .push_to("events", "a", json!({"do": "bump"}))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("for_each_key is for records of a broadcast input"),
        "{error}"
    );
}
