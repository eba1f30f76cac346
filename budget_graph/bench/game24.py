"""Game of 24 benchmark on the recorded GPT-4 outputs: ToT BFS vs budget-aware search vs CoT.

Every method runs through the replay (:class:`~budget_graph.replay.ReplayChatModel`), so
each request is answered with a recorded GPT-4 completion and billed with its real token
counts; each puzzle runs under its own hard cap (``with_budget``), and the overshoot of
every run is measured (``extra["overshoot"]``, must be 0).

Replay protocol (see ``docs/planner.md``): a puzzle's model serves that puzzle's recorded
propose completions and the run's recorded value judgements (the value prompt depends only
on the numbers left, and the original run cached it across puzzles; so do we, with one
:class:`~budget_graph.nodes.ValueCache` per method and budget). A request the recording
never saw is a typed, zero-cost "not recorded" outcome, counted in ``extra["unrecorded"]``.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from fractions import Fraction
from typing import Any

from budget_graph.budget import Budget
from budget_graph.budgeted import budgeted
from budget_graph.efficiency import RunRecord
from budget_graph.errors import BudgetExceededError
from budget_graph.meter import Meter
from budget_graph.nodes import (
    BestFirst,
    JudgeValue,
    RewardValue,
    ValueCache,
    VerifierValue,
)
from budget_graph.planner import build_planner
from budget_graph.replay import (
    ReplayChatModel,
    ReplayRecord,
    ReplayStore,
    load_records,
    request_key,
)
from budget_graph.tasks.base import Item
from budget_graph.tasks.game24 import VALUE_MAP, Game24Task, current_numbers

__all__ = [
    "BUDGET_FRACTIONS",
    "METHODS",
    "TOT_MEAN_TOKENS",
    "game24_reward",
    "replay_model",
    "run",
    "table",
]

METHODS: tuple[str, ...] = ("tot-bfs", "budget-search", "tot-bfs-truncated", "cot-verify")
"""``tot-bfs``: the recorded ToT BFS (breadth 5) replayed through our graph, unbudgeted;
``budget-search``: our best-first search with lazy valuation and verifier early stop;
``tot-bfs-truncated``: ToT BFS capped at each budget; ``cot-verify``: CoT samples, one at a
time, stopping at the first verified answer."""

BUDGET_FRACTIONS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
"""Default budgets: fractions of the ToT BFS per-puzzle mean."""

TOT_MEAN_TOKENS = (1_387_936 + 547_859) // 100
"""The recorded ToT BFS run's mean prompt + completion tokens per puzzle (19,357)."""

_SURE = 3 * VALUE_MAP["sure"]
_TASK = "game24"
_INF_BUDGET = 10**9


def _number(token: str) -> Fraction | None:
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def _reaches_24(numbers: Sequence[Fraction]) -> bool:
    if len(numbers) == 1:
        return abs(numbers[0] - 24) < Fraction(1, 100)
    a, b = numbers
    outs = [a + b, a - b, b - a, a * b]
    outs += [a / b] if b else []
    outs += [b / a] if a else []
    return any(abs(x - 24) < Fraction(1, 100) for x in outs)


def game24_reward(item: Item, text: str) -> float | None:
    """Cheap programmatic value of a Game of 24 state, or ``None`` to ask the judge.

    Decides only the trivial states: one number left (24 or dead), two numbers left
    (one operation reaches 24, or dead), an answer line that did not verify (dead), four
    steps without an answer (dead). States with three numbers go to the LLM judge.
    """
    lines = text.strip().split("\n")
    if not text.strip():
        return None
    if "left: " not in lines[-1]:
        return 0.0  # an answer line the verifier rejected, or garbage
    if len(lines) >= 4:
        return 0.0
    numbers = [_number(t) for t in current_numbers(text).split()]
    if not numbers or any(n is None for n in numbers) or len(numbers) > 2:
        return None
    return _SURE if _reaches_24([n for n in numbers if n is not None]) else 0.0


