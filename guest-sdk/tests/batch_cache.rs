//! Value and list state are read and written once per batch (or, used sparsely, once
//! per call), map state per access: either way every record sees what the records
//! before it left.

use std::collections::HashMap;

use guest_sdk::testing::Harness;
use guest_sdk::{Context, ListState, Operator, ReducingState, Result, ValueState};
use serde_json::{Value, json};

const COUNT: ValueState<u64> = ValueState::new("count");
const TOTAL: ReducingState<u64> = ReducingState::new("total", |a, b| a + b);
/// Used only for records of the key `rare`: too sparse to read for a whole batch.
const RARE: ValueState<u64> = ValueState::new("rare");

#[derive(Default)]
struct Counter;

impl Operator for Counter {
    type Input = Value;
    type Output = u64;

    fn process(&mut self, record: Value, ctx: &mut Context<u64>) -> Result<()> {
        let count = COUNT.get()?.unwrap_or(0) + 1;
        if count == 3 {
            COUNT.clear()?;
        } else {
            COUNT.set(&count)?;
        }
        TOTAL.add(record["n"].as_u64().unwrap_or(0))?;
        if ctx.key() == "rare" {
            let rare = RARE.get()?.unwrap_or(0) + 1;
            RARE.set(&rare)?;
            ctx.emit(rare)?;
        }
        ctx.emit(count)
    }
}

#[test]
fn records_of_one_key_in_a_batch_see_each_others_writes_in_every_mode() {
    let mut harness = Harness::<Counter>::new().unwrap();
    for batch in 0..3u64 {
        let records: Vec<(&str, Value)> = (0..40u64)
            .map(|i| {
                let key = if i == 7 {
                    "rare"
                } else {
                    ["a", "b"][i as usize % 2]
                };
                (key, json!({"n": i}))
            })
            .collect();
        let outputs = harness.push_batch(&records).unwrap();
        // `rare` emits its own count, then the count of its record.
        assert_eq!(outputs[7], json!(batch + 1), "batch {batch}");
        let a: Vec<u64> = outputs
            .iter()
            .step_by(2)
            .take(3)
            .map(|v| v.as_u64().unwrap())
            .collect();
        // Key `a` counts 1, 2, 3 and starts again (cleared at 3), across batches too.
        let first = (batch * 20) % 3;
        let expected: Vec<u64> = (0..3).map(|i| (first + i) % 3 + 1).collect();
        assert_eq!(a, expected, "batch {batch}");
    }
    let sum_of_a: u64 = (0..40).step_by(2).sum::<u64>() * 3;
    assert_eq!(harness.state(&TOTAL, "a"), Some(sum_of_a));
    assert_eq!(harness.state(&TOTAL, "rare"), Some(7 * 3));
    assert_eq!(harness.state(&RARE, "rare"), Some(3));
    // 60 records of `a`, 57 of `b`, 3 of `rare`: each key's last one counted 3 and
    // cleared; 58 of `b` would have left 1.
    assert_eq!(harness.state(&COUNT, "a"), None);
    assert_eq!(harness.state(&COUNT, "b"), None);
    assert_eq!(harness.state(&COUNT, "rare"), None);
    let outputs = harness.push("b", json!({"n": 0})).unwrap();
    assert_eq!(outputs, [json!(1)]);
    assert_eq!(harness.state(&COUNT, "b"), Some(1));
}

const RECENT: ListState<u64> = ListState::new("recent");
/// Only appended to: never read, so never read for a whole batch.
const LOG: ListState<u64> = ListState::new("log");

/// Keeps each key's last three numbers, emptied after a number ending in 9.
#[derive(Default)]
struct Recent;

impl Operator for Recent {
    type Input = u64;
    type Output = Vec<u64>;

    fn process(&mut self, n: u64, ctx: &mut Context<Vec<u64>>) -> Result<()> {
        RECENT.add(&n)?;
        let mut recent = RECENT.get()?;
        if recent.len() > 3 {
            recent.drain(..recent.len() - 3);
            RECENT.update(&recent)?;
        }
        if n % 10 == 9 {
            RECENT.clear()?;
        }
        LOG.add(&n)?;
        ctx.emit(recent)
    }
}

#[test]
fn records_of_one_key_in_a_batch_see_each_others_list_changes() {
    let mut harness = Harness::<Recent>::new().unwrap();
    // What per-record calls would leave: the first batch makes them (a list state is
    // cached once a batch has read it), the next ones are served from the cache.
    let mut model: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut log: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut n = 0;
    for batch in 0..3 {
        let records: Vec<(&str, Value)> = (0..40)
            .map(|i| (["a", "b", "c"][(i / 3 + i * i) % 3], json!(n + i as u64)))
            .collect();
        let mut expected = Vec::new();
        for (key, value) in &records {
            let value = value.as_u64().unwrap();
            log.entry(key).or_default().push(value);
            let recent = model.entry(key).or_default();
            recent.push(value);
            if recent.len() > 3 {
                recent.remove(0);
            }
            expected.push(json!(recent));
            if value % 10 == 9 {
                recent.clear();
            }
        }
        n += 40;
        let outputs = harness.push_batch(&records).unwrap();
        assert_eq!(outputs, expected, "batch {batch}");
    }
    for key in ["a", "b", "c"] {
        assert_eq!(harness.state(&RECENT, key), model[key], "{key}");
        assert_eq!(harness.state(&LOG, key), log[key], "{key}");
    }
}

const SEEN: guest_sdk::MapState<u64, u64> = guest_sdk::MapState::new("seen");

/// Dedup with a count: emits an item the first time its key sees it (and how many items
/// the key has seen then), forgets item 0 whenever it comes.
#[derive(Default)]
struct Dedup;

impl Operator for Dedup {
    type Input = Value;
    type Output = Value;

    fn process(&mut self, record: Value, ctx: &mut Context<Value>) -> Result<()> {
        let item = record["item"].as_u64().unwrap_or(0);
        if item == 0 {
            return SEEN.remove(&1);
        }
        if SEEN.contains(&item)? {
            return Ok(());
        }
        let seen = SEEN.get(&item)?.unwrap_or(0);
        SEEN.put(&item, &(seen + 1))?;
        ctx.emit(json!({"item": item, "items": SEEN.keys()?.len()}))
    }
}

#[test]
fn records_of_one_key_in_a_batch_see_each_others_map_writes() {
    let mut harness = Harness::<Dedup>::new().unwrap();
    let batch = |items: &[u64]| -> Vec<(&str, Value)> {
        items
            .iter()
            .map(|&item| ("k", json!({"item": item})))
            .collect()
    };
    // Item 1 twice in one batch comes out once; 0 forgets it; the next batch sees that.
    let outputs = harness.push_batch(&batch(&[1, 2, 1, 0, 3])).unwrap();
    let items: Vec<u64> = outputs
        .iter()
        .map(|o| o["item"].as_u64().unwrap())
        .collect();
    assert_eq!(items, [1, 2, 3]);
    assert_eq!(
        outputs[2]["items"], 2,
        "keys() sees the batch's writes: 2 and 3"
    );
    let outputs = harness.push_batch(&batch(&[1, 2])).unwrap();
    assert_eq!(outputs, [json!({"item": 1, "items": 3})]);
}
