//! Consumer lag (seed 000, "stateless computation"): for each message-queue offset report,
//! how far each consumer group is behind the producer. Every output depends on its input
//! only, so the operator has no state and needs no `key_by`.

use std::collections::BTreeMap;

use guest_sdk::{Context, Error, Operator, Result};
use serde::{Deserialize, Serialize};

/// Offsets at one moment: the producer's and each consumer group's.
#[derive(Deserialize)]
pub struct Offsets {
    /// When the offsets were read.
    pub timestamp: i64,
    /// `producer` and one entry per consumer group.
    pub offset: BTreeMap<String, i64>,
}

/// How many messages each consumer group has yet to read.
#[derive(Serialize)]
pub struct Lag {
    /// When the offsets were read.
    pub timestamp: i64,
    /// Per consumer group.
    pub lag: BTreeMap<String, i64>,
}

/// The operator.
#[derive(Default)]
pub struct ConsumerLag;

impl Operator for ConsumerLag {
    type Input = Offsets;
    type Output = Lag;

    fn process(&mut self, offsets: Offsets, ctx: &mut Context<Lag>) -> Result<()> {
        let producer = *offsets
            .offset
            .get("producer")
            .ok_or_else(|| Error::new("the record has no `offset.producer`"))?;
        let lag = offsets
            .offset
            .into_iter()
            .filter(|(group, _)| group != "producer")
            .map(|(group, consumed)| (group, producer - consumed))
            .collect();
        ctx.emit(Lag {
            timestamp: offsets.timestamp,
            lag,
        })
    }
}

guest_sdk::export_operator!(ConsumerLag);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::Harness;
    use serde_json::json;

    #[test]
    fn lag_is_the_producer_offset_minus_each_consumers() {
        let mut h = Harness::<ConsumerLag>::new().unwrap();
        let input = json!({"timestamp": 1555516800, "offset": {"producer": 15, "consumer0": 10, "consumer1": 7, "consumer2": 12}});
        let expected = json!({"timestamp": 1555516800, "lag": {"consumer0": 5, "consumer1": 8, "consumer2": 3}});
        let first = h.push("", input.clone()).unwrap();
        assert_eq!(first, std::slice::from_ref(&expected));
        assert_eq!(
            h.push("", input).unwrap(),
            [expected],
            "same input, same output"
        );
    }

    #[test]
    fn a_report_without_producer_offset_is_an_error() {
        let mut h = Harness::<ConsumerLag>::new().unwrap();
        let err = h
            .push("", json!({"timestamp": 1, "offset": {"consumer0": 1}}))
            .unwrap_err();
        assert!(err.message().contains("offset.producer"), "{err}");
    }
}
