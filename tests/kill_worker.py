"""Subprocess of the kill test: a budgeted six-step graph on an on-disk SQLite checkpointer.

Each step streams one budgeted ChatOpenAI call to the replay server. The parent test kills
this process with SIGKILL while a call is in flight (``--hang-at-call``: that call's request
asks the server for a long latency) or right after a step was checkpointed
(``--pause-after``), then starts a new process with ``--resume``. Protocol on stdout, one
line each: ``CALL <k> <step>``, ``STEP <step>`` (checkpointed), ``PAUSED``,
``RESULT <json>``.

Run: ``python -m tests.kill_worker --db ckpt.sqlite --base-url http://.../v1 [--resume]``.
"""

from __future__ import annotations

import argparse
import json
import operator
import sqlite3
import sys
import time
import warnings
from typing import Annotated, Any

STEPS = ("s0", "s1", "s2", "s3", "s4", "s5")


def _say(line: str) -> None:
    print(line, flush=True)


def build(args: argparse.Namespace) -> Any:
    """The budgeted graph with its SQLite checkpointer."""
    from langchain_openai import ChatOpenAI
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    from budget_graph import Budget, BudgetState, budgeted, guard, with_budget
    from budget_graph.tasks.game24 import Game24Task

    class KillState(BudgetState):
        steps: Annotated[list[str], operator.add]

    task = Game24Task()
    prompts = [task.cot_prompt(item) for item in task.items()[: len(STEPS)]]
    chat = ChatOpenAI(base_url=args.base_url, api_key="replay", model="gpt-4",
                      max_retries=0, stream_usage=True)
    llm = budgeted(chat)
    calls = {"n": 0}

    def step(i: int, name: str) -> Any:
        @guard(name=name)
        def run(state: dict[str, Any]) -> dict[str, Any]:
            calls["n"] += 1
            headers = {}
            if calls["n"] == args.hang_at_call:
                headers = {"X-Replay-Fault": "latency=30"}
            _say(f"CALL {calls['n']} {name}")
            text = "".join(
                str(c.content)
                for c in llm.stream(prompts[i], max_tokens=120, extra_headers=headers)
            )
            return {"steps": [f"{name}:{len(text)}"]}

        return run

    builder = StateGraph(KillState)
    prev = START
    for i, name in enumerate(STEPS):
        builder.add_node(name, step(i, name))
        builder.add_edge(prev, name)
        prev = name
    builder.add_edge(prev, END)
    conn = sqlite3.connect(args.db, check_same_thread=False)
    graph = builder.compile(checkpointer=SqliteSaver(conn))
    return with_budget(graph, Budget(max_tokens=args.limit))


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the graph, following the stdout protocol."""
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--base-url", required=True)
    p.add_argument("--thread", default="kill-1")
    p.add_argument("--limit", type=int, default=2_600)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--hang-at-call", type=int, default=0)
    p.add_argument("--pause-after", default="")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    app = build(args)
    cfg = {"configurable": {"thread_id": args.thread}}
    inp = None if args.resume else {"steps": []}
    for update in app.stream(inp, cfg, stream_mode="updates", durability="sync"):
        for name in update:
            if name not in STEPS:
                continue
            _say(f"STEP {name}")
            if name == args.pause_after:
                # Make sure the step is on disk before telling the parent to kill us.
                while not any(s.startswith(f"{name}:") for s in
                              app.get_state(cfg).values.get("steps", ())):
                    time.sleep(0.01)
                _say("PAUSED")
                time.sleep(120)
    values = app.get_state(cfg).values
    spend = values["spend"]
    _say("RESULT " + json.dumps({
        "steps": values.get("steps", []),
        "stop_reason": values.get("stop_reason"),
        "input_tokens": spend.input_tokens,
        "output_tokens": spend.output_tokens,
        "units": spend.units,
        "calls": spend.calls,
        "by_node_types": sorted({type(u).__name__ for u in spend.by_node.values()}),
        "meter_spent": app.last_meter.spent,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
