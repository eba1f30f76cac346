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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from budget_graph.anytime import build_anytime
from budget_graph.bench import game24_tools as tools
from budget_graph.bench.billing import BilledReplayChatModel
from budget_graph.bench.game24_replay import (
    RECORDINGS,
    Recording,
    classify,
    load_recording,
    replay_model,
)
from budget_graph.bench.jobs import resolve_budgets, run_jobs, validate_budgets
from budget_graph.budget import Budget
from budget_graph.budgeted import budgeted
from budget_graph.efficiency import RunRecord
from budget_graph.errors import BudgetExceededError
from budget_graph.meter import Meter
from budget_graph.nodes import FrontierProportional, ValueCache
from budget_graph.planner import build_planner
from budget_graph.replay import ReplayStore
from budget_graph.tasks.base import Item
from budget_graph.tasks.game24 import VALUE_MAP, Game24Task

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

REFERENCE = "tot-bfs"
"""The recorded ToT BFS (breadth 5, judge only, no early stop), replayed unbudgeted."""
HEADLINE = "budget-search"
"""The headline method: best-first search with judge + verifier + one-number check."""


@dataclass(frozen=True, slots=True)
class _Method:
    kind: str  # "bfs", "search" or "cot"
    tools: str
    breadth: int = 0
    budgeted: bool = True
    stop_on_solved: bool = True


METHODS: dict[str, _Method] = {
    REFERENCE: _Method("bfs", "judge", breadth=5, budgeted=False, stop_on_solved=False),
    HEADLINE: _Method("search", "check"),
    "budget-search-judge": _Method("search", "judge"),
    "budget-search-verifier": _Method("search", "verifier"),
    "budget-search-solver": _Method("search", "solver"),
    "budget-proportional": _Method("proportional", "check"),
    **{f"tot-bfs-{k}": _Method("bfs", "check", breadth=k, budgeted=False) for k in range(1, 6)},
    "cot-verify": _Method("cot", "verifier"),
    "anytime-gen": _Method("anytime", "verifier", budgeted=False),
}
"""Method name -> how it runs. ``budget-search*``: best-first search (lazy valuation, stop
at the first verified answer) at each budget, one row per value-tool configuration;
``budget-proportional``: the headline's tools with the whole-frontier proportional split
(:class:`~budget_graph.nodes.FrontierProportional`: B(n) = B_rem V(n) / sum V over every
open node, expanding the nodes whose share pays for an expansion);
``tot-bfs-k``: ToT BFS keeping k states per step, with the headline's value tools and early
stop, unbudgeted; ``cot-verify``: CoT samples one at a time until one verifies;
``anytime-gen``: anytime generation (:func:`~budget_graph.anytime.build_anytime`) on the CoT
recording, max_tokens 100, 200, ..., stopping at a verified answer or by the relative-gain
rule, unbudgeted."""

BUDGET_FRACTIONS: tuple[float, ...] = (0.15, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
"""Default budgets of the headline method: fractions of the reference's mean per puzzle."""
COARSE_FRACTIONS: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5)
"""Default budgets of the other budgeted methods (a subset of :data:`BUDGET_FRACTIONS`)."""

POLICY = tools.LayerCappedBestFirst(
    per_depth=8,
    expand_at=VALUE_MAP["sure"],
    min_value=(0.0, 3 * VALUE_MAP["likely"], VALUE_MAP["sure"]),
)
"""The search policy of every ``budget-search*`` row: best-first, at most 8 expansions per
depth; a first step needs three "likely" votes (or a "sure"), a later one a "sure" vote;
siblings are valued until one is "sure". A puzzle with nothing left that clears its floor
ends ("exhausted") instead of spending its budget."""

_TASK = "game24"
_INF_BUDGET = 10**9


def _record(
    item: Item,
    method: str,
    limit: int | None,
    out: dict[str, Any],
    meter: Meter | None,
    task: Game24Task,
    model: BilledReplayChatModel,
) -> RunRecord:
    spend = out.get("spend")
    stats = out.get("search_stats")
    over = max(meter.spent - limit, 0) if meter is not None and limit is not None else 0
    answer = out.get("answer")
    trace = out.get("trace") or ()
    return RunRecord(
        task=_TASK,
        item=item.id,
        method=method,
        budget=limit,
        correct=bool(out.get("solved")) and task.is_correct(item, answer),
        anytime=[
            (p.output_tokens, float(p.quality >= 1.0 and task.is_correct(item, p.answer)))
            for p in trace
        ],
        anytime_usage=[(p.input_tokens, p.reasoning_tokens) for p in trace],
        prompt_tokens=spend.input_tokens if spend else 0,
        generated_tokens=spend.output_tokens if spend else 0,
        calls=spend.calls if spend else 0,
        stop_reason=out.get("stop_reason"),
        answer=answer,
        extra={
            "overshoot": over,
            "unrecorded": model.tally.requests,
            "estimated_tokens": model.tally.tokens,
            "expansions": stats.expansions if stats else 0,
            "nodes": len(out.get("tree") or ()),
            "tools": METHODS[method].tools if method in METHODS else "",
        },
    )


