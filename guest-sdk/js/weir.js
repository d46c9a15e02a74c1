// Write Weir stream operators in JavaScript.
//
// An operator is an object (or class instance) with a `process(record, ctx)` method: it
// receives records one at a time (decoded from JSON), reads and writes keyed state (state
// scoped to the key of the record being processed), registers timers for that key (its
// `onTimer(timer, ctx)` is called when they fire) and emits output records. The host
// snapshots that state at checkpoints and restores it after failures: the operator never
// sees a checkpoint.
//
//     import { ValueState, exportOperator } from "./weir.js";
//
//     const visits = new ValueState("visits");
//
//     export const guest = exportOperator(class {
//       process(visit, ctx) {
//         const count = visits.get(0) + 1;
//         visits.set(count);
//         ctx.emit({ url: visit.url, count });
//       }
//     });
//
// State values (and map keys) are stored as compact JSON, exactly as the Rust SDK stores
// them, so `host state` can show them and a savepoint is readable by an operator written
// in any language. Keep everything that must survive a failure in state: fields of the
// operator object are lost on recovery.
//
// Build with `node <weir>/guest-sdk/js/build.mjs app.js -o app.wasm`, which puts this file
// beside your module and runs componentize-js against Weir's WIT.

import * as host from "weir:operator/state@0.3.0";
import * as operatorHost from "weir:operator/operator-state@0.3.0";
import * as timers from "weir:operator/timers@0.3.0";
import { emit as emitToSide } from "weir:operator/side-outputs@0.3.0";
import { log as hostLog } from "weir:operator/log@0.3.0";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Throw it (or any Error) from `process` to fail the record with a message. */
export class OperatorError extends Error {}

// The index, in the batch being processed, of the current record: keyed state is always
// that record's key's state. -1 outside `process`.
let current = -1;
// State ids by name: { id, kind }.
const ids = new Map();
// The operator's inputs ({ name, broadcast }, by index), as `open` got them.
let inputs = [];
// In a batch of a broadcast input: its name (its records have no key); else undefined.
let broadcasting;

const encode = (value) => encoder.encode(JSON.stringify(value));

function decode(name, bytes) {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch (e) {
    throw new OperatorError(`state \`${name}\` holds a value that is not JSON: ${e.message}`);
  }
}

/**
 * A keyed state's time-to-live, given to a handle with `withTtl`: each entry (a value, a
 * list element, a map entry) is forgotten `ms` milliseconds after its last renewal.
 * `Ttl.eventTime(ms)`: stamped with the record's event time, expired once the watermark
 * reaches stamp + `ms` (replayable); `Ttl.processingTime(ms)`: the host's wall clock (not
 * replayable). `.renewedOnRead()`: reads renew an entry too, not only writes.
 */
export class Ttl {
  constructor(ms, domain, onRead = false) {
    Object.assign(this, { ms, domain, onRead });
  }
  static eventTime(ms) {
    return new Ttl(ms, "event");
  }
  static processingTime(ms) {
    return new Ttl(ms, "processing");
  }
  renewedOnRead() {
    return new Ttl(this.ms, this.domain, true);
  }
}

class State {
  constructor(name, kind) {
    this.name = name;
    this.kind = kind;
    this.ttl = undefined;
  }

  /** This state with a time-to-live (see `Ttl`); returns the handle. */
  withTtl(ttl) {
    this.ttl = ttl;
    return this;
  }

  // [state id, record index] for a host call on the current record's key.
  target() {
    if (current < 0 && broadcasting !== undefined) {
      throw new OperatorError(
        `keyed state \`${this.name}\` is out of reach while processing a record of broadcast input \`${broadcasting}\`: its records have no key (reach this subtask's keys with ctx.forEachKey)`,
      );
    }
    if (current < 0) {
      throw new OperatorError(`keyed state \`${this.name}\` can only be used inside process`);
    }
    return [this.id(), current];
  }

  id() {
    let known = ids.get(this.name);
    if (known === undefined) {
      const id =
        this.ttl === undefined
          ? host.register(this.name, this.kind)
          : host.registerWithTtl(this.name, this.kind, {
              ttlMs: BigInt(this.ttl.ms),
              domain: this.ttl.domain,
              update: this.ttl.onRead ? "on-read-and-write" : "on-create-and-write",
            });
      known = { id, kind: this.kind };
      ids.set(this.name, known);
    } else if (known.kind !== this.kind) {
      throw new OperatorError(
        `state \`${this.name}\` is used as ${this.kind} state but was first used as ${known.kind} state`,
      );
    }
    return known.id;
  }
}

