"""{{name}}: a running count of events per user. Make it yours: change `process`."""

import weir

# The user's count so far: keyed state, snapshotted and restored by the host.
COUNT = weir.ValueState("count")


class Counter(weir.Operator):
    def process(self, event, ctx):
        count = COUNT.get(0) + 1
        COUNT.set(count)
        ctx.emit({"user": event["user"], "count": count})


Guest = weir.export(Counter)
