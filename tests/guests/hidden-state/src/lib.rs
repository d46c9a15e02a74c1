//! A visit count that keeps its counts in a field of the operator, outside the managed
//! state API: right until the first restore, then it starts counting from zero. `host
//! test --restore-every N` must catch it.

use std::collections::HashMap;

use guest_sdk::{Context, Operator, Result};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Visit {
    pub url: String,
}

#[derive(Serialize)]
pub struct Count {
    pub url: String,
    pub count: u64,
}

#[derive(Default)]
pub struct HiddenState {
    counts: HashMap<String, u64>,
}

impl Operator for HiddenState {
    type Input = Visit;
    type Output = Count;

    fn process(&mut self, visit: Visit, ctx: &mut Context<Count>) -> Result<()> {
        let count = self.counts.entry(visit.url.clone()).or_insert(0);
        *count += 1;
        let count = *count;
        ctx.emit(Count {
            url: visit.url,
            count,
        })
    }
}

guest_sdk::export_operator!(HiddenState);