/** One value per key (Flink's ValueState). */
export class ValueState extends State {
  constructor(name) {
    super(name, "value");
  }
  /** The current key's value, or `otherwise` when it has none. */
  get(otherwise = undefined) {
    const bytes = host.valueGet(...this.target());
    return bytes === undefined ? otherwise : decode(this.name, bytes);
  }
  /** Sets the current key's value. */
  set(value) {
    host.valueUpdate(...this.target(), encode(value));
  }
  /** Removes the current key's value. */
  clear() {
    host.valueClear(...this.target());
  }
}

/** A list of values per key (Flink's ListState). */
export class ListState extends State {
  constructor(name) {
    super(name, "list");
  }
  /** The current key's elements in insertion order (empty when none). */
  get() {
    return host.listGet(...this.target()).map((e) => decode(this.name, e));
  }
  add(value) {
    host.listAdd(...this.target(), encode(value));
  }
  addAll(values) {
    host.listAddAll(...this.target(), values.map(encode));
  }
  update(values) {
    host.listUpdate(...this.target(), values.map(encode));
  }
  clear() {
    host.listClear(...this.target());
  }
}

// Operator list state ids by name: { id, mode }.
const operatorIds = new Map();

/** List state of this operator subtask, not of a key: usable in open, process and close. */
class OperatorList {
  constructor(name, mode) {
    this.name = name;
    this.mode = mode;
  }

  id() {
    let known = operatorIds.get(this.name);
    if (known === undefined) {
      known = { id: operatorHost.registerList(this.name, this.mode), mode: this.mode };
      operatorIds.set(this.name, known);
    } else if (known.mode !== this.mode) {
      throw new OperatorError(
        `operator state \`${this.name}\` is used as ${this.mode} list state but was first used as ${known.mode} list state`,
      );
    }
    return known.id;
  }

  /** All elements, in order. */
  get() {
    return operatorHost.listGet(this.id()).map((e) => decode(this.name, e));
  }
  add(value) {
    operatorHost.listAdd(this.id(), encode(value));
  }
  addAll(values) {
    operatorHost.listAddAll(this.id(), values.map(encode));
  }
  update(values) {
    operatorHost.listUpdate(this.id(), values.map(encode));
  }
  clear() {
    operatorHost.listClear(this.id());
  }
}

/** Operator list state with split redistribution: on rescale, every element goes to one new subtask. */
export class OperatorListState extends OperatorList {
  constructor(name) {
    super(name, "split");
  }
}

/** Operator list state with union redistribution: on rescale, every subtask gets all elements. */
export class UnionListState extends OperatorList {
  constructor(name) {
    super(name, "union");
  }
}

// Broadcast state ids by name.
const broadcastIds = new Map();

/**
 * Broadcast state (Flink's BroadcastState): a map that is the same on every subtask of the
 * operator. Readable everywhere; changed only while processing a record of a broadcast
 * input, which every subtask sees in the same order. On rescale every new subtask gets a
 * copy. Entries are ordered by their keys' JSON.
 */
export class BroadcastState {
  constructor(name) {
    this.name = name;
  }
  id() {
    let id = broadcastIds.get(this.name);
    if (id === undefined) {
      id = operatorHost.registerBroadcast(this.name);
      broadcastIds.set(this.name, id);
    }
    return id;
  }
  writable() {
    if (broadcasting === undefined) {
      throw new OperatorError(
        `broadcast state \`${this.name}\` can only change while processing a record of a broadcast input, so that every subtask makes the same change`,
      );
    }
    return this.id();
  }
  get(key, otherwise = undefined) {
    const bytes = operatorHost.broadcastGet(this.id(), encode(key));
    return bytes === undefined ? otherwise : decode(this.name, bytes);
  }
  entries() {
    return operatorHost
      .broadcastEntries(this.id())
      .map(([k, v]) => [decode(this.name, k), decode(this.name, v)]);
  }
  /** Sets `key` to `value`: only while processing a broadcast record. */
  put(key, value) {
    operatorHost.broadcastPut(this.writable(), encode(key), encode(value));
  }
  /** Removes `key`: only while processing a broadcast record. */
  remove(key) {
    operatorHost.broadcastRemove(this.writable(), encode(key));
  }
}

