"""list-map in Python: the reference for the C version (Python's SDK is itself checked
against Rust's by all-states)."""

import weir

SEEN = weir.ListState("seen")
BY_RESIDUE = weir.MapState("by-residue")


class ListMap(weir.Operator):
    def process(self, record, ctx):
        key, v = record["key"], record["v"] if "v" in record else record["seq"]
        if v == 0:
            SEEN.clear()
            BY_RESIDUE.clear()
        else:
            SEEN.add(v)
            if v % 3 == 0:
                BY_RESIDUE.remove(v % 5)
            else:
                BY_RESIDUE.put(v % 5, {"v": v, "key": key})
        ctx.emit(
            {
                "key": key,
                "seen": SEEN.get(),
                "has_3": BY_RESIDUE.contains(3),
                "residue": BY_RESIDUE.get(v % 5),
                "time": ctx.timestamp,
            }
        )


Guest = weir.export(ListMap)
