// Idle alert in JavaScript: the state machine per address, plus an alert when an address
// stops mid-sequence for `idle_ms` (default 30 s) of event time (the Rust example's twin).
import { OperatorError, ValueState, exportOperator } from "./weir.js";

// The address's current state; absent means "Initial".
const state = new ValueState("state");
// When the address's idle timer fires; absent: none set.
const deadline = new ValueState("deadline");

// TRANSITIONS[state][event] is the next state, as in the state-machine example.
const TRANSITIONS = {
  Initial: { a: "W", c: "X" },
  W: { b: "Y", d: "Z" },
  X: { b: "Y", d: "Z" },
  Y: { e: "Z" },
  Z: { g: "Terminal" },
  Terminal: {},
};

class IdleAlert {
  open(config) {
    this.idleMs = config.idle_ms ?? 30000;
  }

  process(event, ctx) {
    if (ctx.timestamp === undefined) {
      throw new OperatorError("the record has no event time: set `event_time`");
    }
    const { address, type } = event;
    const current = state.get("Initial");
    const following = TRANSITIONS[current][type];
    const pending = deadline.get();
    if (pending !== undefined) {
      ctx.deleteEventTimeTimer(pending);
      deadline.clear();
    }
    if (following === undefined) {
      ctx.emit({ alert: "invalid", address, state: current, event: type });
    } else if (following === "Terminal") {
      state.clear();
      return;
    } else {
      state.set(following);
    }
    const next = ctx.timestamp + this.idleMs;
    ctx.registerEventTimeTimer(next);
    deadline.set(next);
  }

  onTimer(timer, ctx) {
    deadline.clear();
    ctx.emit({
      alert: "idle",
      address: ctx.key,
      state: state.get("Initial"),
      last_event: timer.timestamp - this.idleMs,
    });
  }
}

export const guest = exportOperator(IdleAlert);