/** A map per key (Flink's MapState). Entries are ordered by their keys' JSON bytes. */
export class MapState extends State {
  constructor(name) {
    super(name, "map");
  }
  get(key, otherwise = undefined) {
    const bytes = host.mapGet(...this.target(), encode(key));
    return bytes === undefined ? otherwise : decode(this.name, bytes);
  }
  put(key, value) {
    host.mapPut(...this.target(), encode(key), encode(value));
  }
  putAll(entries) {
    host.mapPutAll(...this.target(), entries.map(([k, v]) => [encode(k), encode(v)]));
  }
  remove(key) {
    host.mapRemove(...this.target(), encode(key));
  }
  has(key) {
    return host.mapContains(...this.target(), encode(key));
  }
  entries() {
    return host
      .mapEntries(...this.target())
      .map(([k, v]) => [decode(this.name, k), decode(this.name, v)]);
  }
  keys() {
    return host.mapKeys(...this.target()).map((k) => decode(this.name, k));
  }
  values() {
    return host.mapValues(...this.target()).map((v) => decode(this.name, v));
  }
  isEmpty() {
    return host.mapIsEmpty(...this.target());
  }
  clear() {
    host.mapClear(...this.target());
  }
}

/** One value per key folded from everything added (Flink's ReducingState). */
export class ReducingState extends State {
  constructor(name, reduce) {
    super(name, "reducing");
    this.reduce = reduce;
  }
  get(otherwise = undefined) {
    const bytes = host.valueGet(...this.target());
    return bytes === undefined ? otherwise : decode(this.name, bytes);
  }
  /** Folds `value` into the current key's value (or starts it). */
  add(value) {
    const target = this.target();
    const bytes = host.valueGet(...target);
    const folded = bytes === undefined ? value : this.reduce(decode(this.name, bytes), value);
    host.valueUpdate(...target, encode(folded));
  }
  clear() {
    host.valueClear(...this.target());
  }
}

/**
 * Inputs folded into an accumulator per key, read through `result` (Flink's
 * AggregatingState): `create()` makes an empty accumulator, `add(acc, value)` folds.
 */
export class AggregatingState extends State {
  constructor(name, create, add, result) {
    super(name, "aggregating");
    Object.assign(this, { create, fold: add, result });
  }
  /** The result of the current key's accumulator, or `otherwise` when it has none. */
  get(otherwise = undefined) {
    const bytes = host.valueGet(...this.target());
    return bytes === undefined ? otherwise : this.result(decode(this.name, bytes));
  }
  add(value) {
    const target = this.target();
    const bytes = host.valueGet(...target);
    const acc = bytes === undefined ? this.create() : decode(this.name, bytes);
    host.valueUpdate(...target, encode(this.fold(acc, value)));
  }
  clear() {
    host.valueClear(...this.target());
  }
}

/** Writes `message` to the host's log; `level` is trace, debug, info, warn or error. */
export function log(level, message) {
  hostLog(level, String(message));
}

/**
 * What `process` (and `onTimer`) sees besides the record: its key, input and time,
 * timers, and where outputs go. `input` is the name of the input the record came from, as
 * the job file names it ("" in `onTimer`).
 */
