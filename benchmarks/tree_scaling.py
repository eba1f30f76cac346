"""Milliseconds per tree node of the planner at 250-2,000 nodes, without and with checkpointers.

A synthetic task whose every state has five children is searched value-proportionally
(three nodes expanded in parallel per step) with a fake model until a token budget sized
for the target node count runs out. Each size runs with no checkpointer, InMemorySaver,
SqliteSaver (a file, LangGraph's default settings) and PostgresSaver (a local throwaway
PostgreSQL server started here), interleaved, best of ``--runs`` runs each (the machine
may be shared; the minimum is the least disturbed run).

If a step's work or its checkpoint grew with the tree, the time per node would grow with
it. The last line gives the 2,000 / 250 ratio without a checkpointer, the worst such
ratio over the savers (target <= 1.5), and the worst saver's time per node at 2,000
nodes over the time without one (target <= 2.0).

Run: ``python benchmarks/tree_scaling.py [--runs 3]``
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from budget_graph import Budget
from budget_graph.nodes import ValueProportional
from budget_graph.planner import build_planner
from budget_graph.tasks.base import Item

__all__ = ["SIZES", "SyntheticTask", "main", "ms_per_node"]

BRANCHING = 5
UNITS_PER_CALL = 40  # fixed usage per call, so the budget fixes the tree size
SIZES = (250, 500, 1000, 2000)
SAVERS = ("none", "InMemorySaver", "SqliteSaver", "PostgresSaver")


class _FakeChat(BaseChatModel):
    """Answers propose prompts with five steps and value prompts with a hashed score."""

    @property
    def _llm_type(self) -> str:
        return "fake-tree"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = str(messages[-1].content)
        if prompt.startswith("value"):
            digest = hashlib.blake2b(prompt.encode(), digest_size=2).digest()
            text = str(1 + int.from_bytes(digest, "big") % 100)
        else:
            text = "\n".join(f"s{i}" for i in range(BRANCHING))
        # A provider honours max_tokens: the budget's clamp on the last calls holds.
        output = min(UNITS_PER_CALL // 2, kwargs.get("max_tokens") or UNITS_PER_CALL)
        usage = {
            "input_tokens": UNITS_PER_CALL // 2,
            "output_tokens": output,
            "total_tokens": UNITS_PER_CALL // 2 + output,
        }
        msg = AIMessage(content=text, usage_metadata=usage)  # type: ignore[arg-type]
        return ChatResult(generations=[ChatGeneration(message=msg)])


class SyntheticTask:
    """Every state has ``BRANCHING`` children; values are hashed; nothing ever verifies."""

    name = "synthetic"
    max_depth = 10_000

    def items(self) -> Sequence[Item]:
        """One problem."""
        return [Item(id="0", input="root")]

    def cot_prompt(self, item: Item) -> str:  # noqa: D102
        return item.input

    def extract_answer(self, item: Item, completion: str) -> str | None:  # noqa: D102
        return None

    def is_correct(self, item: Item, answer: str | None) -> bool:  # noqa: D102
        return False

    def propose_prompt(self, item: Item, state: str) -> str:  # noqa: D102
        return f"propose {state[-40:]}"

    def parse_proposals(self, item: Item, state: str, completion: str) -> list[str]:  # noqa: D102
        return [f"{state}{line}/" for line in completion.split("\n")]

    def value_prompt(self, item: Item, state: str) -> str:  # noqa: D102
        return f"value {state}"

    def parse_value(self, item: Item, state: str, completion: str) -> float | None:  # noqa: D102
        return float(completion)

    def verify(self, item: Item, state: str) -> bool:  # noqa: D102
        return False

    def answer(self, item: Item, state: str) -> str | None:  # noqa: D102
        return None


def _budget_for(nodes: int) -> int:
    # Each expansion: one propose call and BRANCHING judge calls, adding BRANCHING nodes.
    expansions = max(nodes // BRANCHING, 1)
    return expansions * UNITS_PER_CALL * (1 + BRANCHING)


@dataclass(frozen=True)
class _Saver:
    name: str
    make: Callable[[], Any]
    """A fresh checkpointer for one run (``None``: no checkpointer)."""
    server_cpu: Callable[[], float] = lambda: 0.0
    """CPU seconds used so far by the server process serving this saver (PostgreSQL)."""


def ms_per_node(nodes: int, saver: _Saver | None = None) -> tuple[float, float, int]:
    """Wall and CPU milliseconds per tree node for a search sized to about ``nodes`` nodes.

    CPU is this process's (every thread: the graph's tasks and the savers' background
    writes) plus the database server's for PostgreSQL.
    """
    task = SyntheticTask()
    graph = build_planner(
        _FakeChat(),
        task=task,
        budget=Budget(max_tokens=_budget_for(nodes)),
        policy=ValueProportional(width=3),
        judge_samples=1,
        checkpointer=saver.make() if saver is not None else None,
    )
    config = {"configurable": {"thread_id": uuid.uuid4().hex}}
    gc.collect()  # the previous run's garbage is not this run's cost
    server = saver.server_cpu if saver is not None else (lambda: 0.0)
    wall, cpu = time.perf_counter(), time.process_time() + server()
    out = graph.invoke({"item": task.items()[0]}, config)
    wall = time.perf_counter() - wall
    cpu = time.process_time() + server() - cpu
    size = len(out["tree"])
    return 1000 * wall / size, 1000 * cpu / size, size


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid``, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _savers() -> Iterator[list[_Saver]]:
    """The four configurations, each making a fresh checkpointer per run (starts PostgreSQL)."""
    import psycopg
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.sqlite import SqliteSaver
    from psycopg.rows import dict_row

    from budget_graph._internal.pg_testing import start_postgres

    with tempfile.TemporaryDirectory() as tmp, start_postgres() as server:
        conn = psycopg.connect(
            server.create_database("tree_scaling"),
            autocommit=True,
            prepare_threshold=0,
            row_factory=dict_row,
        )
        postgres = PostgresSaver(conn)  # type: ignore[arg-type]
        postgres.setup()
        backend = conn.info.backend_pid
        files = iter(range(1_000_000))

        def sqlite() -> Any:
            path = Path(tmp) / f"run{next(files)}.db"
            return SqliteSaver(sqlite3.connect(path, check_same_thread=False))

        try:
            yield [
                _Saver("none", lambda: None),
                _Saver("InMemorySaver", InMemorySaver),
                _Saver("SqliteSaver", sqlite),
                _Saver("PostgresSaver", lambda: postgres, lambda: _process_cpu(backend)),
            ]
        finally:
            conn.close()


def _report(clock: str, best: dict[tuple[int, str], float], got: dict[int, int]) -> dict[str, Any]:
    """Print one clock's table; return its ratios."""
    sizes = sorted(got)
    print(f"\n{clock} ms per tree node (best of the runs):\n")
    print("| nodes | " + " | ".join(SAVERS) + " |")
    print("|---|" + "---|" * len(SAVERS))
    for n in sizes:
        cells = " | ".join(f"{best[n, name]:.2f}" for name in SAVERS)
        print(f"| {got[n]:,} | {cells} |")
    lo, hi = sizes[0], sizes[-1]
    ratios = {name: best[hi, name] / best[lo, name] for name in SAVERS}
    cells = " | ".join(f"{ratios[name]:.2f}" for name in SAVERS)
    print(f"| ratio {got[hi]:,} / {got[lo]:,} | {cells} |")
    over = {name: best[hi, name] / best[hi, "none"] for name in SAVERS[1:]}
    cells = " | ".join(f"{over[name]:.2f}" for name in SAVERS[1:])
    print(f"| / none at {got[hi]:,} | 1 | {cells} |")
    worst = max(SAVERS[1:], key=lambda name: best[hi, name])
    return {
        "worst": worst,
        "scaling_ratio": ratios["none"],
        "ckpt_scaling_ratio_max": max(ratios[name] for name in SAVERS[1:]),
        f"ckpt_overhead_{hi}": over[worst],
    }


