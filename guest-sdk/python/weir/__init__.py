"""Write Weir stream operators in Python.

An operator is a subclass of :class:`Operator`: it receives records one at a time
(decoded from JSON), reads and writes *keyed state* (state scoped to the key of the
record being processed), registers timers for that key (`on_timer` is called when they
fire) and emits output records. The host snapshots that state at
checkpoints and restores it after failures: the operator never sees a checkpoint.

    import weir

    VISITS = weir.ValueState("visits")

    class VisitCount(weir.Operator):
        def process(self, visit, ctx):
            count = VISITS.get(0) + 1
            VISITS.set(count)
            ctx.emit({"url": visit["url"], "count": count})

    Guest = weir.export(VisitCount)

State values (and map keys) are stored as compact JSON, exactly as the Rust SDK stores
them, so `host state` can show them and a savepoint is readable by an operator written
in any language. Keep everything that must survive a failure in state: attributes of
the operator object are lost on recovery.

Build with `componentize-py -d <weir>/wit -w operator componentize -p <weir>/guest-sdk/python
-p . app -o app.wasm`, where `app.py` is the module that assigns `Guest`.
"""

import json
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple, Type

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log as _log
from wit_world.imports import operator_state as _operator_state
from wit_world.imports import side_outputs as _side_outputs
from wit_world.imports import state as _state
from wit_world.imports import timers as _timers
from wit_world.imports import types as _types

__all__ = [
    "Operator",
    "Context",
    "Timer",
    "TaskInfo",
    "Ttl",
    "OperatorError",
    "ValueState",
    "ListState",
    "MapState",
    "ReducingState",
    "AggregatingState",
    "OperatorListState",
    "UnionListState",
    "BroadcastState",
    "Window",
    "Windows",
    "Fired",
    "Count",
    "Collect",
    "log",
    "export",
]


class OperatorError(Exception):
    """Raise it (or any exception) from `process` to fail the record with a message."""


@dataclass(frozen=True)
class TaskInfo:
    """Which instance of which operator this is."""

    operator: str
    subtask: int
    parallelism: int
    attempt: int


@dataclass(frozen=True)
class Timer:
    """A timer that came due: its `timestamp` (milliseconds since the epoch) and its
    `domain`, "event" (fires once the watermark reaches it; replayable) or
    "processing" (the host's wall clock; not replayable)."""

    timestamp: int
    domain: str


_DOMAINS = {"event": _types.TimeDomain.EVENT, "processing": _types.TimeDomain.PROCESSING}


@dataclass(frozen=True)
class Ttl:
    """A keyed state's time-to-live, given to a handle with `with_ttl`: each entry (a
    value, a list element, a map entry) is forgotten `ms` milliseconds after its last
    renewal. `domain` "event": stamped with the record's event time, expired once the
    watermark reaches stamp + `ms` (replayable); "processing": the host's wall clock
    (not replayable). `renewed_on_read`: reads renew an entry too, not only writes."""

    ms: int
    domain: str = "event"
    renewed_on_read: bool = False

    @staticmethod
    def event_time(ms: int) -> "Ttl":
        return Ttl(ms, "event")

    @staticmethod
    def processing_time(ms: int) -> "Ttl":
        return Ttl(ms, "processing")


