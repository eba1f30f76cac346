"""Conformance: the #19 matrix (entry points x patterns x sync/async x checkpointers) under
random budgets near the cap.

Each round runs every cell of ``tests/conformance/matrix.py`` once, under a budget drawn
uniformly between 30% and 110% of what the cell's pattern bills without a budget (measured
once per pattern and model, side by side on the same servers). A *leak* is a cell whose
provider billed more than its limit; a *miscount* is a cell whose final state's spend
differs from what the provider billed. Other broken promises (a refused call without
``stop_reason="budget"``, an invocation reported as more or fewer than one run) are
counted as ``other``. Models: in-process fakes, and ChatOpenAI on the replay server;
checkpointers: none, in-memory, SQLite (sync and async), PostgreSQL (sync and async) on a
throwaway local server.

One row per pattern; last line ``cells=<n> leaks=<k> miscounts=<m>``.

    python benchmarks/conformance.py --rounds 2 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from budget_graph._internal.pg_testing import start_postgres  # noqa: E402
from budget_graph.replay import ReplayStore  # noqa: E402
from budget_graph.replay.server import ReplayServer  # noqa: E402
from tests.conformance.matrix import CELLS, PATTERNS, Cell, Env, arun_cell, run_cell  # noqa: E402


def _full(cell: Cell, env: Env, cache: dict) -> int:
    key = (cell.pattern, cell.model)
    if key not in cache:
        saver = "sqlite" if cell.pattern == "resume_in_second_process" else "memory"
        cache[key] = run_cell(
            Cell(cell.pattern, "sync", saver, "invoke", cell.model), env, 10**7
        ).billed
    return cache[key]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--skip-nested",
        action="store_true",
        help="leave out subgraph_as_node (needs nested meters)",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    rng = random.Random(args.seed)
    server = ReplayServer(ReplayStore()).start()
    pg = start_postgres()
    try:
        from langgraph.checkpoint.postgres import PostgresSaver

        conninfo = pg.create_database("conformance_bench")
        with PostgresSaver.from_conn_string(conninfo) as saver:
            saver.setup()
        with tempfile.TemporaryDirectory() as tmp:
            env = Env(tmp=Path(tmp), replay=server, pg_conninfo=conninfo)
            cache: dict = {}
            rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            started = time.perf_counter()
            cells = [c for c in CELLS if not (args.skip_nested and c.pattern == "subgraph_as_node")]
            for _ in range(args.rounds):
                for cell in cells:
                    full = _full(cell, env, cache)
                    limit = max(int(full * rng.uniform(0.3, 1.1)), 1)
                    if cell.mode == "sync":
                        out = run_cell(cell, env, limit)
                    else:
                        out = asyncio.run(arun_cell(cell, env, limit))
                    row = rows[cell.pattern]
                    row["cells"] += 1
                    row["leaks"] += out.leak
                    row["miscounts"] += out.miscount
                    row["other"] += bool(out.problems()) and not (out.leak or out.miscount)
                    row["stopped"] += out.stop_reason == "budget"
                    row["billed"] += out.billed
                    row["limit"] += limit
            elapsed = time.perf_counter() - started
    finally:
        server.stop()
        pg.stop()
    print(
        f"{'pattern':<26} {'cells':>5} {'stopped':>7} {'billed/limit':>12} "
        f"{'leaks':>5} {'miscounts':>9} {'other':>5}"
    )
    for pattern in PATTERNS:
        row = rows.get(pattern)
        if not row:
            continue
        ratio = row["billed"] / row["limit"] if row["limit"] else 0.0
        print(
            f"{pattern:<26} {row['cells']:>5} {row['stopped']:>7} {ratio:>12.3f} "
            f"{row['leaks']:>5} {row['miscounts']:>9} {row['other']:>5}"
        )
    total = {k: sum(r[k] for r in rows.values()) for k in ("cells", "leaks", "miscounts", "other")}
    print(f"elapsed_s={elapsed:.1f} other={total['other']}")
    print(f"cells={total['cells']} leaks={total['leaks']} miscounts={total['miscounts']}")


if __name__ == "__main__":
    main()
