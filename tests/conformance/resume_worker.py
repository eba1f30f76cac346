"""Resume an interrupted conformance thread in a fresh process (the matrix's second process).

``python -m tests.conformance.resume_worker '<json>'`` rebuilds the cell's graph on the
same checkpointer and replay server, resumes with ``Command(resume=True)`` and prints the
final state's spend as JSON on its last line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from langgraph.types import Command

from budget_graph import Budget, with_budget
from tests.conformance.matrix import Cell, Env, Models, _interrupting, sync_saver


class _Server:
    """Enough of a ReplayServer for the models: its URL (billing stays on the server)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def reset(self) -> None:  # the first process reset it; never reset mid-thread
        pass


def main(raw: str) -> None:
    args = json.loads(raw)
    env = Env(tmp=Path(args["tmp"]), replay=_Server(args["replay"]), pg_conninfo=args["pg"])
    cell = Cell("resume_in_second_process", "sync", args["saver"], "invoke", "replay")
    models = Models(cell, env)
    with sync_saver(args["saver"], env) as saver:
        app = with_budget(
            _interrupting(models).compile(checkpointer=saver), Budget(max_tokens=args["limit"])
        )
        out = app.invoke(Command(resume=True), args["config"])
    spend = out["spend"]
    print(json.dumps({"total_tokens": spend.total_tokens, "stop_reason": out.get("stop_reason")}))


if __name__ == "__main__":
    main(sys.argv[1])
