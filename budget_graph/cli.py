"""``budget-graph``: ``bench`` on the shipped replay data, ``report`` on runs, ``serve-replay``."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["BENCH_TASKS", "main"]

BENCH_TASKS = ("game24", "date")
"""Tasks ``budget-graph bench`` knows; ``all`` runs each of them."""


class _Progress:
    """A rich progress bar a benchmark runner advances with ``progress(advance=1, total=N)``."""

    def __init__(self, bar: Any, label: str) -> None:
        self._bar = bar
        self._task = bar.add_task(label, total=None)

    def __call__(self, advance: int = 1, *, total: int | None = None,
                 description: str | None = None) -> None:
        kwargs: dict[str, Any] = {"advance": advance}
        if total is not None:
            kwargs["total"] = total
        if description is not None:
            kwargs["description"] = description
        self._bar.update(self._task, **kwargs)


def _bench_module(task: str) -> Any:
    return importlib.import_module(f"budget_graph.bench.{task}")


def _parse_budgets(text: str | None) -> list[float] | None:
    if text is None:
        return None
    out: list[float] = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part[:-1]) / 100 if part.endswith("%") else float(part)
        except ValueError:
            raise SystemExit(
                f"budget-graph bench: invalid --budgets entry {part!r}: expected numbers "
                "(tokens, or fractions like 0.5 / percentages like 50%), comma-separated"
            ) from None
        if value <= 0:
            raise SystemExit(f"budget-graph bench: --budgets entries must be > 0 (got {part!r})")
        out.append(value)
    return out


def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from budget_graph.efficiency import write_report

    tasks = list(BENCH_TASKS) if args.task == "all" else [args.task]
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    budgets = _parse_budgets(args.budgets)
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"budget-graph bench: --limit must be >= 1 (got {args.limit})")
    modules = {t: _bench_module(t) for t in tasks}
    if methods is not None:
        known = sorted({m for mod in modules.values() for m in mod.METHODS})
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise SystemExit(
                f"budget-graph bench: unknown method(s) {', '.join(map(repr, unknown))}; "
                f"valid methods for {args.task}: {', '.join(known)}"
            )
    console = Console(stderr=True)
    records: list[Any] = []
    tables: list[str] = []
    start = time.perf_counter()
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, disable=args.quiet,
    ) as bar:
        for task, mod in modules.items():
            task_methods = [m for m in methods if m in mod.METHODS] if methods else None
            if methods and not task_methods:
                continue
            recs = mod.run(
                methods=task_methods, budgets=budgets, limit=args.limit,
                progress=_Progress(bar, task),
            )
            records.extend(recs)
            tables.append(f"## {task}\n\n{mod.table(recs)}")
    out = Path(args.out)
    paths = write_report(out, records, plots=not args.no_plots)
    print("\n\n".join(tables))
    print(
        f"\nwrote {', '.join(sorted(paths))} to {out} "
        f"({len(records)} runs in {time.perf_counter() - start:.1f}s)"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from budget_graph.efficiency import report_main

    report_main(args.path, args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``budget-graph`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="budget-graph",
        description="Token budgets for LangGraph: benchmarks on recorded LLM outputs, reports.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser(
        "bench", help="run the budget benchmarks on the shipped replay data (no API key)"
    )
    bench.add_argument("task", nargs="?", default="all", choices=[*BENCH_TASKS, "all"],
                       help="which benchmark (default: all)")
    bench.add_argument("--out", default="bench-out", help="output directory (default: bench-out)")
    bench.add_argument("--methods", help="comma-separated method names (default: all)")
    bench.add_argument("--budgets", help="comma-separated budgets: tokens, or fractions/percent "
                       "of the reference method's mean spend")
    bench.add_argument("--limit", type=int, help="only the first N items (quick run)")
    bench.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=_bench)

    report = sub.add_parser("report", help="report on a JSONL file of run records")
    report.add_argument("path", help="results.jsonl written by bench or by your own runs")
    report.add_argument("--out", help="also write report.md/report.json and plots here")
    report.set_defaults(func=_report)

    from budget_graph.replay.server import add_serve_parser

    add_serve_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``budget-graph`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FileNotFoundError as exc:
        print(f"budget-graph {args.command}: no such file: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