class Context:
    """What `process` (and `on_timer`) sees besides the record: its key, input and
    time, timers, and where outputs go. `input` is the name of the input the record
    came from, as the job file's `input` names it ("" in `on_timer`)."""

    def __init__(self, key: str, timestamp: Optional[int], input: str = ""):
        self.key = key
        self.timestamp = timestamp
        self.input = input
        self._outputs: List[Tuple[bytes, Optional[int]]] = []

    def for_each_key(self, state: "_State", fn: Callable[[str, "Context"], None]) -> None:
        """While processing a record of a broadcast input (which has no key): calls
        `fn(key, ctx)` for every key of this subtask that holds `state`, in order (by key
        group, then key bytes), with every keyed state handle acting on that key's state
        (Flink's applyToKeyedState)."""
        global _current
        if _broadcast is None:
            raise OperatorError(
                "for_each_key is for records of a broadcast input: any other record names its key"
            )
        keys = _state.select_keys(state._id())
        try:
            for index, key in enumerate(keys):
                _current = index
                fn(key.decode(), self)
        finally:
            _current = None

    def register_event_time_timer(self, timestamp: int) -> None:
        """Asks for `on_timer` for this key once the watermark reaches `timestamp`
        (milliseconds since the epoch); one timer per key and timestamp."""
        _timers.register_timer(_DOMAINS["event"], self._timer_key(), timestamp)

    def delete_event_time_timer(self, timestamp: int) -> None:
        """Deletes this key's event-time timer at `timestamp`, if pending."""
        _timers.delete_timer(_DOMAINS["event"], self._timer_key(), timestamp)

    def register_processing_time_timer(self, timestamp: int) -> None:
        """Asks for `on_timer` for this key once the host's wall clock reaches
        `timestamp` (see `current_processing_time`); not replayable."""
        _timers.register_timer(_DOMAINS["processing"], self._timer_key(), timestamp)

    def delete_processing_time_timer(self, timestamp: int) -> None:
        """Deletes this key's processing-time timer at `timestamp`, if pending."""
        _timers.delete_timer(_DOMAINS["processing"], self._timer_key(), timestamp)

    def current_watermark(self) -> Optional[int]:
        """The event-time watermark (records at or below it are late), or None before
        the first one."""
        return _timers.current_watermark()

    def current_processing_time(self) -> int:
        """The host's wall clock in milliseconds since the epoch: the one clock an
        operator can read (Wasm's own clocks are frozen); not replayable."""
        return _timers.current_processing_time()

    def _timer_key(self) -> int:
        if _current is None:
            raise OperatorError(
                "a timer needs a key: only inside process or on_timer, for a record that has one"
            )
        return _current

    def emit(self, value: Any, timestamp: Optional[int] = None) -> None:
        """Emits `value` (anything `json.dumps` takes) as an output record, at
        `timestamp` (milliseconds since the epoch) or else the input record's time."""
        payload = _encode(value)
        time = self.timestamp if timestamp is None else timestamp
        self._outputs.append((payload, time))

    def emit_to(self, side_output: str, value: Any, timestamp: Optional[int] = None) -> None:
        """Emits `value` to the side output `side_output` (the job file's
        `side_outputs`; a name it does not declare fails the call), at `timestamp` or
        else the input record's time. A failed call sends nothing anywhere."""
        time = self.timestamp if timestamp is None else timestamp
        payloads, ends, times, untimed = bytearray(), [], [], []
        _flatten([(_encode(value), time)], payloads, ends, times, untimed)
        _side_outputs.emit(side_output, _types.Outputs(bytes(payloads), ends, times, untimed))


class Operator:
    """A stream operator. The host creates one per parallel instance (no arguments),
    calls `open` once, `process` for every record in order, and `close` when the input
    ends."""

    def open(self, config: dict, task: TaskInfo) -> None:
        """Called once before the first record with the `[operator.config]` table."""

    def process(self, record: Any, ctx: Context) -> None:
        """Processes one record; state handles act on this record's key."""
        raise NotImplementedError("an operator must define process(self, record, ctx)")

    def on_timer(self, timer: Timer, ctx: Context) -> None:
        """Called for a timer of `ctx.key` that came due, in timestamp order, between
        records; state handles act on that key, outputs go out as from `process` (at
        the timer's timestamp for an event-time timer). Every event-time timer fires
        before `close`."""

    def close(self) -> None:
        """Called once after the last record of a job that finishes."""


def log(level: str, message: str) -> None:
    """Writes `message` to the host's log; `level` is trace, debug, info, warn or error."""
    _log.log(_LEVELS[level], str(message))


_LEVELS = {
    "trace": _log.Level.TRACE,
    "debug": _log.Level.DEBUG,
    "info": _log.Level.INFO,
    "warn": _log.Level.WARN,
    "error": _log.Level.ERROR,
}

# The index, in the batch being processed, of the current record: keyed state is
# always that record's key's state. None outside `process`.
_current: Optional[int] = None
# State ids by name, with the kind each name was first used as.
_ids: dict = {}
# The operator's inputs: (name, broadcast) by index, as `open` got them.
_inputs: List[Tuple[str, bool]] = []
# In a batch of a broadcast input: its name (its records have no key).
_broadcast: Optional[str] = None


