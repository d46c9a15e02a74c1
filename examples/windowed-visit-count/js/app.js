// Visits per URL per minute of event time in JavaScript (the Rust example's twin, with
// the same outputs): tumbling one-minute windows kept 10 s after they fire; later visits
// go to the side output `late`.
import { Windows, exportOperator } from "./weir.js";

const perMinute = Windows.tumbling("visits-per-minute", 60_000, { allowedLateness: 10_000 });

function emit(fired, visit, ctx) {
  for (const f of fired) {
    if (f.late) {
      ctx.emitTo("late", visit);
    } else {
      const { start, end } = f.window;
      const counted = { url: ctx.key, start, end, visits: f.result, update: f.update };
      ctx.emit(counted, f.window.end - 1);
    }
  }
}

export const guest = exportOperator(
  class {
    process(visit, ctx) {
      emit(perMinute.add(visit, ctx), visit, ctx);
    }
    onTimer(timer, ctx) {
      emit(perMinute.onTimer(timer, ctx), undefined, ctx);
    }
  },
);
