//! Test guest: every state kind and access method, with an output that shows the state
//! after each record. The e2e tests run it both in the native harness and in the host
//! and require identical outputs, so the two cannot drift apart.

use guest_sdk::{
    AggregatingState, Context, ListState, MapState, Operator, ReducingState, Result, ValueState,
};
use serde::{Deserialize, Serialize};

/// Records seen per key.
pub const SEEN: ValueState<u64> = ValueState::new("seen");
/// The last three values per key.
pub const LAST: ListState<i64> = ListState::new("last");
/// Latest value per residue `v % 5`, removed when `v % 7 == 0`.
pub const BY_RESIDUE: MapState<i64, i64> = MapState::new("by-residue");
/// Largest value per key.
pub const MAX: ReducingState<i64> = ReducingState::new("max", |a, b| a.max(b));
/// Mean value per key, as (sum, count).
pub const MEAN: AggregatingState<i64, (i64, u64), f64> = AggregatingState::new(
    "mean",
    || (0, 0),
    |(s, n), v| (s + v, n + 1),
    |&(s, n)| s as f64 / n as f64,
);

/// An input record.
#[derive(Deserialize)]
pub struct Input {
    /// The key (also the job's `key_by`).
    pub key: String,
    /// The value; 0 clears the key's state (`seq` in the generator's records).
    #[serde(alias = "seq")]
    pub v: i64,
}

/// What the state looks like after a record.
#[derive(Serialize)]
pub struct Snapshot {
    key: String,
    seen: Option<u64>,
    last: Vec<i64>,
    entries: Vec<(i64, i64)>,
    keys: Vec<i64>,
    values: Vec<i64>,
    has_residue_3: bool,
    empty: bool,
    residue_of_v: Option<i64>,
    max: Option<i64>,
    mean: Option<f64>,
    /// The record's event time, as the operator saw it.
    time: Option<i64>,
}

/// The operator.
#[derive(Default)]
pub struct AllStates;

impl Operator for AllStates {
    type Input = Input;
    type Output = Snapshot;

    fn process(&mut self, input: Input, ctx: &mut Context<Snapshot>) -> Result<()> {
        let v = input.v;
        if v == 0 {
            SEEN.clear()?;
            LAST.clear()?;
            BY_RESIDUE.clear()?;
            MAX.clear()?;
            MEAN.clear()?;
        } else {
            SEEN.set(&(SEEN.get()?.unwrap_or(0) + 1))?;
            LAST.add(&v)?;
            let last = LAST.get()?;
            if last.len() > 3 {
                LAST.update(&last[last.len() - 3..])?;
            }
            if v % 2 == 0 {
                LAST.add_all(&[v, -v])?;
            }
            BY_RESIDUE.put(&v.rem_euclid(5), &v)?;
            if v % 7 == 0 {
                BY_RESIDUE.remove(&v.rem_euclid(5))?;
            }
            if v % 11 == 0 {
                BY_RESIDUE.put_all(&[(&100, &v), (&-100, &-v)])?;
            }
            MAX.add(v)?;
            MEAN.add(v)?;
        }
        ctx.emit(Snapshot {
            key: input.key,
            seen: SEEN.get()?,
            last: LAST.get()?,
            entries: BY_RESIDUE.entries()?,
            keys: BY_RESIDUE.keys()?,
            values: BY_RESIDUE.values()?,
            has_residue_3: BY_RESIDUE.contains(&3)?,
            empty: BY_RESIDUE.is_empty()?,
            residue_of_v: BY_RESIDUE.get(&v.rem_euclid(5))?,
            max: MAX.get()?,
            mean: MEAN.get()?,
            time: ctx.timestamp(),
        })
    }
}

guest_sdk::export_operator!(AllStates);