def _encode(value: Any) -> bytes:
    # Compact and in insertion order: byte-for-byte what serde_json writes.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _decode(name: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise OperatorError(f"state `{name}` holds a value that is not JSON: {e}") from None


class _State:
    _kind: _types.StateKind

    def __init__(self, name: str):
        self.name = name
        self._ttl: Optional[Ttl] = None

    def with_ttl(self, ttl: Ttl) -> "_State":
        """This state with a time-to-live (see `Ttl`); returns the handle."""
        if ttl.domain not in _DOMAINS:
            raise OperatorError(f"state `{self.name}`: a TTL's domain is \"event\" or \"processing\"")
        self._ttl = ttl
        return self

    def _target(self) -> Tuple[int, int]:
        if _current is None and _broadcast is not None:
            raise OperatorError(
                f"keyed state `{self.name}` is out of reach while processing a record of "
                f"broadcast input `{_broadcast}`: its records have no key (reach this "
                "subtask's keys with ctx.for_each_key)"
            )
        if _current is None:
            raise OperatorError(f"keyed state `{self.name}` can only be used inside process")
        return self._id(), _current

    def _id(self) -> int:
        known = _ids.get(self.name)
        if known is None:
            if self._ttl is None:
                id = _state.register(self.name, self._kind)
            else:
                update = (
                    _state.TtlUpdate.ON_READ_AND_WRITE
                    if self._ttl.renewed_on_read
                    else _state.TtlUpdate.ON_CREATE_AND_WRITE
                )
                ttl = _state.Ttl(ttl_ms=self._ttl.ms, domain=_DOMAINS[self._ttl.domain], update=update)
                id = _state.register_with_ttl(self.name, self._kind, ttl)
            known = (id, self._kind)
            _ids[self.name] = known
        elif known[1] != self._kind:
            raise OperatorError(
                f"state `{self.name}` is used as {self._kind.name.lower()} state but was "
                f"first used as {known[1].name.lower()} state"
            )
        return known[0]


class ValueState(_State):
    """One value per key (Flink's ValueState)."""

    _kind = _types.StateKind.VALUE

    def get(self, default: Any = None) -> Any:
        """The current key's value, or `default` when it has none."""
        data = _state.value_get(*self._target())
        return default if data is None else _decode(self.name, data)

    def set(self, value: Any) -> None:
        """Sets the current key's value."""
        _state.value_update(*self._target(), _encode(value))

    def clear(self) -> None:
        """Removes the current key's value."""
        _state.value_clear(*self._target())


class ListState(_State):
    """A list of values per key (Flink's ListState)."""

    _kind = _types.StateKind.LIST

    def get(self) -> list:
        """The current key's elements in insertion order (empty when none)."""
        return [_decode(self.name, e) for e in _state.list_get(*self._target())]

    def add(self, value: Any) -> None:
        """Appends one element."""
        _state.list_add(*self._target(), _encode(value))

    def add_all(self, values: list) -> None:
        """Appends several elements."""
        _state.list_add_all(*self._target(), [_encode(v) for v in values])

    def update(self, values: list) -> None:
        """Replaces all elements."""
        _state.list_update(*self._target(), [_encode(v) for v in values])

    def clear(self) -> None:
        """Removes all elements."""
        _state.list_clear(*self._target())


class _OperatorList:
    """List state of this operator subtask, not of a key: usable in open, process and
    close. Registered at its first use."""

    _mode: Any

    def __init__(self, name: str):
        self.name = name

    def _id(self) -> int:
        known = _operator_ids.get(self.name)
        if known is None:
            known = (_operator_state.register_list(self.name, self._mode), self._mode)
            _operator_ids[self.name] = known
        elif known[1] != self._mode:
            raise OperatorError(
                f"operator state `{self.name}` is used as {self._mode.name.lower()} list "
                f"state but was first used as {known[1].name.lower()} list state"
            )
        return known[0]

    def get(self) -> list:
        """All elements, in order."""
        return [_decode(self.name, e) for e in _operator_state.list_get(self._id())]

    def add(self, value: Any) -> None:
        """Appends one element."""
        _operator_state.list_add(self._id(), _encode(value))

    def add_all(self, values: list) -> None:
        """Appends several elements."""
        _operator_state.list_add_all(self._id(), [_encode(v) for v in values])

    def update(self, values: list) -> None:
        """Replaces all elements."""
        _operator_state.list_update(self._id(), [_encode(v) for v in values])

    def clear(self) -> None:
        """Removes all elements."""
        _operator_state.list_clear(self._id())


