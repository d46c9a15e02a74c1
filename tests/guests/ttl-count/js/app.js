// The TTL count test guest in JavaScript: `count` and `recent` expire after the config's
// `ttl_ms` (`domain` "event" or "processing"), `total` never does; the Rust version's
// outputs exactly.
import { ListState, Ttl, ValueState, exportOperator } from "./weir.js";

const count = new ValueState("count");
const recent = new ListState("recent");
const total = new ValueState("total");

export const guest = exportOperator(
  class {
    open(config) {
      const ms = config.ttl_ms ?? 1000;
      const domain = config.domain ?? "event";
      count.withTtl(new Ttl(ms, domain));
      recent.withTtl(new Ttl(ms, domain));
    }
    process(event, ctx) {
      const n = count.get(0) + 1;
      count.set(n);
      recent.add(ctx.timestamp ?? 0);
      const all = total.get(0) + 1;
      total.set(all);
      ctx.emit({ key: event.key, count: n, recent: recent.get().length, total: all });
    }
  },
);
