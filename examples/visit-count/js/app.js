// Visit count in JavaScript: a running count of visits per URL (the Rust example's twin).
import { ValueState, exportOperator } from "./weir.js";

const visits = new ValueState("visits");

class VisitCount {
  process(visit, ctx) {
    if (visit.url === undefined) throw new Error("missing field `url`");
    const count = visits.get(0) + 1;
    visits.set(count);
    ctx.emit({ url: visit.url, count });
  }
}

export const guest = exportOperator(VisitCount);