@functools.cache
def _records() -> tuple[dict[str, list[ReplayRecord]], dict[str, ReplayRecord]]:
    propose: dict[str, list[ReplayRecord]] = defaultdict(list)
    values: dict[str, ReplayRecord] = {}
    for rec in load_records("game24_tot"):
        if rec.kind == "value":
            values[rec.key] = rec
        else:
            propose[rec.item_id].append(rec)
    return dict(propose), values


@functools.cache
def _puzzle_records(item_id: str, puzzle: str) -> tuple[ReplayRecord, ...]:
    """The puzzle's propose records and the value records any of their children can ask for."""
    propose, values = _records()
    task = Game24Task()
    item = Item(id=item_id, input=puzzle)
    mine = propose.get(item_id, [])
    wanted: dict[str, ReplayRecord] = {}
    for rec in mine:
        state = str(rec.meta.get("state", ""))
        for completion in rec.completions:
            for child in task.parse_proposals(item, state, completion):
                key = request_key([{"role": "user", "content": task.value_prompt(item, child)}])
                if key in values:
                    wanted[key] = values[key]
    return (*mine, *wanted.values())


def replay_model(item: Item) -> ReplayChatModel:
    """A replay model serving ``item``'s recorded ToT proposals and the run's judgements."""
    return ReplayChatModel(store=ReplayStore([], records=_puzzle_records(item.id, item.input)))


def _record(
    item: Item, method: str, limit: int | None, out: dict[str, Any], meter: Meter | None,
    task: Game24Task,
) -> RunRecord:
    spend = out.get("spend")
    stats = out.get("search_stats")
    over = max(meter.spent - limit, 0) if meter is not None and limit is not None else 0
    answer = out.get("answer")
    return RunRecord(
        task=_TASK,
        item=item.id,
        method=method,
        budget=limit,
        correct=bool(out.get("solved")) and task.is_correct(item, answer),
        prompt_tokens=spend.input_tokens if spend else 0,
        generated_tokens=spend.output_tokens if spend else 0,
        calls=spend.calls if spend else 0,
        stop_reason=out.get("stop_reason"),
        answer=answer,
        extra={
            "overshoot": over,
            "unrecorded": stats.unrecorded if stats else 0,
            "expansions": stats.expansions if stats else 0,
            "expand_units": stats.expand_units if stats else 0,
            "nodes": len(out.get("tree") or ()),
        },
    )


def _run_search(
    item: Item, method: str, limit: int | None, cache: ValueCache, task: Game24Task
) -> RunRecord:
    model = replay_model(item)
    judge = JudgeValue(model, task, samples=3, cache=cache)
    if method == "budget-search":
        value = VerifierValue(task) | RewardValue(game24_reward) | judge
        graph = build_planner(
            model, task=task, budget=Budget(max_tokens=limit or _INF_BUDGET), value=value,
            policy=BestFirst(expand_at=VALUE_MAP["sure"]), lazy_value_at=VALUE_MAP["sure"],
        )
    else:  # the original ToT BFS: judge every candidate, keep 5, no early stop
        graph = build_planner(
            model, task=task, budget=Budget(max_tokens=limit or _INF_BUDGET), value=judge,
            breadth=5, stop_on_solved=False,
        )
    # One branch at a time: two states with the same numbers ask the same propose prompt,
    # and the replay serves its recorded completions in order, so the order must be fixed.
    out = graph.invoke({"item": item}, {"max_concurrency": 1})
    return _record(item, method, limit, out, graph.last_meter, task)


def _run_cot(item: Item, limit: int, task: Game24Task, model: ReplayChatModel) -> RunRecord:
    meter = Meter(Budget(max_tokens=limit))
    llm = budgeted(model, meter=meter)
    answer, correct, reason, samples = None, False, "budget", 0
    for _ in range(100):  # 100 samples were recorded per puzzle
        try:
            msg = llm.invoke(task.cot_prompt(item))
        except BudgetExceededError:
            break
        samples += 1
        got = task.extract_answer(item, msg.text)
        if task.is_correct(item, got):
            answer, correct, reason = got, True, "solved"
            break
    else:
        reason = "exhausted"
    spend = meter.spend
    return RunRecord(
        task=_TASK, item=item.id, method="cot-verify", budget=limit, correct=correct,
        prompt_tokens=spend.input_tokens, generated_tokens=spend.output_tokens,
        calls=spend.calls, stop_reason=reason, answer=answer,
        extra={"overshoot": max(meter.spent - limit, 0), "samples": samples, "unrecorded": 0},
    )


