"""State machine in Python: alerts on invalid event sequences per address (the Rust
example's twin)."""

import weir

# The address's current state; absent means "Initial".
STATE = weir.ValueState("state")

# (state, event) -> next state; a pair that is missing has no transition.
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
EVENTS = {"a", "b", "c", "d", "e", "f", "g"}


class StateMachine(weir.Operator):
    def process(self, event, ctx):
        address, kind = event["address"], event["type"]
        if kind not in EVENTS:
            raise weir.OperatorError(f"unknown event type {kind!r}")
        state = STATE.get("Initial")
        following = TRANSITIONS.get((state, kind))
        if following is None:
            ctx.emit({"address": address, "state": state, "event": kind})
        elif following == "Terminal":
            STATE.clear()
        else:
            STATE.set(following)


Guest = weir.export(StateMachine)
