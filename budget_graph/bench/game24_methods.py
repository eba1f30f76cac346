"""The Game of 24 benchmark's methods: what each row runs, and the runner of one job.

:data:`METHODS` names every row; :func:`run_job` runs one (method, budget) over its
puzzles in a worker process and returns one :class:`~budget_graph.efficiency.RunRecord`
per puzzle. :mod:`budget_graph.bench.game24` plans the jobs and reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from budget_graph.anytime import build_anytime
from budget_graph.bench import game24_tools as tools
from budget_graph.bench.billing import BilledReplayChatModel
from budget_graph.bench.game24_replay import Recording, load_recording, replay_model
from budget_graph.budget import Budget
from budget_graph.budgeted import budgeted
from budget_graph.efficiency import RunRecord
from budget_graph.errors import BudgetExceededError
from budget_graph.meter import Meter
from budget_graph.nodes import AllocationPolicy, FrontierProportional, ValueCache
from budget_graph.planner import build_planner
from budget_graph.replay import ReplayStore
from budget_graph.tasks.base import Item
from budget_graph.tasks.game24 import VALUE_MAP, Game24Task

__all__ = ["HEADLINE", "METHODS", "POLICY", "REFERENCE", "Method", "run_job"]


REFERENCE = "tot-bfs"
"""The recorded ToT BFS (breadth 5, judge only, no early stop), replayed unbudgeted."""
HEADLINE = "budget-search"
"""The headline method: best-first search with judge + verifier + one-number check."""


@dataclass(frozen=True, slots=True)
class Method:
    """How one row runs: its kind, value tools, breadth, and whether it has a budget."""

    kind: str  # "bfs", "search" or "cot"
    tools: str
    breadth: int = 0
    budgeted: bool = True
    stop_on_solved: bool = True


METHODS: dict[str, Method] = {
    REFERENCE: Method("bfs", "judge", breadth=5, budgeted=False, stop_on_solved=False),
    HEADLINE: Method("search", "check"),
    "budget-search-judge": Method("search", "judge"),
    "budget-search-verifier": Method("search", "verifier"),
    "budget-search-solver": Method("search", "solver"),
    "budget-proportional": Method("proportional", "check"),
    **{f"tot-bfs-{k}": Method("bfs", "check", breadth=k, budgeted=False) for k in range(1, 6)},
    "cot-verify": Method("cot", "verifier"),
    "anytime-gen": Method("anytime", "verifier", budgeted=False),
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


POLICY = tools.LayerCappedBestFirst(
    per_depth=8,
    expand_at=VALUE_MAP["sure"],
    min_value=(0.0, 3 * VALUE_MAP["likely"], VALUE_MAP["sure"]),
    fallback_share=1 / 3,
)
"""The search policy of every ``budget-search*`` row: best-first, at most 8 expansions per
depth; a first step needs three "likely" votes (or a "sure"), a later one a "sure" vote;
siblings are valued until one is "sure". A puzzle with nothing left that clears its floor
goes on below the floors, shallowest node first, while it has spent less than a third of
its budget, then ends ("exhausted") instead of spending the rest."""

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
    policy: AllocationPolicy,
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
            policy=policy,
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


def run_job(
    method: str,
    budget: int | None,
    items: tuple[Item, ...],
    sources: tuple[str, ...],
    task: Game24Task | None,
    policy: AllocationPolicy | None = None,
) -> list[RunRecord]:
    """All puzzles of one (method, budget): one value cache across them, as the original run.

    ``policy`` replaces :data:`POLICY` in the ``budget-search*`` rows (e.g. another
    ``fallback_share``).
    """
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
    chosen = policy if policy is not None else POLICY
    return [_run_search(item, method, budget, cache, task, recording, chosen) for item in items]
