"""Game of 24 benchmark on recorded GPT-4 outputs: search policies vs ToT BFS-k vs CoT.

Every method runs through a replay model, so each request is answered with a recorded
completion and billed with its real token counts; each puzzle runs under its own hard cap
(``with_budget``) and the overshoot of every run is measured (``extra["overshoot"]``).
A request the recording never saw is billed too (exact prompt + the mean recorded
completion of that kind at that step, marked estimated; see
:mod:`budget_graph.bench.billing`), and its branch is dead.

Rows separate the search policy from task knowledge: the value tools are named
configurations (:data:`VALUE_TOOLS`), the baselines are ToT BFS-k with the same tools and
early stop, and CoT with a verifier. The recorded ToT BFS (``tot-bfs``) is the reference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from budget_graph.bench import game24_tools as tools
from budget_graph.bench.game24_methods import HEADLINE, METHODS, POLICY, REFERENCE, run_job
from budget_graph.bench.game24_replay import (
    RECORDINGS,
    Recording,
    classify,
    load_recording,
    replay_model,
)
from budget_graph.bench.jobs import resolve_budgets, run_jobs, validate_budgets
from budget_graph.efficiency import RunRecord
from budget_graph.nodes import AllocationPolicy
from budget_graph.tasks.base import Item
from budget_graph.tasks.game24 import Game24Task

__all__ = [
    "BUDGET_FRACTIONS",
    "COARSE_FRACTIONS",
    "HEADLINE",
    "POLICY",
    "METHODS",
    "RECORDINGS",
    "REFERENCE",
    "VALUE_TOOLS",
    "Recording",
    "frontier",
    "frontier_line",
    "game24_reward",
    "classify",
    "load_recording",
    "replay_model",
    "run",
    "table",
]

game24_reward = tools.game24_reward
VALUE_TOOLS = tools.VALUE_TOOLS


BUDGET_FRACTIONS: tuple[float, ...] = (0.15, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
"""Default budgets of the headline method: fractions of the reference's mean per puzzle."""
COARSE_FRACTIONS: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5)
"""Default budgets of the other budgeted methods (a subset of :data:`BUDGET_FRACTIONS`)."""


