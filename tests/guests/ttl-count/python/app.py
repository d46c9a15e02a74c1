"""The TTL count test guest in Python: `count` and `recent` expire after the config's
`ttl_ms` (`domain` "event" or "processing"), `total` never does; the Rust version's
outputs exactly."""

import weir

COUNT = weir.ValueState("count")
RECENT = weir.ListState("recent")
TOTAL = weir.ValueState("total")


class TtlCount(weir.Operator):
    def open(self, config, task):
        ms = config.get("ttl_ms", 1000)
        domain = config.get("domain", "event")
        COUNT.with_ttl(weir.Ttl(ms, domain))
        RECENT.with_ttl(weir.Ttl(ms, domain))

    def process(self, event, ctx):
        count = COUNT.get(0) + 1
        COUNT.set(count)
        RECENT.add(ctx.timestamp or 0)
        total = TOTAL.get(0) + 1
        TOTAL.set(total)
        ctx.emit({"key": event["key"], "count": count, "recent": len(RECENT.get()), "total": total})


Guest = weir.export(TtlCount)
