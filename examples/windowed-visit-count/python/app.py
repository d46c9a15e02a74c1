"""Visits per URL per minute of event time in Python (the Rust example's twin, with the
same outputs): tumbling one-minute windows kept 10 s after they fire; later visits go to
the side output `late`."""

import weir

PER_MINUTE = weir.Windows.tumbling("visits-per-minute", 60_000, allowed_lateness=10_000)


class WindowedVisitCount(weir.Operator):
    def process(self, visit, ctx):
        self.emit(PER_MINUTE.add(visit, ctx), visit, ctx)

    def on_timer(self, timer, ctx):
        self.emit(PER_MINUTE.on_timer(timer, ctx), None, ctx)

    @staticmethod
    def emit(fired, visit, ctx):
        for f in fired:
            if f.late:
                ctx.emit_to("late", visit)
            else:
                counted = {
                    "url": ctx.key,
                    "start": f.window.start,
                    "end": f.window.end,
                    "visits": f.result,
                    "update": f.update,
                }
                ctx.emit(counted, timestamp=f.window.max_timestamp)


Guest = weir.export(WindowedVisitCount)
