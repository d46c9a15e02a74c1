// Fraud rules in JavaScript: the Rust example's twin (see src/lib.rs for the design).
import { BroadcastState, ListState, MapState, exportOperator } from "./weir.js";

const rules = new BroadcastState("rules");
const waiting = new ListState("waiting");
const totals = new MapState("totals");

// Settles the current card's waiting transactions, then `fresh` ones, in order, up to
// the first whose rule has not arrived.
function settle(fresh, ctx) {
  const before = waiting.get();
  const all = before.concat(fresh);
  let settled = 0;
  for (const tx of all) {
    const limit = rules.get([tx.category, tx.rule]);
    if (limit === undefined) break;
    const total = totals.get(tx.category, 0) + tx.amount;
    totals.put(tx.category, total);
    if (total > limit) {
      ctx.emit({ card: tx.card, category: tx.category, total, limit, rule: tx.rule });
    }
    settled++;
  }
  if (settled > 0 || all.length !== before.length) waiting.update(all.slice(settled));
}

class FraudRules {
  process(record, ctx) {
    if (ctx.input === "rules") {
      rules.put([record.category, record.version], record.limit);
      ctx.forEachKey(waiting, (card, ctx) => settle([], ctx));
    } else {
      settle([record], ctx);
    }
  }
}

export const guest = exportOperator(FraudRules);
