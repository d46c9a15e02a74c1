//! Fraud rules (Flink's broadcast state pattern): a keyed stream of card transactions
//! and a broadcast stream of rules, a spending limit per merchant category. An alert is
//! raised for every transaction after which the card's running total in its category
//! exceeds the limit in force for that transaction.
//!
//! Rules change mid-stream, and nothing orders records across two inputs: a rule may
//! arrive before or after the transactions it governs. So rules are versioned, each
//! transaction names the version of its category's rule it was made under, and a
//! card's transactions are settled in their own order: one whose rule has not arrived
//! yet waits in keyed state, with every later transaction of the card, until the rule
//! arrives (then `for_each_key` settles the waiting transactions of every card). The
//! alerts are the same however the two inputs interleave.
//!
//! Keyed by `/card`: `WAITING` (the card's unsettled transactions, in order) and
//! `TOTALS` (its running total per category); broadcast state `RULES`.

use guest_sdk::{BroadcastState, Context, ListState, MapState, Operator, Result};
use serde::{Deserialize, Serialize};

/// Limits by (category, version), the same on every subtask.
pub const RULES: BroadcastState<(String, u32), u64> = BroadcastState::new("rules");
/// The card's transactions that wait for their rule, in arrival order.
pub const WAITING: ListState<Transaction> = ListState::new("waiting");
/// The card's running total per category (in cents).
pub const TOTALS: MapState<String, u64> = MapState::new("totals");

/// A card transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// The card: the key.
    pub card: String,
    /// Merchant category.
    pub category: String,
    /// Amount in cents.
    pub amount: u64,
    /// The version of the category's rule the transaction was made under.
    pub rule: u32,
}

/// A rule: from this version on, a card's total in `category` may not exceed `limit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rule {
    /// Merchant category.
    pub category: String,
    /// Rule version (per category).
    pub version: u32,
    /// Spending limit in cents.
    pub limit: u64,
}

/// What the operator reads: a record of either input.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Record {
    /// From `transactions`.
    Transaction(Transaction),
    /// From `rules` (broadcast).
    Rule(Rule),
}

/// An alert: the card's total in the category exceeds the limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The card.
    pub card: String,
    /// Merchant category.
    pub category: String,
    /// The card's total in it after the transaction.
    pub total: u64,
    /// The limit in force for the transaction.
    pub limit: u64,
    /// That limit's rule version.
    pub rule: u32,
}

/// The operator.
#[derive(Default)]
pub struct FraudRules;

impl Operator for FraudRules {
    type Input = Record;
    type Output = Alert;

    fn process(&mut self, record: Record, ctx: &mut Context<Alert>) -> Result<()> {
        match record {
            Record::Rule(rule) => {
                RULES.put(&(rule.category, rule.version), &rule.limit)?;
                // Transactions that waited for this rule may be settled now.
                ctx.for_each_key(&WAITING, |_, ctx| settle(Vec::new(), ctx))
            }
            Record::Transaction(tx) => settle(vec![tx], ctx),
        }
    }
}

/// Settles the current card's waiting transactions, then `new` ones, in order, up to the
/// first whose rule has not arrived; that one and every later one keep waiting.
fn settle(new: Vec<Transaction>, ctx: &mut Context<Alert>) -> Result<()> {
    let mut waiting = WAITING.get()?;
    let before = waiting.len();
    waiting.extend(new);
    let mut settled = 0;
    for tx in &waiting {
        let Some(limit) = RULES.get(&(tx.category.clone(), tx.rule))? else {
            break;
        };
        let total = TOTALS.get(&tx.category)?.unwrap_or(0) + tx.amount;
        TOTALS.put(&tx.category, &total)?;
        if total > limit {
            ctx.emit(Alert {
                card: tx.card.clone(),
                category: tx.category.clone(),
                total,
                limit,
                rule: tx.rule,
            })?;
        }
        settled += 1;
    }
    if settled > 0 || waiting.len() != before {
        WAITING.update(&waiting[settled..])?;
    }
    Ok(())
}

