"""``budget-graph``: the ``bench``, ``report``, ``convert`` and ``serve-replay`` commands.

Building the parser imports nothing but the standard library, so ``--help`` is instant;
each command imports what it needs when it runs. Every argument and path is checked
before any work starts: bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from budget_graph._internal.cli_args import (
    Parser,
    UsageError,
    add_convert_args,
    add_serve_args,
    check_file,
    check_out_dir,
    parse_budget_fractions,
    parse_budget_tokens,
    runner_kwargs,
    split_list,
)

__all__ = ["BENCH_TASKS", "UsageError", "build_parser", "main"]

BENCH_TASKS = ("game24", "date")
"""Benchmarks ``budget-graph bench`` knows; ``all`` runs each of them."""


class _Progress:
    """A rich progress bar a benchmark runner advances with ``progress(advance=1, total=N)``."""

    def __init__(self, bar: Any, label: str) -> None:
        self._bar = bar
        self._task = bar.add_task(label, total=None)

    def __call__(
        self, advance: int = 1, *, total: int | None = None, description: str | None = None
    ) -> None:
        kwargs: dict[str, Any] = {"advance": advance}
        if total is not None:
            kwargs["total"] = total
        if description is not None:
            kwargs["description"] = description
        self._bar.update(self._task, **kwargs)


def _bench_plan(args: argparse.Namespace) -> list[tuple[str, Any, dict[str, Any]]]:
    """Validate every bench argument; return (task, module, runner kwargs) per benchmark."""
    import importlib

    if args.budgets is not None:
        raise UsageError(
            "--budgets was removed (it read values <= 10 as fractions and larger "
            "ones as tokens): use --budget-tokens or --budget-fractions"
        )
    tasks = list(BENCH_TASKS) if args.task == "all" else [args.task]
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1 (got {args.limit})")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1 (got {args.workers})")
    tokens = parse_budget_tokens(args.budget_tokens) if args.budget_tokens else None
    fractions = parse_budget_fractions(args.budget_fractions) if args.budget_fractions else None
    if tokens is not None and fractions is not None:
        raise UsageError("give --budget-tokens or --budget-fractions, not both")
    check_out_dir(args.out)
    own = {"--recording": args.recording, "--items": args.items, "--task": args.task_spec}
    given = [k for k, v in own.items() if v]
    if given and args.task == "all":
        raise UsageError(f"{', '.join(given)} need one benchmark (game24 or date), not 'all'")
    for path in args.recording or ():
        check_file(path, "--recording")
    if args.items:
        check_file(args.items, "--items")
    methods = split_list(args.methods, "--methods") if args.methods else None

    from budget_graph.replay import ReplayError, load_records
    from budget_graph.tasks.base import TaskError, load_items, load_task

    recordings = None
    if args.recording:
        recordings = []
        for path in args.recording:
            try:
                if not any(True for _ in load_records(path)):
                    raise UsageError(f"--recording {path!r}: no records")
            except (ReplayError, UnicodeDecodeError, OSError, EOFError) as exc:
                raise UsageError(f"--recording {path!r}: {exc}".splitlines()[0]) from None
            recordings.append(path)
    try:
        items = load_items(args.items) if args.items else None
        task_obj = load_task(args.task_spec) if args.task_spec else None
    except TaskError as exc:
        raise UsageError(str(exc)) from None
    modules = {t: importlib.import_module(f"budget_graph.bench.{t}") for t in tasks}
    if methods is not None:
        known = sorted({m for mod in modules.values() for m in mod.METHODS})
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise UsageError(
                f"unknown method(s) {', '.join(map(repr, unknown))}; "
                f"valid methods for {args.task}: {', '.join(known)}"
            )
    plan = []
    for task, mod in modules.items():
        task_methods = [m for m in methods if m in mod.METHODS] if methods else None
        if methods and not task_methods:
            continue
        if args.reference is not None and args.reference not in mod.METHODS:
            raise UsageError(
                f"unknown --reference {args.reference!r} for bench {task}; "
                f"valid: {', '.join(mod.METHODS)}"
            )
        if args.reference is not None and getattr(mod.METHODS[args.reference], "budgeted", False):
            raise UsageError(
                f"invalid --reference {args.reference!r}: must be an unbudgeted method"
            )
        kwargs = runner_kwargs(
            task,
            mod,
            {
                "budget_tokens": tokens,
                "budget_fractions": fractions,
                "reference": args.reference,
                "recordings": recordings,
                "items": items,
                "task": task_obj,
            },
        )
        kwargs.update(methods=task_methods, limit=args.limit, workers=args.workers)
        plan.append((task, mod, kwargs))
    return plan


def _bench(args: argparse.Namespace) -> int:
    plan = _bench_plan(args)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True, quiet=args.quiet)
    records: list[Any] = []
    tables: list[str] = []
    last_lines: list[str] = []
    start = time.perf_counter()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=args.quiet,
    ) as bar:
        for task, mod, kwargs in plan:
            try:
                recs = mod.run(progress=_Progress(bar, task), **kwargs)
            except ValueError as exc:
                raise UsageError(str(exc).splitlines()[0]) from None
            records.extend(recs)
            tables.append(f"## {task}\n\n{mod.table(recs)}")
            if hasattr(mod, "frontier_line"):
                last_lines.append(mod.frontier_line(recs))
    ran = time.perf_counter() - start
    paths = _write(Path(args.out), records, plots=not args.no_plots, console=console)
    print("\n\n".join(tables))
    print(
        f"\nwrote {', '.join(sorted(paths))} to {args.out} ({len(records)} runs in "
        f"{ran:.1f}s, report in {time.perf_counter() - start - ran:.1f}s)"
    )
    for line in last_lines:
        print(line)
    return 0


def _write(out: Path, records: Sequence[Any], *, plots: bool, console: Any) -> dict[str, Path]:
    from budget_graph.efficiency import write_report

    with console.status("writing report.md, report.json and results.jsonl") as status:
        paths = dict(write_report(out, records, plots=False))
        if plots:
            from budget_graph.efficiency.plots import write_plots

            def step(name: str) -> None:
                status.update(f"drawing {name}")

            for path in write_plots(out, records, progress=step):
                paths[path.name] = path
            from budget_graph.efficiency.plots import embed_plots

            embed_plots(out / "report.md", [p for p in paths.values() if p.suffix == ".png"])
    return paths


def _report(args: argparse.Namespace) -> int:
    path = check_file(args.path, "report")
    if args.out is not None:
        check_out_dir(args.out)
    from budget_graph.efficiency import RecordsError, read_jsonl
    from budget_graph.efficiency.report import render_markdown

    try:
        records = read_jsonl(path)
    except (RecordsError, UnicodeDecodeError) as exc:
        raise UsageError(f"{args.path}: {str(exc).splitlines()[0]}") from None
    if not records:
        raise UsageError(f"{args.path}: no run records (the file is empty)")
    if args.out is not None:
        from rich.console import Console

        _write(Path(args.out), records, plots=True, console=Console(stderr=True))
    print(render_markdown(records), end="")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from budget_graph.replay import convert

    return convert.main_from_args(args, UsageError)


def _serve(args: argparse.Namespace) -> int:
    from budget_graph.replay.server import serve_from_args

    return serve_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    """The ``budget-graph`` argument parser (standard library only)."""
    parser = Parser(
        prog="budget-graph",
        description="Token budgets for LangGraph: benchmarks on recorded LLM outputs, reports.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser(
        "bench", help="run the budget benchmarks on recorded outputs (no API key)"
    )
    bench.add_argument(
        "task",
        nargs="?",
        default="all",
        choices=[*BENCH_TASKS, "all"],
        help="which benchmark (default: all)",
    )
    bench.add_argument("--out", default="bench-out", help="output directory (default: bench-out)")
    bench.add_argument("--methods", help="comma-separated method names (default: all)")
    bench.add_argument(
        "--budget-tokens", metavar="N,...", help="per-item budgets in tokens, e.g. 4000,8000"
    )
    bench.add_argument(
        "--budget-fractions",
        metavar="F,...",
        help="per-item budgets as fractions of the reference method's mean "
        "tokens per item, e.g. 0.25,0.5 or 25%%,50%% (default: the benchmark's)",
    )
    bench.add_argument("--budgets", help=argparse.SUPPRESS)  # removed: see _bench_plan
    bench.add_argument(
        "--reference", help="the unbudgeted method --budget-fractions refer to (game24: tot-bfs)"
    )
    bench.add_argument(
        "--recording",
        nargs="+",
        metavar="PATH",
        help="replay recordings (JSONL or .jsonl.gz, see budget-graph convert) "
        "instead of the shipped ones",
    )
    bench.add_argument(
        "--items",
        metavar="FILE",
        help='JSONL of items {"id", "input", "gold"} (gold: a string or a list '
        "of acceptable answers)",
    )
    bench.add_argument(
        "--task",
        dest="task_spec",
        metavar="MODULE:ATTR",
        help="your task object or class, e.g. mypkg.tasks:MyTask",
    )
    bench.add_argument("--limit", type=int, help="only the first N items (quick run)")
    bench.add_argument("--workers", type=int, help="worker processes (default: up to 2)")
    bench.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=_bench)

    report = sub.add_parser("report", help="report on a JSONL file of run records")
    report.add_argument("path", help="results.jsonl written by bench or by your own runs")
    report.add_argument("--out", help="also write report.md/report.json and plots here")
    report.set_defaults(func=_report)

    convert = sub.add_parser(
        "convert",
        help="convert recorded runs (ToT BFS logs, CoT sample "
        "logs, Faithful-CoT predictions) into the replay format",
    )
    add_convert_args(convert)
    convert.set_defaults(func=_convert)

    serve = sub.add_parser(
        "serve-replay", help="serve recorded completions over an OpenAI-compatible HTTP API"
    )
    add_serve_args(serve)
    serve.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``budget-graph`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"budget-graph {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"budget-graph {args.command}: error: no such file: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: pending work cancelled, workers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
