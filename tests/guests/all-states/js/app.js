// The all-states test guest in JavaScript: every state kind and access method, emitting
// the state after each record exactly as the Rust version does.
import {
  AggregatingState,
  ListState,
  MapState,
  ReducingState,
  ValueState,
  exportOperator,
} from "./weir.js";

const seen = new ValueState("seen");
const last = new ListState("last");
const byResidue = new MapState("by-residue");
const max = new ReducingState("max", Math.max);
const mean = new AggregatingState(
  "mean",
  () => [0, 0],
  ([sum, n], v) => [sum + v, n + 1],
  ([sum, n]) => sum / n,
);
// Rust's rem_euclid: the residue is never negative.
const residue = (v) => ((v % 5) + 5) % 5;

class AllStates {
  process(record, ctx) {
    const v = record.v ?? record.seq;
    if (v === 0) {
      for (const state of [seen, last, byResidue, max, mean]) state.clear();
    } else {
      seen.set(seen.get(0) + 1);
      last.add(v);
      const kept = last.get();
      if (kept.length > 3) last.update(kept.slice(-3));
      if (v % 2 === 0) last.addAll([v, -v]);
      byResidue.put(residue(v), v);
      if (v % 7 === 0) byResidue.remove(residue(v));
      if (v % 11 === 0) byResidue.putAll([[100, v], [-100, -v]]);
      max.add(v);
      mean.add(v);
    }
    ctx.emit({
      key: record.key,
      seen: seen.get(null),
      last: last.get(),
      entries: byResidue.entries(),
      keys: byResidue.keys(),
      values: byResidue.values(),
      has_residue_3: byResidue.has(3),
      empty: byResidue.isEmpty(),
      residue_of_v: byResidue.get(residue(v), null),
      max: max.get(null),
      mean: mean.get(null),
      time: ctx.timestamp ?? null,
    });
  }
}

export const guest = exportOperator(AllStates);
