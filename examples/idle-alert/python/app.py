"""Idle alert in Python: the state machine per address, plus an alert when an address
stops mid-sequence for `idle_ms` (default 30 s) of event time (the Rust example's twin)."""

import weir

# The address's current state; absent means "Initial".
STATE = weir.ValueState("state")
# When the address's idle timer fires; absent: none set.
DEADLINE = weir.ValueState("deadline")

# (state, event) -> next state, as in the state-machine example.
TRANSITIONS = {
    ("Initial", "a"): "W",
    ("Initial", "c"): "X",
    ("W", "b"): "Y",
    ("X", "b"): "Y",
    ("W", "d"): "Z",
    ("X", "d"): "Z",
    ("Y", "e"): "Z",
    ("Z", "g"): "Terminal",
}


class IdleAlert(weir.Operator):
    def open(self, config, task):
        self.idle_ms = config.get("idle_ms", 30_000)

    def process(self, event, ctx):
        if ctx.timestamp is None:
            raise weir.OperatorError("the record has no event time: set `event_time`")
        address, kind = event["address"], event["type"]
        state = STATE.get("Initial")
        following = TRANSITIONS.get((state, kind))
        deadline = DEADLINE.get()
        if deadline is not None:
            ctx.delete_event_time_timer(deadline)
            DEADLINE.clear()
        if following is None:
            ctx.emit({"alert": "invalid", "address": address, "state": state, "event": kind})
        elif following == "Terminal":
            STATE.clear()
            return
        else:
            STATE.set(following)
        deadline = ctx.timestamp + self.idle_ms
        ctx.register_event_time_timer(deadline)
        DEADLINE.set(deadline)

    def on_timer(self, timer, ctx):
        DEADLINE.clear()
        ctx.emit(
            {
                "alert": "idle",
                "address": ctx.key,
                "state": STATE.get("Initial"),
                "last_event": timer.timestamp - self.idle_ms,
            }
        )


Guest = weir.export(IdleAlert)