guest_sdk::export_operator!(FraudRules);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::Harness;
    use serde_json::{Value, json};

    fn harness() -> Harness<FraudRules> {
        Harness::with_inputs(json!({}), &["transactions"], &["rules"]).expect("the operator opens")
    }

    fn tx(card: &str, category: &str, amount: u64, rule: u32) -> Value {
        json!({"card": card, "category": category, "amount": amount, "rule": rule})
    }

    fn rule(category: &str, version: u32, limit: u64) -> Value {
        json!({"category": category, "version": version, "limit": limit})
    }

    fn alert(card: &str, category: &str, total: u64, limit: u64, rule: u32) -> Value {
        json!({"card": card, "category": category, "total": total, "limit": limit, "rule": rule})
    }

    #[test]
    fn a_total_over_the_limit_raises_an_alert() {
        let mut h = harness();
        assert!(
            h.push_to("rules", "", rule("food", 1, 100))
                .unwrap()
                .is_empty()
        );
        assert!(
            h.push_to("transactions", "c1", tx("c1", "food", 60, 1))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            h.push_to("transactions", "c1", tx("c1", "food", 50, 1))
                .unwrap(),
            [alert("c1", "food", 110, 100, 1)]
        );
        // Another card, another category: totals of their own.
        assert!(
            h.push_to("transactions", "c2", tx("c2", "food", 60, 1))
                .unwrap()
                .is_empty()
        );
        assert_eq!(h.state(&TOTALS, "c1"), [("food".to_string(), 110)]);
        assert_eq!(h.broadcast_state(&RULES), [(("food".to_string(), 1), 100)]);
    }

    #[test]
    fn transactions_wait_in_order_for_their_rule() {
        let mut h = harness();
        h.push_to("rules", "", rule("food", 1, 100)).unwrap();
        // Made under version 2, which has not arrived: waits, and so does the next one
        // (its rule is here, but the card's transactions settle in order).
        assert!(
            h.push_to("transactions", "c1", tx("c1", "food", 90, 2))
                .unwrap()
                .is_empty()
        );
        assert!(
            h.push_to("transactions", "c1", tx("c1", "food", 20, 1))
                .unwrap()
                .is_empty()
        );
        assert_eq!(h.state(&WAITING, "c1").len(), 2);
        assert_eq!(
            h.push_to("rules", "", rule("food", 2, 50)).unwrap(),
            [
                alert("c1", "food", 90, 50, 2),
                alert("c1", "food", 110, 100, 1)
            ]
        );
        assert!(h.state(&WAITING, "c1").is_empty());
    }

    #[test]
    fn the_alerts_do_not_depend_on_how_the_inputs_interleave() {
        let rules = [
            rule("food", 1, 100),
            rule("food", 2, 30),
            rule("fuel", 1, 10),
        ];
        let txs = [
            ("c1", tx("c1", "food", 70, 1)),
            ("c1", tx("c1", "food", 40, 2)),
            ("c2", tx("c2", "fuel", 11, 1)),
            ("c1", tx("c1", "fuel", 5, 1)),
        ];
        let mut runs = Vec::new();
        for rules_after in 0..=txs.len() {
            let mut h = harness();
            let mut alerts = Vec::new();
            for (i, (card, t)) in txs.iter().enumerate() {
                if i == rules_after {
                    for r in &rules {
                        alerts.extend(h.push_to("rules", "", r.clone()).unwrap());
                    }
                }
                alerts.extend(h.push_to("transactions", card, t.clone()).unwrap());
            }
            if rules_after == txs.len() {
                for r in &rules {
                    alerts.extend(h.push_to("rules", "", r.clone()).unwrap());
                }
            }
            alerts.sort_by_key(|a| a.to_string());
            runs.push(alerts);
        }
        assert_eq!(runs[0].len(), 2, "{:?}", runs[0]);
        for run in &runs {
            assert_eq!(run, &runs[0]);
        }
    }

    #[test]
    fn broadcast_state_changes_only_with_broadcast_records_and_is_copied_on_rescale() {
        let mut h = harness();
        h.push_to("rules", "", rule("food", 1, 100)).unwrap();
        h.push_to("transactions", "c1", tx("c1", "food", 10, 1))
            .unwrap();
        let rescaled = Harness::<FraudRules>::restore_rescaled(&[h.snapshot()], 3).unwrap();
        for h in &rescaled {
            assert_eq!(h.broadcast_state(&RULES), [(("food".to_string(), 1), 100)]);
        }
        // A rule arriving on the keyed input is refused: it would change one subtask's
        // broadcast state only.
        let error = h
            .push_to("transactions", "c1", rule("food", 9, 1))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("can only change while processing a record of a broadcast input"),
            "{error}"
        );
    }
}