class Context {
  constructor(key, timestamp, outputs, input) {
    this.key = key;
    this.input = input;
    // Milliseconds since the epoch (a Number), or undefined.
    this.timestamp = timestamp === undefined ? undefined : Number(timestamp);
    this.outputs = outputs;
  }
  /** Asks for `onTimer` for this key once the watermark reaches `timestamp` (epoch ms). */
  registerEventTimeTimer(timestamp) {
    timers.registerTimer("event", timerKey(), BigInt(timestamp));
  }
  /** Deletes this key's event-time timer at `timestamp`, if pending. */
  deleteEventTimeTimer(timestamp) {
    timers.deleteTimer("event", timerKey(), BigInt(timestamp));
  }
  /** Asks for `onTimer` once the host's wall clock reaches `timestamp`; not replayable. */
  registerProcessingTimeTimer(timestamp) {
    timers.registerTimer("processing", timerKey(), BigInt(timestamp));
  }
  /** Deletes this key's processing-time timer at `timestamp`, if pending. */
  deleteProcessingTimeTimer(timestamp) {
    timers.deleteTimer("processing", timerKey(), BigInt(timestamp));
  }
  /** The event-time watermark (a Number; records at or below it are late), or undefined. */
  currentWatermark() {
    const watermark = timers.currentWatermark();
    return watermark === undefined ? undefined : Number(watermark);
  }
  /** The host's wall clock in ms since the epoch (Wasm's own clocks are frozen). */
  currentProcessingTime() {
    return Number(timers.currentProcessingTime());
  }
  /** Emits `value` as an output record, at `timestamp` or else the input record's time. */
  emit(value, timestamp = this.timestamp) {
    this.outputs.push({
      payload: encode(value),
      timestamp: timestamp === undefined ? undefined : BigInt(timestamp),
    });
  }
  /**
   * Emits `value` to the side output `sideOutput` (the job file's `side_outputs`; a name
   * it does not declare fails the call), at `timestamp` or else the input record's time.
   * A failed call sends nothing anywhere.
   */
  emitTo(sideOutput, value, timestamp = this.timestamp) {
    const output = {
      payload: encode(value),
      timestamp: timestamp === undefined ? undefined : BigInt(timestamp),
    };
    emitToSide(sideOutput, flatten([output]));
  }
  /**
   * While processing a record of a broadcast input (which has no key): calls `fn(key, ctx)`
   * for every key of this subtask that holds `state`, in order, with every keyed state
   * handle acting on that key's state (Flink's applyToKeyedState).
   */
  forEachKey(state, fn) {
    if (broadcasting === undefined) {
      throw new OperatorError(
        "forEachKey is for records of a broadcast input: any other record names its key",
      );
    }
    const keys = host.selectKeys(state.id());
    try {
      keys.forEach((key, index) => {
        current = index;
        fn(decoder.decode(key), this);
      });
    } finally {
      current = -1;
    }
  }
}

const message = (e) => (e instanceof Error ? e.message : String(e));

// The record index naming the current key, for a timer.
function timerKey() {
  if (current < 0) {
    throw new OperatorError(
      "a timer needs a key: only inside process or onTimer, for a record that has one",
    );
  }
  return current;
}

/** A window's reports: its `result` (`update`: it came out before), or `late` (no window). */
class Fired {
  constructor(window, result, update) {
    Object.assign(this, { window, result, update, late: window === undefined });
  }
}

/** Counts a window's records: an aggregate (`create`, `add`, `merge`, `result`). */
export const Count = {
  create: () => 0,
  add: (acc) => acc + 1,
  merge: (acc, other) => acc + other,
  result: (acc) => acc,
};

/** Keeps a window's records, for a function that needs them all. */
export const Collect = {
  create: () => [],
  add: (acc, record) => [...acc, record],
  merge: (acc, other) => acc.concat(other),
  result: (acc) => acc,
};

const maxTimestamp = (window) => window.end - 1;

/**
 * Windowed aggregation for the current key over keyed state and timers, as the Rust SDK's
 * `guest_sdk::window` has it (the same state, a value state `name` holding
 * `[start, end, acc]` per open window, and the same outputs and semantics): tumbling, sliding or
 * session windows in event time (or processing time), each keeping an aggregate's
 * accumulator (`Count` by default, or any `{ create, add, merge, result }`). A window
 * `[start, end)` fires once the watermark reaches `end - 1`; it is kept `allowedLateness`
 * ms more, and a record for it in that time fires it again, updated; a record past every
 * window's lateness is reported `late`. Give it every record from `process` and every
 * timer from `onTimer`, and emit what it reports.
 */
export class Windows {
  constructor(name, { size, slide, gap, aggregate = Count, allowedLateness = 0, processingTime = false }) {
    const sizes = gap !== undefined ? [gap] : slide !== undefined ? [size, slide] : [size];
    if (sizes.some((n) => !(n > 0)) || allowedLateness < 0) {
      throw new OperatorError(
        `windows \`${name}\`: sizes, slides and gaps must be positive and the lateness not negative`,
      );
    }
    Object.assign(this, { size, slide, gap, aggregate, allowedLateness, processingTime });
    this.state = new ValueState(name);
  }
  static tumbling(name, sizeMs, options = {}) {
    return new Windows(name, { ...options, size: sizeMs });
  }
  static sliding(name, sizeMs, slideMs, options = {}) {
    return new Windows(name, { ...options, size: sizeMs, slide: slideMs });
  }
  static sessions(name, gapMs, options = {}) {
    return new Windows(name, { ...options, gap: gapMs });
  }