def _run_search(
    item: Item,
    method: str,
    limit: int | None,
    cache: ValueCache,
    task: Game24Task,
    recording: Recording,
) -> RunRecord:
    spec = METHODS[method]
    model = replay_model(item, recording, task)
    value = tools.value_tools(spec.tools, model, task, cache)
    budget = Budget(max_tokens=limit or _INF_BUDGET)
    expand_cap = recording.cap("propose")
    if spec.kind == "proportional":
        graph = build_planner(
            model,
            task=task,
            budget=budget,
            value=value,
            expand_max_tokens=expand_cap,
            policy=FrontierProportional(expand_at=VALUE_MAP["sure"]),
            lazy_value_at=VALUE_MAP["sure"],
        )
    elif spec.kind == "search":
        graph = build_planner(
            model,
            task=task,
            budget=budget,
            value=value,
            expand_max_tokens=expand_cap,
            policy=POLICY,
            lazy_value_at=VALUE_MAP["sure"],
        )
    else:  # ToT BFS: judge every candidate, keep `breadth`
        graph = build_planner(
            model,
            task=task,
            budget=budget,
            value=value,
            breadth=spec.breadth,
            stop_on_solved=spec.stop_on_solved,
            expand_max_tokens=expand_cap,
        )
    # One branch at a time: two states with the same numbers ask the same propose prompt,
    # and the replay serves its recorded completions in order, so the order must be fixed.
    out = graph.invoke({"item": item}, {"max_concurrency": 1})
    return _record(item, method, limit, out, graph.last_meter, task, model)


def _run_cot(item: Item, limit: int, task: Game24Task, model: Any, cap: int) -> RunRecord:
    meter = Meter(Budget(max_tokens=limit))
    llm = budgeted(model, meter=meter)
    answer, correct, reason, samples = None, False, "budget", 0
    trace: list[tuple[int, float]] = []
    usage: list[tuple[int, int]] = []
    recorded = len(model.replay_store.records([{"role": "user", "content": task.cot_prompt(item)}]))
    per_item = max(recorded, 1) * 100
    for _ in range(per_item):
        try:
            msg = llm.invoke(task.cot_prompt(item), max_tokens=cap)
        except BudgetExceededError:
            break
        samples += 1
        got = task.extract_answer(item, msg.text)
        ok = task.is_correct(item, got)
        spent = meter.spend
        trace.append((spent.output_tokens, float(ok)))
        usage.append((spent.input_tokens, spent.reasoning_tokens))
        if ok:
            answer, correct, reason = got, True, "solved"
            break
    else:
        reason = "exhausted"
    spend = meter.spend
    return RunRecord(
        task=_TASK,
        item=item.id,
        method="cot-verify",
        budget=limit,
        correct=correct,
        prompt_tokens=spend.input_tokens,
        generated_tokens=spend.output_tokens,
        calls=spend.calls,
        stop_reason=reason,
        answer=answer,
        anytime=trace,
        anytime_usage=usage,
        extra={
            "overshoot": max(meter.spent - limit, 0),
            "samples": samples,
            "unrecorded": 0,
            "estimated_tokens": 0,
            "tools": "verifier",
        },
    )


def _run_anytime(item: Item, task: Game24Task, model: Any) -> RunRecord:
    def verified(_item: Item, answer: str | None, _text: str, _finish: str | None) -> float:
        return 1.0 if task.is_correct(item, answer) else 0.0

    graph = build_anytime(model, task=task, quality=verified, stop_at=1.0, max_steps=10)
    out = graph.invoke({"item": item})
    spend, trace = out["spend"], out.get("trace") or ()
    return RunRecord(
        task=_TASK,
        item=item.id,
        method="anytime-gen",
        correct=task.is_correct(item, out.get("answer")),
        prompt_tokens=spend.input_tokens,
        generated_tokens=spend.output_tokens,
        reasoning_tokens=spend.reasoning_tokens,
        calls=spend.calls,
        stop_reason=out.get("stop_reason"),
        answer=out.get("answer"),
        anytime=[(p.output_tokens, p.quality) for p in trace],
        anytime_usage=[(p.input_tokens, p.reasoning_tokens) for p in trace],
        extra={"samples": int(out.get("step") or 0), "unrecorded": 0, "tools": "verifier"},
    )


def _run_job(
    method: str,
    budget: int | None,
    items: tuple[Item, ...],
    sources: tuple[str, ...],
    task: Game24Task | None,
) -> list[RunRecord]:
    """All puzzles of one (method, budget): one value cache across them, as the original run."""
    recording = load_recording(sources)
    task = task or Game24Task(dead_end_rule=not recording.judged_final_states)
    if METHODS[method].kind in ("cot", "anytime"):
        from budget_graph.replay import ReplayChatModel

        cot = ReplayChatModel(store=ReplayStore([], records=recording.cot))
        if METHODS[method].kind == "anytime":
            return [_run_anytime(item, task, cot) for item in items]
        assert budget is not None
        return [_run_cot(item, budget, task, cot, recording.cap("cot")) for item in items]
    cache = ValueCache()
    return [_run_search(item, method, budget, cache, task, recording) for item in items]


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

    first = [(m, None, the_items, sources, task) for m in unbudgeted]
    results = run_jobs(_run_job, first, workers=workers, done=done(lambda i: first[i][0]))
    by_method = dict(zip(unbudgeted, results, strict=True))

    def reference_mean() -> float:
        runs = by_method[reference]
        return sum(r.total_tokens for r in runs) / max(len(runs), 1)

    levels = resolve_budgets(budget_tokens, budget_fractions, reference_mean)
    coarse = resolve_budgets(None, COARSE_FRACTIONS, reference_mean) if default else levels
    second = [
        (m, b, the_items, sources, task)
        for m in budgeted_methods
        for b in (levels if m == HEADLINE else coarse)
    ]
    order = sorted(range(len(second)), key=lambda i: -(second[i][1] or 0))
    more = run_jobs(
        _run_job,
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
