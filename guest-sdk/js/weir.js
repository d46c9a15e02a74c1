// Write Weir stream operators in JavaScript.
//
// An operator is an object (or class instance) with a `process(record, ctx)` method: it
// receives records one at a time (decoded from JSON), reads and writes keyed state (state
// scoped to the key of the record being processed) and emits output records. The host
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

import * as host from "weir:operator/state@0.1.0";
import * as operatorHost from "weir:operator/operator-state@0.1.0";
import { log as hostLog } from "weir:operator/log@0.1.0";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Throw it (or any Error) from `process` to fail the record with a message. */
export class OperatorError extends Error {}

// The index, in the batch being processed, of the current record: keyed state is always
// that record's key's state. -1 outside `process`.
let current = -1;
// State ids by name: { id, kind }.
const ids = new Map();

const encode = (value) => encoder.encode(JSON.stringify(value));

function decode(name, bytes) {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch (e) {
    throw new OperatorError(`state \`${name}\` holds a value that is not JSON: ${e.message}`);
  }
}

class State {
  constructor(name, kind) {
    this.name = name;
    this.kind = kind;
  }

  // [state id, record index] for a host call on the current record's key.
  target() {
    if (current < 0) {
      throw new OperatorError(`keyed state \`${this.name}\` can only be used inside process`);
    }
    let known = ids.get(this.name);
    if (known === undefined) {
      known = { id: host.register(this.name, this.kind), kind: this.kind };
      ids.set(this.name, known);
    } else if (known.kind !== this.kind) {
      throw new OperatorError(
        `state \`${this.name}\` is used as ${this.kind} state but was first used as ${known.kind} state`,
      );
    }
    return [known.id, current];
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

/** What `process` sees besides the record: its key and time, and where outputs go. */
class Context {
  constructor(key, timestamp, outputs) {
    this.key = key;
    // Milliseconds since the epoch (a Number), or undefined.
    this.timestamp = timestamp === undefined ? undefined : Number(timestamp);
    this.outputs = outputs;
  }
  /** Emits `value` as an output record, at `timestamp` or else the input record's time. */
  emit(value, timestamp = this.timestamp) {
    this.outputs.push({
      payload: encode(value),
      timestamp: timestamp === undefined ? undefined : BigInt(timestamp),
    });
  }
}

const message = (e) => (e instanceof Error ? e.message : String(e));

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
 * and `close()` when the input ends, if defined.
 */
export function exportOperator(Operator) {
  let instance;
  return {
    open(config, task) {
      try {
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
      for (let index = 0; index < batch.keyEnds.length; index++) {
        const keyEnd = batch.keyEnds[index];
        const payloadEnd = batch.payloadEnds[index];
        current = index;
        try {
          const key = decoder.decode(batch.keys.subarray(keyStart, keyEnd));
          const time = untimed.has(index) ? undefined : batch.timestamps[index];
          const ctx = new Context(key, time, outputs);
          const payload = batch.payloads.subarray(payloadStart, payloadEnd);
          instance.process(JSON.parse(decoder.decode(payload)), ctx);
        } catch (e) {
          throw { message: message(e), record: index };
        } finally {
          current = -1;
        }
        keyStart = keyEnd;
        payloadStart = payloadEnd;
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