class OperatorListState(_OperatorList):
    """Operator list state with split redistribution: when the parallelism changes, all
    subtasks' elements are concatenated and dealt evenly, each to one new subtask."""

    _mode = _operator_state.Redistribution.SPLIT


class UnionListState(_OperatorList):
    """Operator list state with union redistribution: when the parallelism changes,
    every new subtask gets every old subtask's elements."""

    _mode = _operator_state.Redistribution.UNION


# Operator list state ids by name, with the redistribution each was first used with.
_operator_ids: dict = {}


class BroadcastState:
    """Broadcast state (Flink's BroadcastState): a map that is the same on every subtask
    of the operator. Readable everywhere; changed only while processing a record of a
    broadcast input, which every subtask sees in the same order. When the parallelism
    changes, every new subtask gets a copy. Entries are ordered by their keys' JSON."""

    def __init__(self, name: str):
        self.name = name

    def _id(self) -> int:
        known = _broadcast_ids.get(self.name)
        if known is None:
            known = _broadcast_ids[self.name] = _operator_state.register_broadcast(self.name)
        return known

    def _writable(self) -> int:
        if _broadcast is None:
            raise OperatorError(
                f"broadcast state `{self.name}` can only change while processing a record of "
                "a broadcast input, so that every subtask makes the same change"
            )
        return self._id()

    def get(self, key: Any, default: Any = None) -> Any:
        data = _operator_state.broadcast_get(self._id(), _encode(key))
        return default if data is None else _decode(self.name, data)

    def items(self) -> List[Tuple[Any, Any]]:
        return [
            (_decode(self.name, k), _decode(self.name, v))
            for k, v in _operator_state.broadcast_entries(self._id())
        ]

    def put(self, key: Any, value: Any) -> None:
        """Sets `key` to `value`: only while processing a broadcast record."""
        _operator_state.broadcast_put(self._writable(), _encode(key), _encode(value))

    def remove(self, key: Any) -> None:
        """Removes `key`: only while processing a broadcast record."""
        _operator_state.broadcast_remove(self._writable(), _encode(key))


# Broadcast state ids by name.
_broadcast_ids: dict = {}


class MapState(_State):
    """A map per key (Flink's MapState). Entries are ordered by their keys' JSON bytes."""

    _kind = _types.StateKind.MAP

    def get(self, key: Any, default: Any = None) -> Any:
        data = _state.map_get(*self._target(), _encode(key))
        return default if data is None else _decode(self.name, data)

    def put(self, key: Any, value: Any) -> None:
        _state.map_put(*self._target(), _encode(key), _encode(value))

    def put_all(self, entries: dict) -> None:
        pairs = [(_encode(k), _encode(v)) for k, v in entries.items()]
        _state.map_put_all(*self._target(), pairs)

    def remove(self, key: Any) -> None:
        _state.map_remove(*self._target(), _encode(key))

    def contains(self, key: Any) -> bool:
        return _state.map_contains(*self._target(), _encode(key))

    def items(self) -> List[Tuple[Any, Any]]:
        return [
            (_decode(self.name, k), _decode(self.name, v))
            for k, v in _state.map_entries(*self._target())
        ]

    def keys(self) -> list:
        return [_decode(self.name, k) for k in _state.map_keys(*self._target())]

    def values(self) -> list:
        return [_decode(self.name, v) for v in _state.map_values(*self._target())]

    def is_empty(self) -> bool:
        return _state.map_is_empty(*self._target())

    def clear(self) -> None:
        _state.map_clear(*self._target())


class ReducingState(_State):
    """One value per key folded from everything added (Flink's ReducingState)."""

    _kind = _types.StateKind.REDUCING

    def __init__(self, name: str, reduce: Callable[[Any, Any], Any]):
        super().__init__(name)
        self._reduce = reduce

    def get(self, default: Any = None) -> Any:
        data = _state.value_get(*self._target())
        return default if data is None else _decode(self.name, data)

    def add(self, value: Any) -> None:
        """Folds `value` into the current key's value (or starts it)."""
        target = self._target()
        data = _state.value_get(*target)
        folded = value if data is None else self._reduce(_decode(self.name, data), value)
        _state.value_update(*target, _encode(folded))

    def clear(self) -> None:
        _state.value_clear(*self._target())


