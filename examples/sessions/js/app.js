// Sessions per user in JavaScript (the Rust example's twin, with the same outputs): a
// 30-minute gap ends a session; each comes out with its length and page count.
import { Windows, exportOperator } from "./weir.js";

const GAP_MS = 30 * 60_000;
const sessions = Windows.sessions("sessions", GAP_MS);

function emit(fired, click, ctx) {
  for (const f of fired) {
    if (f.late) {
      ctx.emitTo("late", click);
    } else {
      const { start, end } = f.window;
      const session = { user: ctx.key, start, end, length_ms: end - GAP_MS - start, pages: f.result };
      ctx.emit(session, end - 1);
    }
  }
}

export const guest = exportOperator(
  class {
    process(click, ctx) {
      emit(sessions.add(click, ctx), click, ctx);
    }
    onTimer(timer, ctx) {
      emit(sessions.onTimer(timer, ctx), undefined, ctx);
    }
  },
);
