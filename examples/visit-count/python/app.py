"""Visit count in Python: a running count of visits per URL (the Rust example's twin)."""

import weir

VISITS = weir.ValueState("visits")


class VisitCount(weir.Operator):
    def process(self, visit, ctx):
        count = VISITS.get(0) + 1
        VISITS.set(count)
        ctx.emit({"url": visit["url"], "count": count})


Guest = weir.export(VisitCount)