class AggregatingState(_State):
    """Inputs folded into an accumulator per key, read through `result` (Flink's
    AggregatingState): `create()` makes an empty accumulator, `add(acc, value)` folds."""

    _kind = _types.StateKind.AGGREGATING

    def __init__(
        self,
        name: str,
        create: Callable[[], Any],
        add: Callable[[Any, Any], Any],
        result: Callable[[Any], Any],
    ):
        super().__init__(name)
        self._create, self._add, self._result = create, add, result

    def get(self, default: Any = None) -> Any:
        """The result of the current key's accumulator, or `default` when it has none."""
        data = _state.value_get(*self._target())
        return default if data is None else self._result(_decode(self.name, data))

    def add(self, value: Any) -> None:
        target = self._target()
        data = _state.value_get(*target)
        acc = self._create() if data is None else _decode(self.name, data)
        _state.value_update(*target, _encode(self._add(acc, value)))

    def clear(self) -> None:
        _state.value_clear(*self._target())


@dataclass(frozen=True)
class Window:
    """A window: the times `start` (inclusive) to `end` (exclusive), in milliseconds."""

    start: int
    end: int

    @property
    def max_timestamp(self) -> int:
        """The last millisecond in the window: when it fires."""
        return self.end - 1


@dataclass(frozen=True)
class Fired:
    """What a window reports: a `window`'s `result` (`update`: it came out before, and a
    record within the allowed lateness changed it), or, with no window, that the record
    was too late for every window it falls in (`late`: nothing changed)."""

    window: Optional[Window]
    result: Any = None
    update: bool = False

    @property
    def late(self) -> bool:
        return self.window is None


class Count:
    """Counts a window's records: an aggregate (`create`, `add`, `merge`, `result`)."""

    def create(self) -> Any:
        return 0

    def add(self, acc: Any, record: Any) -> Any:
        return acc + 1

    def merge(self, acc: Any, other: Any) -> Any:
        return acc + other

    def result(self, acc: Any) -> Any:
        return acc


class Collect(Count):
    """Keeps a window's records, for a function that needs them all."""

    def create(self) -> Any:
        return []

    def add(self, acc: Any, record: Any) -> Any:
        return acc + [record]