def run(
    methods: Sequence[str] | None = None,
    *,
    budget_tokens: Sequence[int] | None = None,
    budget_fractions: Sequence[float] | None = None,
    reference: str = REFERENCE,
    recordings: Sequence[str | Path] | None = None,
    items: Sequence[Item] | None = None,
    task: Game24Task | None = None,
    limit: int | None = None,
    progress: Callable[..., None] | None = None,
    workers: int | None = None,
    policy: AllocationPolicy | None = None,
) -> list[RunRecord]:
    """Run the Game of 24 benchmark; one :class:`RunRecord` per (method, budget, puzzle).

    Args:
        methods: Subset of :data:`METHODS` (default: all).
        budget_tokens: Per-puzzle budgets in tokens.
        budget_fractions: Per-puzzle budgets as fractions of ``reference``'s mean tokens
            per puzzle, measured in this run. Default (neither given): :data:`BUDGET_FRACTIONS`
            for the headline method, :data:`COARSE_FRACTIONS` for the other budgeted ones.
        reference: The unbudgeted method fractions refer to (run even if not in
            ``methods``).
        recordings: Shipped dataset names or replay JSONL(.gz) paths (default
            :data:`RECORDINGS`); ToT records (``propose``/``value``) and CoT samples.
        items: The puzzles (default: the task's).
        task: The task (default :class:`~budget_graph.tasks.game24.Game24Task`).
        limit: Only the first ``limit`` puzzles.
        progress: Called as ``progress(advance=n, total=N, description=...)``.
        workers: Processes running (method, budget) jobs (default: up to 2).
        policy: The search policy of the ``budget-search*`` rows (default :data:`POLICY`;
            e.g. ``dataclasses.replace(POLICY, fallback_share=None)``).

    Returns:
        The run records in job order (``budget`` is ``None`` for unbudgeted methods).

    Raises:
        ValueError: An unknown method or reference, or invalid budgets.

    """
    chosen = list(dict.fromkeys(methods)) if methods is not None else list(METHODS)
    unknown = [m for m in [*chosen, reference] if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; must be among {list(METHODS)}")
    if METHODS[reference].budgeted:
        raise ValueError(f"Invalid reference {reference!r}: must be an unbudgeted method")
    default = budget_tokens is None and budget_fractions is None
    if default:
        budget_fractions = BUDGET_FRACTIONS
    validate_budgets(budget_tokens, budget_fractions)
    sources = tuple(str(s) for s in (recordings or RECORDINGS))
    the_items = tuple(items if items is not None else (task or Game24Task()).items())[:limit]
    n = len(the_items)
    unbudgeted = [m for m in chosen if not METHODS[m].budgeted]
    if budget_fractions is not None and reference not in unbudgeted:
        unbudgeted.insert(0, reference)
    budgeted_methods = [m for m in chosen if METHODS[m].budgeted]

    def grid_size(m: str) -> int:
        coarse = default and m != HEADLINE
        return len(COARSE_FRACTIONS if coarse else budget_fractions or budget_tokens or ())

    total = (len(unbudgeted) + sum(grid_size(m) for m in budgeted_methods)) * n
    if progress is not None:
        progress(advance=0, total=total, description="game24")

    def done(label: Callable[[int], str]) -> Callable[[int, Any], None]:
        def _done(i: int, _result: Any) -> None:
            if progress is not None:
                progress(advance=n, total=total, description=f"game24 {label(i)}")

        return _done

    first = [(m, None, the_items, sources, task, policy) for m in unbudgeted]
    results = run_jobs(run_job, first, workers=workers, done=done(lambda i: first[i][0]))
    by_method = dict(zip(unbudgeted, results, strict=True))

    def reference_mean() -> float:
        runs = by_method[reference]
        return sum(r.total_tokens for r in runs) / max(len(runs), 1)

    levels = resolve_budgets(budget_tokens, budget_fractions, reference_mean)
    coarse = resolve_budgets(None, COARSE_FRACTIONS, reference_mean) if default else levels
    second = [
        (m, b, the_items, sources, task, policy)
        for m in budgeted_methods
        for b in (levels if m == HEADLINE else coarse)
    ]
    order = sorted(range(len(second)), key=lambda i: -(second[i][1] or 0))
    more = run_jobs(
        run_job,
        second,
        workers=workers,
        order=order,
        done=done(lambda i: f"{second[i][0]} @ {second[i][1]}"),
    )
    out = [r for m in unbudgeted for r in by_method[m]]
    return out + [r for rs in more for r in rs]


def frontier(
    records: Sequence[RunRecord],
    *,
    method: str = HEADLINE,
    reference: str = REFERENCE,
    solved: int = 67,
) -> float | None:
    """Smallest share (%) of the reference's tokens at which ``method`` solves enough.

    Smallest share (%) of ``reference``'s total tokens at which ``method`` solves at
    least ``solved`` items, among the budgets run; ``None`` if no budget does.
    """
    ref = sum(r.total_tokens for r in records if r.method == reference and r.budget is None)
    if not ref:
        return None
    runs: dict[int | None, list[RunRecord]] = defaultdict(list)
    for r in records:
        if r.method == method:
            runs[r.budget].append(r)
    shares = [
        100 * sum(r.total_tokens for r in rs) / ref
        for rs in runs.values()
        if sum(r.correct for r in rs) >= solved
    ]
    return min(shares) if shares else None


def frontier_line(records: Sequence[RunRecord]) -> str:
    """``frontier_billed: s67=<p> s68=<q>`` (percent of the reference's billed tokens)."""
    parts = []
    for k in (67, 68):
        share = frontier(records, solved=k)
        parts.append(f"s{k}={'none' if share is None else f'{share:.1f}'}")
    return "frontier_billed: " + " ".join(parts)


def table(records: Sequence[RunRecord]) -> str:
    """The report's table (one row per method and budget), with a note on billing."""
    from budget_graph.efficiency import render_table

    return "\n".join([render_table(records), "", tools.TABLE_NOTE])


if __name__ == "__main__":  # pragma: no cover - same as ``budget-graph bench game24``
    import sys

    from budget_graph.cli import main

    sys.exit(main(["bench", "game24", *sys.argv[1:]]))
