"""The all-states test guest in Python: every state kind and access method, emitting the
state after each record exactly as the Rust version does."""

import weir

SEEN = weir.ValueState("seen")
LAST = weir.ListState("last")
BY_RESIDUE = weir.MapState("by-residue")
MAX = weir.ReducingState("max", max)
MEAN = weir.AggregatingState(
    "mean", lambda: [0, 0], lambda acc, v: [acc[0] + v, acc[1] + 1], lambda acc: acc[0] / acc[1]
)


class AllStates(weir.Operator):
    def process(self, record, ctx):
        v = record["v"] if "v" in record else record["seq"]
        if v == 0:
            for state in (SEEN, LAST, BY_RESIDUE, MAX, MEAN):
                state.clear()
        else:
            SEEN.set(SEEN.get(0) + 1)
            LAST.add(v)
            last = LAST.get()
            if len(last) > 3:
                LAST.update(last[-3:])
            if v % 2 == 0:
                LAST.add_all([v, -v])
            BY_RESIDUE.put(v % 5, v)
            if v % 7 == 0:
                BY_RESIDUE.remove(v % 5)
            if v % 11 == 0:
                BY_RESIDUE.put_all({100: v, -100: -v})
            MAX.add(v)
            MEAN.add(v)
        ctx.emit(
            {
                "key": record["key"],
                "seen": SEEN.get(),
                "last": LAST.get(),
                "entries": [[k, x] for k, x in BY_RESIDUE.items()],
                "keys": BY_RESIDUE.keys(),
                "values": BY_RESIDUE.values(),
                "has_residue_3": BY_RESIDUE.contains(3),
                "empty": BY_RESIDUE.is_empty(),
                "residue_of_v": BY_RESIDUE.get(v % 5),
                "max": MAX.get(),
                "mean": MEAN.get(),
                "time": ctx.timestamp,
            }
        )


Guest = weir.export(AllStates)