def _budget_tokens(budget: float) -> int:
    return int(round(budget * TOT_MEAN_TOKENS)) if budget <= 10 else int(budget)


def _run_job(method: str, budget: int | None, limit: int | None) -> list[RunRecord]:
    """All puzzles of one (method, budget): one value cache across them, as the original run."""
    task = Game24Task()
    items = list(task.items())[:limit]
    if method == "cot-verify":
        assert budget is not None
        cot = ReplayChatModel(datasets=["game24_cot"])
        return [_run_cot(item, budget, task, cot) for item in items]
    cache = ValueCache()
    return [_run_search(item, method, budget, cache, task) for item in items]


def run(
    methods: Sequence[str] | None = None,
    budgets: Sequence[float] | None = None,
    limit: int | None = None,
    progress: Callable[..., None] | None = None,
    *,
    workers: int | None = None,
) -> list[RunRecord]:
    """Run the Game of 24 benchmark; one :class:`RunRecord` per (method, budget, puzzle).

    Args:
        methods: Subset of :data:`METHODS` (default: all).
        budgets: Per-puzzle budgets: fractions of :data:`TOT_MEAN_TOKENS` (values <= 10,
            e.g. ``0.5``) or token counts (default :data:`BUDGET_FRACTIONS`).
        limit: Only the first ``limit`` puzzles.
        progress: Called as ``progress(advance=n, total=N, description=...)`` as puzzles finish.
        workers: Processes running (method, budget) jobs in parallel (default: up to 2).

    Returns:
        The run records, in job order (``budget`` is ``None`` for the unbudgeted ToT BFS).

    """
    chosen = list(methods) if methods is not None else list(METHODS)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; must be among {list(METHODS)}")
    levels = [_budget_tokens(b) for b in (budgets if budgets is not None else BUDGET_FRACTIONS)]
    n_items = len(Game24Task().items()[:limit])
    jobs: list[tuple[str, int | None]] = []
    for m in chosen:
        jobs.extend([(m, None)] if m == "tot-bfs" else [(m, b) for b in levels])
    total = len(jobs) * n_items
    if progress is not None:
        progress(advance=0, total=total, description="game24")
    workers = min(workers or min(2, os.cpu_count() or 1), len(jobs)) if jobs else 1
    results: dict[int, list[RunRecord]] = {}
    if workers <= 1:
        for i, (method, budget) in enumerate(jobs):
            results[i] = _run_job(method, budget, limit)
            if progress is not None:
                progress(advance=n_items, total=total, description=f"game24 {method}")
    else:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            # Longest jobs first (unbudgeted ToT, then the largest budgets) to balance workers.
            order = sorted(range(len(jobs)), key=lambda i: -(jobs[i][1] or 10**12))
            futures = {pool.submit(_run_job, *jobs[i], limit): i for i in order}
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                if progress is not None:
                    progress(advance=n_items, total=total, description=f"game24 {jobs[i][0]}")
    return [r for i in range(len(jobs)) for r in results[i]]


def table(records: Sequence[RunRecord]) -> str:
    """The report's table (one row per method and budget) plus a note on unrecorded expansions."""
    from budget_graph.efficiency import render_table

    lines = [render_table(records)]
    unrec_total = sum(int(r.extra.get("unrecorded", 0)) for r in records)
    if unrec_total:
        exp_units = sum(int(r.extra.get("expand_units", 0)) for r in records)
        exps = sum(int(r.extra.get("expansions", 0)) for r in records)
        mean = exp_units / exps if exps else 0.0
        lines.append("")
        lines.append(
            f"unrecorded: expansions the recording never saw (a typed NotRecordedError, the "
            f"node is marked unexpandable; nothing is billed). Billing each at the mean "
            f"expansion cost ({mean:.0f} tokens) would add about {mean:.0f} x unrecorded "
            f"tokens to its row."
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - same as ``budget-graph bench game24``
    import sys

    from budget_graph.cli import main

    sys.exit(main(["bench", "game24", *sys.argv[1:]]))


