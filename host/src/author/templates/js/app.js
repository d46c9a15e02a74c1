// {{name}}: a running count of events per user. Make it yours: change `process`.
import { ValueState, exportOperator } from "./weir.js";

// The user's count so far: keyed state, snapshotted and restored by the host.
const count = new ValueState("count");

class Counter {
  process(event, ctx) {
    const n = count.get(0) + 1;
    count.set(n);
    ctx.emit({ user: event.user, count: n });
  }
}

export const guest = exportOperator(Counter);
