"""The operator-state test guest in Python: on the first start each instance deals itself
ten tokens into split list state and its subtask number into union list state; a
restore adds nothing and keeps one copy of each union element. Each record is passed on
with the union list, which a restore at any parallelism must leave at the first start's
subtasks."""

import weir

TOKENS = weir.OperatorListState("tokens")
STARTED = weir.UnionListState("started")


class OperatorState(weir.Operator):
    def open(self, config, task):
        started = STARTED.get()
        if not started:
            TOKENS.add_all([f"{task.subtask}-{n}" for n in range(10)])
            STARTED.add(task.subtask)
        else:
            STARTED.update(sorted(set(started)))

    def process(self, record, ctx):
        ctx.emit({"key": record["key"], "seq": record["seq"], "started": STARTED.get()})


Guest = weir.export(OperatorState)