class Windows:
    """Windowed aggregation for the current key over keyed state and timers, as the
    Rust SDK's `guest_sdk::window` has it (the same state, a value state `name` holding
    `[start, end, acc]` per open window, and the same outputs and semantics):
    tumbling, sliding or session windows, in event time (or processing time), each
    keeping an aggregate's accumulator (`Count()` by default, or any object with
    `create()`, `add(acc, record)`, `merge(acc, other)`, `result(acc)`). A window
    `[start, end)` fires once the watermark reaches `end - 1`; it is kept
    `allowed_lateness` ms more, and a record for it in that time fires it again,
    updated; a record past every window's lateness is reported late. Give it every
    record from `process` and every timer from `on_timer`, and emit what it reports."""

    def __init__(
        self,
        name: str,
        size: int = 0,
        slide: Optional[int] = None,
        gap: Optional[int] = None,
        aggregate: Any = None,
        allowed_lateness: int = 0,
        processing_time: bool = False,
    ):
        self._state = ValueState(name)
        self._size, self._slide, self._gap = size, slide, gap
        self._aggregate = aggregate if aggregate is not None else Count()
        self._lateness = allowed_lateness
        self._processing = processing_time
        sizes = [gap] if gap is not None else [size] + ([slide] if slide is not None else [])
        if any(n is None or n <= 0 for n in sizes) or allowed_lateness < 0:
            raise OperatorError(
                f"windows `{name}`: sizes, slides and gaps must be positive and the lateness not negative"
            )

    @staticmethod
    def tumbling(name: str, size_ms: int, aggregate: Any = None, **options: Any) -> "Windows":
        return Windows(name, size=size_ms, aggregate=aggregate, **options)

    @staticmethod
    def sliding(name: str, size_ms: int, slide_ms: int, aggregate: Any = None, **options: Any) -> "Windows":
        return Windows(name, size=size_ms, slide=slide_ms, aggregate=aggregate, **options)

    @staticmethod
    def sessions(name: str, gap_ms: int, aggregate: Any = None, **options: Any) -> "Windows":
        return Windows(name, gap=gap_ms, aggregate=aggregate, **options)

    def _assign(self, time: int) -> List[Window]:
        if self._gap is not None:
            return [Window(time, time + self._gap)]
        if self._slide is None:
            start = time - time % self._size
            return [Window(start, start + self._size)]
        windows, start = [], time - time % self._slide
        while start > time - self._size:
            windows.append(Window(start, start + self._size))
            start -= self._slide
        return windows

    def _cleanup(self, window: Window) -> int:
        return window.max_timestamp + (0 if self._processing else self._lateness)

    def add(self, record: Any, ctx: "Context") -> List[Fired]:
        """Adds `record`, the one being processed, to its windows; returns the windows it
        fired again (within their lateness), or a late `Fired` when it was too late."""
        if self._processing:
            time, watermark = ctx.current_processing_time(), None
        elif ctx.timestamp is None:
            raise OperatorError(
                "an event-time window needs the record's event time: set `event_time` on the source"
            )
        else:
            time, watermark = ctx.timestamp, ctx.current_watermark()
        agg = self._aggregate
        slots = self._state.get([])
        fired: List[Fired] = []
        added = False
        for window in self._assign(time):
            merging = []
            if self._gap is not None:
                meets = lambda s: s[0] <= window.end and window.start <= s[1]
                merging = [s for s in slots if meets(s)]
                slots = [s for s in slots if not meets(s)]
            window = Window(
                min([window.start] + [s[0] for s in merging]),
                max([window.end] + [s[1] for s in merging]),
            )
            if watermark is not None and self._cleanup(window) <= watermark:
                slots.extend(merging)
                continue
            at = None if merging else next((i for i, s in enumerate(slots) if s[0] == window.start), None)
            was_there = at is not None
            if was_there:
                # Where the last slot goes, as the Rust SDK keeps them.
                acc = slots[at][2]
                slots[at] = slots[-1]
                slots.pop()
            else:
                acc = agg.create()
            for session in merging:
                self._delete_timers(Window(session[0], session[1]), ctx)
                acc = agg.merge(acc, session[2])
            acc = agg.add(acc, record)
            added = True
            fired_already = watermark is not None and window.max_timestamp <= watermark
            if fired_already:
                fired.append(Fired(window, agg.result(acc), was_there or bool(merging)))
            if not was_there:
                self._set_timers(window, not fired_already, ctx)
            slots.append([window.start, window.end, acc])
        self._keep(slots)
        if not added:
            fired.append(Fired(None))
        return fired

    def on_timer(self, timer: Timer, ctx: "Context") -> List[Fired]:
        """The windows of the current key that `timer` fires; forgets those whose
        lateness it ends. Timers that are not the windows' report nothing."""
        if timer.domain != ("processing" if self._processing else "event"):
            return []
        slots = self._state.get([])
        fired = [
            Fired(Window(s[0], s[1]), self._aggregate.result(s[2]))
            for s in slots
            if s[1] - 1 == timer.timestamp
        ]
        kept = [s for s in slots if self._cleanup(Window(s[0], s[1])) != timer.timestamp]
        if len(kept) != len(slots):
            self._keep(kept)
        return fired

    def pending(self) -> List[Tuple[Window, Any]]:
        """The current key's open windows and their results so far, by start."""
        slots = sorted(self._state.get([]), key=lambda s: s[0])
        return [(Window(s[0], s[1]), self._aggregate.result(s[2])) for s in slots]

    def _keep(self, slots: list) -> None:
        if slots:
            self._state.set(slots)
        else:
            self._state.clear()

    def _set_timers(self, window: Window, fires: bool, ctx: "Context") -> None:
        if self._processing:
            ctx.register_processing_time_timer(window.max_timestamp)
            return
        cleanup = self._cleanup(window)
        if fires and window.max_timestamp != cleanup:
            ctx.register_event_time_timer(window.max_timestamp)
        ctx.register_event_time_timer(cleanup)

    def _delete_timers(self, window: Window, ctx: "Context") -> None:
        if self._processing:
            ctx.delete_processing_time_timer(window.max_timestamp)
            return
        cleanup = self._cleanup(window)
        if window.max_timestamp != cleanup:
            ctx.delete_event_time_timer(window.max_timestamp)
        ctx.delete_event_time_timer(cleanup)


