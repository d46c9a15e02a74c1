// State machine in JavaScript: alerts on invalid event sequences per address (the Rust
// example's twin).
import { OperatorError, ValueState, exportOperator } from "./weir.js";

// The address's current state; absent means "Initial".
const state = new ValueState("state");

// TRANSITIONS[state][event] is the next state; a missing entry has no transition.
const TRANSITIONS = {
  Initial: { a: "W", c: "X" },
  W: { b: "Y", d: "Z" },
  X: { b: "Y", d: "Z" },
  Y: { e: "Z" },
  Z: { g: "Terminal" },
  Terminal: {},
};
const EVENTS = new Set(["a", "b", "c", "d", "e", "f", "g"]);

class StateMachine {
  process(event, ctx) {
    const { address, type } = event;
    if (typeof address !== "string") throw new OperatorError("missing field `address`");
    if (!EVENTS.has(type)) throw new OperatorError(`unknown event type ${JSON.stringify(type)}`);
    const current = state.get("Initial");
    const following = TRANSITIONS[current][type];
    if (following === undefined) {
      ctx.emit({ address, state: current, event: type });
    } else if (following === "Terminal") {
      state.clear();
    } else {
      state.set(following);
    }
  }
}

export const guest = exportOperator(StateMachine);
