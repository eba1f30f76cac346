"""Date understanding benchmark: fixed-N voting vs early stopping vs budget-aware self-consistency.

Every self-consistency method is :func:`~budget_graph.consistency.build_self_consistency`
with a different stop rule, batch size and budget; ``anytime-gen`` is
:func:`~budget_graph.anytime.build_anytime` (progressive max_tokens 100, 200, ..., the
relative-gain stop, the best answer so far) beside them. All run over the 359 BIG-bench
date questions on the recorded code-davinci-002 least-to-most samples (40 per question)
through :class:`~budget_graph.replay.ReplayChatModel`. Each question's samples are served in
recorded order, so every method sees the same chains: the first k samples of a question
are the same whatever method draws them.

Prompt accounting: a batch is one request with the provider's ``n`` (the least-to-most
prompt, about 1,360 tokens with chat framing, is paid once per request), so batch sizes decide
prompt spend. Fixed 40 draws 4 batches of 10 (the original run's 4 requests of ``n=10``);
fixed 5 and window agreement draw batches of 5 (ESC's windows); adaptive consistency draws
one sample per request (as in Aggarwal et al., 2023), paying the prompt per sample; the
budget-aware method draws what its stop rule still needs, as far as the budget pays;
anytime generation pays the prompt at every step.

Anytime traces: every run records, after each batch (step), its current answer and the
prompt, generated and reasoning tokens spent by then, so the report draws best-so-far
anytime curves in any token kind on the task's fixed budget grid.

Bring your own: ``run(recordings=..., items=..., task=...)`` (``budget-graph bench date
--recording --items --task``) replays any recording of whole-chain samples in the replay
format. Its per-chain output cap is the longest recorded completion (in the replay's own
token counts), so no recorded chain is ever cut, and every question gets at most as many
samples as the recording holds for each question.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from budget_graph.accounting import count_messages
from budget_graph.anytime import build_anytime
from budget_graph.bench.date_replay import RECORDINGS, Recording, load_recording
from budget_graph.bench.jobs import resolve_budgets, run_jobs, validate_budgets
from budget_graph.budget import Budget
from budget_graph.consistency import build_self_consistency
from budget_graph.efficiency import RunRecord
from budget_graph.replay import ReplayChatModel
from budget_graph.stopping import (
    AdaptiveConsistency,
    FixedSamples,
    MarginalGain,
    StopRule,
    WindowAgreement,
)
from budget_graph.tasks.base import Item, SampledTask
from budget_graph.tasks.date import DateTask

__all__ = [
    "ANYTIME_MAX_STEPS",
    "BUDGETS",
    "METHODS",
    "RECORDINGS",
    "MethodSpec",
    "Recording",
    "load_recording",
    "reference_tokens",
    "run",
    "table",
]

ANYTIME_MAX_STEPS = 10
"""Most steps of ``anytime-gen`` (caps 100, 200, ..., 1,000 tokens; the rule stops it first)."""

BUDGETS: tuple[int, ...] = (1_800, 2_400, 4_000)
"""Default per-question budgets of ``sc-budget``, in prompt + generated tokens."""

_RECORDED = 40
_FIXED_BATCH = 10
_TASK = "date"


@dataclass(frozen=True, slots=True, kw_only=True)
class MethodSpec:
    """One benchmarked self-consistency configuration."""

    stop: StopRule | None = None
    """Stop rule of a self-consistency method (always capped at the 40 recorded samples)."""
    batch_size: int = 1
    """Most samples per request (``n``)."""
    anytime_step: int | None = None
    """Anytime generation instead of a vote: the output cap added per step (Δ)."""
    budgeted: bool = False
    """Run at each benchmark budget (else once, unbudgeted)."""
    label: str = ""
    """What the table says about the method."""


_CAP = FixedSamples(_RECORDED)

METHODS: dict[str, MethodSpec] = {
    "sc-fixed40": MethodSpec(
        stop=_CAP, batch_size=10, label="majority of 40 (4 requests of n=10, the original run)"
    ),
    "sc-fixed5": MethodSpec(stop=FixedSamples(5), batch_size=5, label="majority of 5 (n=5)"),
    "sc-window5": MethodSpec(
        stop=WindowAgreement(5) | _CAP,
        batch_size=5,
        label="ESC: the last 5 agree (n=5, then what the window lacks)",
    ),
    "sc-adaptive0.8": MethodSpec(
        stop=AdaptiveConsistency(0.8) | _CAP, batch_size=1, label="Adaptive-Consistency, Beta 0.8"
    ),
    "sc-adaptive0.95": MethodSpec(
        stop=AdaptiveConsistency(0.95) | _CAP,
        batch_size=1,
        label="Adaptive-Consistency, Beta 0.95",
    ),
    "sc-marginal": MethodSpec(
        stop=MarginalGain(0.05) | _CAP, batch_size=1, label="marginal gain < 5% (n=1)"
    ),
    "sc-budget": MethodSpec(
        stop=AdaptiveConsistency(0.95) | _CAP,
        batch_size=8,
        budgeted=True,
        label="budget-aware: Adaptive 0.95, batch = what the rule needs and the budget pays",
    ),
    "anytime-gen": MethodSpec(
        anytime_step=100,
        label="anytime generation: max_tokens 100, 200, ...; relative gain < 5%; best so far",
    ),
}
"""The benchmarked methods by name (``sc-budget`` runs at every budget)."""


def reference_tokens(
    recordings: Sequence[str | Path] | None = None,
    items: Sequence[Item] | None = None,
    task: SampledTask | None = None,
) -> float:
    """Mean prompt + generated tokens per question of the fixed-40 vote.

    Mean prompt + generated tokens per question of the fixed-40 vote (requests of
    ``n=10``, each paying its question's prompt; the first 40 recorded chains, or all
    the recording holds), on ``recordings`` (default :data:`RECORDINGS`) and ``items``.
    """
    task = task or DateTask()
    recording = load_recording(tuple(str(s) for s in recordings or RECORDINGS))
    the_items = list(items if items is not None else task.items())
    k = min(_RECORDED, recording.per_question(task, the_items))
    total = 0
    for item in the_items:
        prompt = count_messages(
            [{"role": "user", "content": task.cot_prompt(item)}], model=recording.model
        )
        total += math.ceil(k / _FIXED_BATCH) * prompt
        total += sum(recording.generated[recording.key(task, item)][:k])
    return total / max(len(the_items), 1)


def _run_one(
    graph: Any, item: Item, method: str, limit: int | None, task: SampledTask, majority: str | None
) -> RunRecord:
    out = graph.invoke({"item": item})
    spend = out["spend"]
    meter = getattr(graph, "last_meter", None)
    over = max(meter.spent - limit, 0) if meter is not None and limit is not None else 0
    answer = out.get("answer")
    trace = out.get("trace") or ()
    extra: dict[str, Any] = {"stop_rule": out.get("stop_rule"), "overshoot": over}
    if "samples" in out:
        extra["samples"] = len(out["samples"])
        extra["confidence"] = round(float(out.get("confidence") or 0.0), 6)
    else:  # anytime generation: one answer per step
        extra["samples"] = int(out.get("step") or 0)
        extra["stop_rule"] = out.get("stop_reason")
    if method == "sc-fixed40" and majority is not None:
        extra["recorded_majority"] = majority
    return RunRecord(
        task=_TASK,
        item=item.id,
        method=method,
        budget=limit,
        correct=task.is_correct(item, answer),
        prompt_tokens=spend.input_tokens,
        generated_tokens=spend.output_tokens,
        reasoning_tokens=spend.reasoning_tokens,
        calls=spend.calls,
        stop_reason=out.get("stop_reason"),
        answer=answer,
        anytime=[(p.output_tokens, float(task.is_correct(item, p.answer))) for p in trace],
        anytime_usage=[(p.input_tokens, p.reasoning_tokens) for p in trace],
        extra=extra,
    )


def _graph(
    model: ReplayChatModel,
    task: SampledTask,
    method: str,
    budget: int | None,
    *,
    cap: int,
    samples: int,
) -> Any:
    spec = METHODS[method]
    run_budget = Budget(max_tokens=budget) if budget is not None else None
    if spec.anytime_step is not None:
        return build_anytime(
            model,
            task=task,
            budget=run_budget,
            step_tokens=spec.anytime_step,
            max_steps=min(ANYTIME_MAX_STEPS, samples),
        )
    return build_self_consistency(
        model,
        task=task,
        budget=run_budget,
        stop=spec.stop,
        batch_size=spec.batch_size,
        max_samples=min(_RECORDED, samples),
        max_tokens=cap,
    )


def _run_chunk(
    method: str,
    budget: int | None,
    items: Sequence[Item],
    sources: tuple[str, ...],
    task: SampledTask,
    samples: int,
    seed: int | None = None,
) -> list[RunRecord]:
    """One method at one budget on some questions (also the unit of work of a worker process)."""
    recording = load_recording(sources)
    # A fresh store: each question starts at its first sample (in recorded or seeded order).
    model = ReplayChatModel(datasets=list(sources), seed=seed)
    graph = _graph(model, task, method, budget, cap=recording.cap, samples=samples)
    return [
        _run_one(graph, i, method, budget, task, recording.majority.get(recording.key(task, i)))
        for i in items
    ]


def run(
    methods: Sequence[str] | None = None,
    *,
    budget_tokens: Sequence[int] | None = None,
    budget_fractions: Sequence[float] | None = None,
    recordings: Sequence[str | Path] | None = None,
    items: Sequence[Item] | None = None,
    task: SampledTask | None = None,
    limit: int | None = None,
    progress: Callable[..., None] | None = None,
    workers: int | None = None,
    seed: int | None = None,
) -> list[RunRecord]:
    """Run the date benchmark; one :class:`RunRecord` per (method, budget, question).

    Args:
        methods: Subset of :data:`METHODS` (default: all).
        budget_tokens: Per-question budgets of the budgeted methods, in prompt + generated
            tokens (default :data:`BUDGETS`).
        budget_fractions: Per-question budgets as fractions of the fixed-40 vote's mean
            on this recording and these items (:func:`reference_tokens`).
        recordings: Shipped dataset names or replay JSONL(.gz) paths (default
            :data:`RECORDINGS`): whole-chain samples whose request is the task's
            ``cot_prompt``. The per-chain cap is the longest recorded completion.
        items: The questions (default: the task's).
        task: A :class:`~budget_graph.tasks.base.SampledTask` (default
            :class:`~budget_graph.tasks.date.DateTask`).
        limit: Only the first ``limit`` questions.
        progress: Called as ``progress(advance=k, total=N, description=...)`` as questions
            finish.
        workers: Worker processes; default one per CPU (at most 4) for a full run, none
            (in-process) for under 200 runs. Results do not depend on it. Workers are
            spawned: a script calling this needs an ``if __name__ == "__main__":`` guard.
        seed: Serve each question's samples in a shuffled order (deterministic per
            seed) instead of the recorded order; every method sees the same order.

    Returns:
        The run records (``budget`` is ``None`` for unbudgeted methods), in the order
        (method, budget, question).

    Raises:
        ValueError: An unknown method name, invalid budgets, or items the recording
            has no request for (checked before any run).

    """
    chosen = list(methods) if methods is not None else list(METHODS)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; must be among {list(METHODS)}")
    validate_budgets(budget_tokens, budget_fractions)
    if budget_tokens is None and budget_fractions is None:
        budget_tokens = BUDGETS
    the_task = task or DateTask()
    sources = tuple(str(s) for s in recordings or RECORDINGS)
    the_items = tuple(items if items is not None else the_task.items())[:limit]
    samples = load_recording(sources).per_question(the_task, the_items)
    levels = resolve_budgets(
        budget_tokens,
        budget_fractions,
        lambda: reference_tokens(sources, the_items, the_task),
    )
    jobs: list[tuple[str, int | None]] = []
    for m in chosen:
        jobs.extend([(m, b) for b in levels] if METHODS[m].budgeted else [(m, None)])
    total = len(jobs) * len(the_items)
    if workers is None:
        workers = min(os.cpu_count() or 1, 4) if total >= 200 else 1
    step = 60
    chunks = [
        (m, b, the_items[i : i + step], sources, the_task, samples, seed)
        for m, b in jobs
        for i in range(0, len(the_items), step)
    ]

    def advance(method: str, budget: int | None, done: int) -> None:
        if progress is not None:
            progress(advance=done, total=total, description=f"date {method} {budget or ''}")

    if workers <= 1:
        records: list[RunRecord] = []
        for chunk in chunks:
            records.extend(_run_chunk(*chunk))
            advance(chunk[0], chunk[1], len(chunk[2]))
        return records
    # Spawned workers (no fork under LangGraph's threads); Ctrl-C terminates them at once.
    results = run_jobs(
        _run_chunk,
        chunks,
        workers=workers,
        context="spawn",
        done=lambda n, _r: advance(chunks[n][0], chunks[n][1], len(chunks[n][2])),
    )
    return [r for part in results for r in part]


def _majority_check(records: Sequence[RunRecord]) -> str:
    """Whether fixed-40 reproduced the recording's majority answers (where it has them)."""
    pairs = [
        (r.answer, r.extra["recorded_majority"])
        for r in records
        if r.method == "sc-fixed40" and "recorded_majority" in r.extra
    ]
    if not pairs:
        return ""
    same = sum(a == b for a, b in pairs)
    return f"sc-fixed40 reproduces the recorded majority answer on {same}/{len(pairs)} questions."


def table(records: Sequence[RunRecord]) -> str:
    """The report's table (one row per method and budget) plus the majority-vote check."""
    from budget_graph.efficiency import render_table

    lines = [render_table(records)]
    check = _majority_check(records)
    return "\n".join(lines) + (f"\n\n{check}" if check else "")


if __name__ == "__main__":  # pragma: no cover - same as ``budget-graph bench date``
    import sys

    from budget_graph.cli import main

    sys.exit(main(["bench", "date", *sys.argv[1:]]))