def _line(result: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in result.items() if k != "worst")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Print ms per node per size and saver, side by side, and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per size and saver (best of)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="which measurement gives the last line (both are printed)",
    )
    args = parser.parse_args(argv)
    best: dict[str, dict[tuple[int, str], float]] = {"wall": {}, "cpu": {}}
    got: dict[int, int] = {}
    with _savers() as savers:
        for saver in savers:
            ms_per_node(100, saver)  # warm up imports, tokenizer, tables
        for _ in range(args.runs):
            # Interleaved, so a busy spell of the machine hits every saver alike.
            for n in sorted(args.sizes):
                for saver in savers:
                    wall, cpu, size = ms_per_node(n, saver)
                    got[n] = size
                    print(
                        f"run: nodes={size} saver={saver.name} wall_ms_per_node={wall:.3f} "
                        f"cpu_ms_per_node={cpu:.3f}",
                        file=sys.stderr,
                        flush=True,
                    )
                    for clock, value in (("wall", wall), ("cpu", cpu)):
                        key = (n, saver.name)
                        best[clock][key] = min(best[clock].get(key, float("inf")), value)
    print(f"best of {args.runs} runs, one row per size and saver:")
    for n in sorted(got):
        for saver in savers:
            key = (n, saver.name)
            print(
                f"nodes={got[n]} saver={saver.name} wall_ms_per_node={best['wall'][key]:.3f} "
                f"cpu_ms_per_node={best['cpu'][key]:.3f}"
            )
    results = {clock: _report(clock, best[clock], got) for clock in ("wall", "cpu")}
    other = "wall" if args.clock == "cpu" else "cpu"
    print()
    print(f"{other}: worst saver {results[other]['worst']}: {_line(results[other])}")
    print(f"{args.clock}: worst saver at {max(got):,} nodes: {results[args.clock]['worst']}")
    print(_line(results[args.clock]))
    return results


if __name__ == "__main__":
    main()