def export(operator: Type[Operator]) -> type:
    """The `Guest` class componentize-py exports for `operator`: assign it to a
    module-level name `Guest` in the app module."""

    class Guest(exports.Guest):
        _instance: Optional[Operator] = None

        def open(self, config: str, task: _types.TaskInfo) -> None:
            global _inputs
            _inputs = [(i.name, i.broadcast) for i in task.inputs]
            try:
                instance = operator()
                instance.open(
                    json.loads(config),
                    TaskInfo(task.operator, task.subtask, task.parallelism, task.attempt),
                )
            except Exception as e:
                raise Err(_message(e)) from None
            Guest._instance = instance

        def process(self, batch: _types.Batch) -> _types.Outputs:
            global _current, _broadcast
            instance = Guest._instance
            if instance is None:
                raise Err(_types.ProcessError("process called before open", None))
            # The batch and the outputs are flat buffers: see `batch` in the WIT.
            payloads = bytearray()
            ends: List[int] = []
            times: List[int] = []
            untimed: List[int] = []
            no_time = set(batch.untimed)
            key_start = payload_start = 0
            input, broadcast = _inputs[batch.input] if batch.input < len(_inputs) else ("", False)
            for index, (key_end, payload_end) in enumerate(zip(batch.key_ends, batch.payload_ends)):
                # A broadcast record has no key: no record index names one.
                _current = None if broadcast else index
                _broadcast = input if broadcast else None
                try:
                    key = batch.keys[key_start:key_end].decode()
                    time = None if index in no_time else batch.timestamps[index]
                    ctx = Context(key, time, input)
                    instance.process(json.loads(batch.payloads[payload_start:payload_end]), ctx)
                except Exception as e:
                    raise Err(_types.ProcessError(_message(e), index)) from None
                finally:
                    _current = None
                    _broadcast = None
                key_start, payload_start = key_end, payload_end
                _flatten(ctx._outputs, payloads, ends, times, untimed)
            return _types.Outputs(bytes(payloads), ends, times, untimed)

        def on_timer(self, timers: _types.FiredTimers) -> _types.Outputs:
            global _current
            instance = Guest._instance
            if instance is None:
                raise Err(_types.ProcessError("on-timer called before open", None))
            event = timers.domain == _types.TimeDomain.EVENT
            domain = "event" if event else "processing"
            payloads = bytearray()
            ends: List[int] = []
            times: List[int] = []
            untimed: List[int] = []
            key_start = 0
            for index, (key_end, timestamp) in enumerate(zip(timers.key_ends, timers.timestamps)):
                _current = index
                try:
                    key = timers.keys[key_start:key_end].decode()
                    ctx = Context(key, timestamp if event else None)
                    instance.on_timer(Timer(timestamp, domain), ctx)
                except Exception as e:
                    raise Err(_types.ProcessError(_message(e), index)) from None
                finally:
                    _current = None
                key_start = key_end
                _flatten(ctx._outputs, payloads, ends, times, untimed)
            return _types.Outputs(bytes(payloads), ends, times, untimed)

        def close(self) -> None:
            instance, Guest._instance = Guest._instance, None
            if instance is not None:
                try:
                    instance.close()
                except Exception as e:
                    raise Err(_message(e)) from None

    Guest.__qualname__ = f"Guest({operator.__name__})"
    return Guest


def _flatten(outputs, payloads: bytearray, ends: list, times: list, untimed: list) -> None:
    # Appends a context's outputs to the flat buffers of the WIT's `outputs`.
    for payload, time in outputs:
        payloads += payload
        if time is None:
            untimed.append(len(ends))
        ends.append(len(payloads))
        times.append(0 if time is None else time)


def _message(e: Exception) -> str:
    if isinstance(e, (OperatorError, KeyError)) and e.args:
        detail = f"missing field {e.args[0]!r}" if isinstance(e, KeyError) else str(e.args[0])
        return detail
    return f"{type(e).__name__}: {e}"
