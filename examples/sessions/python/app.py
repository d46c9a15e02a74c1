"""Sessions per user in Python (the Rust example's twin, with the same outputs): a
30-minute gap ends a session; each comes out with its length and page count."""

import weir

GAP_MS = 30 * 60_000
SESSIONS = weir.Windows.sessions("sessions", GAP_MS)


class Sessions(weir.Operator):
    def process(self, click, ctx):
        self.emit(SESSIONS.add(click, ctx), click, ctx)

    def on_timer(self, timer, ctx):
        self.emit(SESSIONS.on_timer(timer, ctx), None, ctx)

    @staticmethod
    def emit(fired, click, ctx):
        for f in fired:
            if f.late:
                ctx.emit_to("late", click)
            else:
                start, end = f.window.start, f.window.end
                session = {
                    "user": ctx.key,
                    "start": start,
                    "end": end,
                    "length_ms": end - GAP_MS - start,
                    "pages": f.result,
                }
                ctx.emit(session, timestamp=f.window.max_timestamp)


Guest = weir.export(Sessions)