  assign(time) {
    const mod = (a, n) => ((a % n) + n) % n;
    if (this.gap !== undefined) return [{ start: time, end: time + this.gap }];
    if (this.slide === undefined) {
      const start = time - mod(time, this.size);
      return [{ start, end: start + this.size }];
    }
    const windows = [];
    for (let start = time - mod(time, this.slide); start > time - this.size; start -= this.slide) {
      windows.push({ start, end: start + this.size });
    }
    return windows;
  }

  cleanup(window) {
    return maxTimestamp(window) + (this.processingTime ? 0 : this.allowedLateness);
  }

  /** Adds `record`, the one being processed; returns the windows it fired again, or `late`. */
  add(record, ctx) {
    let time;
    let watermark;
    if (this.processingTime) {
      time = ctx.currentProcessingTime();
    } else {
      if (ctx.timestamp === undefined) {
        throw new OperatorError(
          "an event-time window needs the record's event time: set `event_time` on the source",
        );
      }
      time = ctx.timestamp;
      watermark = ctx.currentWatermark();
    }
    const agg = this.aggregate;
    let slots = this.state.get([]);
    const fired = [];
    let added = false;
    for (let window of this.assign(time)) {
      let merging = [];
      if (this.gap !== undefined) {
        const meets = (s) => s[0] <= window.end && window.start <= s[1];
        merging = slots.filter(meets);
        slots = slots.filter((s) => !meets(s));
      }
      window = {
        start: Math.min(window.start, ...merging.map((s) => s[0])),
        end: Math.max(window.end, ...merging.map((s) => s[1])),
      };
      if (watermark !== undefined && this.cleanup(window) <= watermark) {
        slots.push(...merging);
        continue;
      }
      const at = merging.length > 0 ? -1 : slots.findIndex((s) => s[0] === window.start);
      const wasThere = at >= 0;
      let acc;
      if (wasThere) {
        // Where the last slot goes, as the Rust SDK keeps them.
        acc = slots[at][2];
        slots[at] = slots[slots.length - 1];
        slots.pop();
      } else {
        acc = agg.create();
      }
      for (const [start, end, merged] of merging) {
        this.deleteTimers({ start, end }, ctx);
        acc = agg.merge(acc, merged);
      }
      acc = agg.add(acc, record);
      added = true;
      const firedAlready = watermark !== undefined && maxTimestamp(window) <= watermark;
      if (firedAlready) fired.push(new Fired(window, agg.result(acc), wasThere || merging.length > 0));
      if (!wasThere) this.setTimers(window, !firedAlready, ctx);
      slots.push([window.start, window.end, acc]);
    }
    this.keep(slots);
    if (!added) fired.push(new Fired(undefined, undefined, false));
    return fired;
  }

  /** The windows of the current key that `timer` fires; forgets those it ends. */
  onTimer(timer, ctx) {
    if (timer.domain !== (this.processingTime ? "processing" : "event")) return [];
    const slots = this.state.get([]);
    const fired = slots
      .filter(([, end]) => end - 1 === timer.timestamp)
      .map(([start, end, acc]) => new Fired({ start, end }, this.aggregate.result(acc), false));
    const kept = slots.filter(([start, end]) => this.cleanup({ start, end }) !== timer.timestamp);
    if (kept.length !== slots.length) this.keep(kept);
    return fired;
  }

  /** The current key's open windows and their results so far, by start. */
  pending() {
    return this.state
      .get([])
      .sort((a, b) => a[0] - b[0])
      .map(([start, end, acc]) => [{ start, end }, this.aggregate.result(acc)]);
  }

  keep(slots) {
    if (slots.length > 0) this.state.set(slots);
    else this.state.clear();
  }

  setTimers(window, fires, ctx) {
    if (this.processingTime) {
      ctx.registerProcessingTimeTimer(maxTimestamp(window));
      return;
    }
    const cleanup = this.cleanup(window);
    if (fires && maxTimestamp(window) !== cleanup) ctx.registerEventTimeTimer(maxTimestamp(window));
    ctx.registerEventTimeTimer(cleanup);
  }

