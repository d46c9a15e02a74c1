"""Fraud rules in Python: the Rust example's twin (see src/lib.rs for the design).

Transactions are keyed by card; rules (a limit per category and version) arrive on the
broadcast input `rules`. A card's transactions settle in order, each once its rule has
arrived; an alert is raised when the card's total in the category exceeds the limit.
"""

import weir

RULES = weir.BroadcastState("rules")
WAITING = weir.ListState("waiting")
TOTALS = weir.MapState("totals")


def settle(new, ctx):
    """Settles the current card's waiting transactions, then `new` ones, in order, up
    to the first whose rule has not arrived."""
    before = WAITING.get()
    waiting = before + new
    settled = 0
    for tx in waiting:
        limit = RULES.get([tx["category"], tx["rule"]])
        if limit is None:
            break
        total = TOTALS.get(tx["category"], 0) + tx["amount"]
        TOTALS.put(tx["category"], total)
        if total > limit:
            ctx.emit({
                "card": tx["card"],
                "category": tx["category"],
                "total": total,
                "limit": limit,
                "rule": tx["rule"],
            })
        settled += 1
    if settled or len(waiting) != len(before):
        WAITING.update(waiting[settled:])


class FraudRules(weir.Operator):
    def process(self, record, ctx):
        if ctx.input == "rules":
            RULES.put([record["category"], record["version"]], record["limit"])
            ctx.for_each_key(WAITING, lambda card, ctx: settle([], ctx))
        else:
            settle([record], ctx)


Guest = weir.export(FraudRules)