  deleteTimers(window, ctx) {
    if (this.processingTime) {
      ctx.deleteProcessingTimeTimer(maxTimestamp(window));
      return;
    }
    const cleanup = this.cleanup(window);
    if (maxTimestamp(window) !== cleanup) ctx.deleteEventTimeTimer(maxTimestamp(window));
    ctx.deleteEventTimeTimer(cleanup);
  }
}

/**
 * Output records ({payload, timestamp}) as the WIT's `outputs`: one buffer and its ends,
 * the times, and which outputs have none.
 */
function flatten(outputs) {
  const payloads = new Uint8Array(outputs.reduce((total, o) => total + o.payload.length, 0));
  const ends = new Uint32Array(outputs.length);
  let end = 0;
  outputs.forEach((output, i) => {
    payloads.set(output.payload, end);
    end += output.payload.length;
    ends[i] = end;
  });
  const timestamps = BigInt64Array.from(outputs, (o) => o.timestamp ?? 0n);
  const untimed = [];
  outputs.forEach((o, i) => o.timestamp === undefined && untimed.push(i));
  return { payloads, ends, timestamps, untimed: Uint32Array.from(untimed) };
}

/**
 * The `guest` export for an operator class: `export const guest = exportOperator(MyOperator)`.
 * The host creates one instance per parallel subtask (`new MyOperator()`), calls
 * `open(config, task)` once if defined, `process(record, ctx)` for every record in order,
 * `onTimer(timer, ctx)` for each timer that fires ({ timestamp, domain: "event" or
 * "processing" }; state acts on the timer's key), and `close()` when the input ends, if
 * defined (after every event-time timer has fired).
 */
export function exportOperator(Operator) {
  let instance;
  return {
    open(config, task) {
      try {
        inputs = task.inputs.map((input) => ({ ...input }));
        instance = new Operator();
        instance.open?.(JSON.parse(config), { ...task });
      } catch (e) {
        throw message(e);
      }
    },
    process(batch) {
      if (instance === undefined) {
        throw { message: "process called before open", record: undefined };
      }
      // The batch and the outputs are flat buffers: see `batch` in the WIT.
      const outputs = [];
      const untimed = new Set(batch.untimed);
      let keyStart = 0;
      let payloadStart = 0;
      const input = inputs[batch.input] ?? { name: "", broadcast: false };
      for (let index = 0; index < batch.keyEnds.length; index++) {
        const keyEnd = batch.keyEnds[index];
        const payloadEnd = batch.payloadEnds[index];
        // A broadcast record has no key: no record index names one.
        current = input.broadcast ? -1 : index;
        broadcasting = input.broadcast ? input.name : undefined;
        try {
          const key = decoder.decode(batch.keys.subarray(keyStart, keyEnd));
          const time = untimed.has(index) ? undefined : batch.timestamps[index];
          const ctx = new Context(key, time, outputs, input.name);
          const payload = batch.payloads.subarray(payloadStart, payloadEnd);
          instance.process(JSON.parse(decoder.decode(payload)), ctx);
        } catch (e) {
          throw { message: message(e), record: index };
        } finally {
          current = -1;
          broadcasting = undefined;
        }
        keyStart = keyEnd;
        payloadStart = payloadEnd;
      }
      return flatten(outputs);
    },
    onTimer(fired) {
      if (instance === undefined) {
        throw { message: "on-timer called before open", record: undefined };
      }
      const outputs = [];
      const event = fired.domain === "event";
      let keyStart = 0;
      for (let index = 0; index < fired.keyEnds.length; index++) {
        const keyEnd = fired.keyEnds[index];
        current = index;
        try {
          const key = decoder.decode(fired.keys.subarray(keyStart, keyEnd));
          const timestamp = Number(fired.timestamps[index]);
          const ctx = new Context(key, event ? timestamp : undefined, outputs, "");
          instance.onTimer?.({ timestamp, domain: fired.domain }, ctx);
        } catch (e) {
          throw { message: message(e), record: index };
        } finally {
          current = -1;
        }
        keyStart = keyEnd;
      }
      return flatten(outputs);
    },
    close() {
      const closing = instance;
      instance = undefined;
      try {
        closing?.close?.();
      } catch (e) {
        throw message(e);
      }
    },
  };
}
