"""``build_anytime``: anytime generation as a LangGraph graph, and the anytime trace point.

step -> step -> ... -> END

Anytime generation asks the model again with a growing output cap, max_tokens = Δ, 2Δ,
3Δ, ... (``step_tokens`` = Δ), scores each completion's answer, keeps the best answer so
far, and stops by the relative-gain rule (:class:`~budget_graph.stopping.RelativeGain`)
on the best-so-far quality Q: stop at the first step whose gain (Q(b + Δb) − Q(b)) / Q(b)
falls below ε, checked while Q(b) > 0. Every call goes through
:func:`~budget_graph.budgeted`, so it is reserved against the run's meter and a refusal
ends the run with ``stop_reason="budget"`` and the best answer so far.

On the replay (:class:`~budget_graph.replay.ReplayChatModel`) each request is answered
with the next recorded completion cut at the request's ``max_tokens``
(``finish_reason="length"``), billed with its real token counts.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Annotated, Any, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph

from budget_graph._internal import observe
from budget_graph.budget import Budget, Spend
from budget_graph.budgeted import budgeted
from budget_graph.errors import BudgetExceededError
from budget_graph.guard import guard, with_budget
from budget_graph.nodes.edge import AnytimePoint
from budget_graph.nodes.expand import is_not_recorded
from budget_graph.state import BudgetState
from budget_graph.stopping import RelativeGain
from budget_graph.tasks.base import Item, SampledTask

__all__ = [
    "AnytimePoint",
    "AnytimeQuality",
    "AnytimeState",
    "answer_complete",
    "build_anytime",
]


AnytimeQuality = Callable[[Item, str | None, str, str | None], float]
"""Scores one completion: ``(item, extracted answer, text, finish_reason) -> Q``."""


def answer_complete(item: Item, answer: str | None, text: str, finish_reason: str | None) -> float:
    """Default quality: 1.0 for an answer from a completion that was not cut, else 0.0."""
    return 1.0 if answer is not None and finish_reason != "length" else 0.0


class AnytimeState(BudgetState):
    """State of the anytime-generation graph."""

    item: Item
    step: NotRequired[int]
    """Steps made (step k asked for max_tokens = k · step_tokens)."""
    answer: NotRequired[str | None]
    """The best answer so far."""
    quality: NotRequired[float]
    """Its quality Q."""
    qualities: NotRequired[list[float]]
    """Best-so-far Q after each step (what the stop rule reads)."""
    trace: Annotated[list[AnytimePoint], operator.add]
    """The best answer so far after each step, with the spend by then."""
    stop_statistic: NotRequired[float | None]
    """The last relative gain the stop rule saw."""
    error: NotRequired[str | None]


def _usage(msg: Any) -> Spend:
    usage: Mapping[str, Any] = getattr(msg, "usage_metadata", None) or {}
    details: Mapping[str, Any] = usage.get("output_token_details") or {}
    return Spend(
        input_tokens=int(usage.get("input_tokens", 0)),
        output_tokens=int(usage.get("output_tokens", 0)),
        reasoning_tokens=int(details.get("reasoning", 0)),
        calls=1,
    )


def build_anytime(
    model: BaseChatModel,
    *,
    task: SampledTask,
    item: Item | None = None,
    budget: Budget | None = None,
    step_tokens: int = 100,
    max_steps: int = 10,
    epsilon: float = 0.05,
    patience: int = 1,
    quality: AnytimeQuality = answer_complete,
    stop_at: float | None = None,
    unanswerable: Callable[[BaseException], bool] = is_not_recorded,
    checkpointer: Any = None,
    name: str = "anytime",
) -> Any:
    """Build an anytime-generation graph: progressive max_tokens, relative-gain stop.

    Step k asks the task's chain-of-thought prompt with ``max_tokens = k * step_tokens``,
    scores the completion with ``quality`` and keeps the best answer so far (ties keep
    the earlier). After each step the relative-gain rule reads the best-so-far Q: it
    stops with ``"converged"`` at the first step whose signed gain is below ``epsilon``
    (``patience`` steps in a row) while Q > 0. Other stops: ``"budget"`` (a call was
    refused), ``"solved"`` (the best quality reached ``stop_at``), ``"depth"``
    (``max_steps`` made), ``"error"`` (``unanswerable``).

    Args:
        model: Chat model that writes the answers.
        task: Supplies ``cot_prompt`` and ``extract_answer``.
        item: Default problem when the input has no ``item``.
        budget: Run budget; given, the graph is wrapped with
            :func:`~budget_graph.with_budget` (a fresh meter per run).
        step_tokens: Δ, the output cap added at each step.
        max_steps: Most steps (the largest cap is ``max_steps * step_tokens``).
        epsilon: ε of the relative-gain rule.
        patience: Low-gain steps in a row needed to stop.
        quality: Scores a completion (default :func:`answer_complete`; pass a verifier
            for tasks that have one).
        stop_at: Stop with ``"solved"`` as soon as the best quality reaches this (e.g.
            1.0 for a verifier: nothing can beat a verified answer).
        unanswerable: Errors that end the run with ``stop_reason="error"``.
        checkpointer: Passed to ``compile``.
        name: Graph name.

    Returns:
        A compiled graph; invoke it with ``{"item": Item}``. The result holds ``answer``,
        ``quality``, ``stop_reason``, ``trace`` (one :class:`AnytimePoint` per step) and
        ``spend``.

    Raises:
        ValueError: An argument is out of range (named with its value).

    Example:
        >>> # app = build_anytime(llm, task=DateTask(), budget=Budget(max_tokens=4_000))
        >>> # out = app.invoke({"item": item}); out["answer"], out["stop_reason"]

    """
    for label, value in (("step_tokens", step_tokens), ("max_steps", max_steps)):
        if value < 1:
            raise ValueError(f"{label} must be >= 1 (got {value})")
    rule = RelativeGain(epsilon, patience)
    llm = budgeted(model, require_meter=False)  # unbudgeted when the graph runs without one

    def step(state: Mapping[str, Any]) -> dict[str, Any]:
        the_item = state.get("item") or item
        if the_item is None:
            raise ValueError("build_anytime needs an item: pass item=... or {'item': ...}")
        k = int(state.get("step") or 0) + 1
        best, best_q = state.get("answer"), float(state.get("quality") or 0.0)
        out: dict[str, Any] = {"item": the_item, "step": k}
        try:
            msg = llm.invoke([HumanMessage(task.cot_prompt(the_item))], max_tokens=k * step_tokens)
        except BudgetExceededError:
            return {**out, "stop_reason": "budget"}
        except Exception as exc:
            if not unanswerable(exc):
                raise
            return {**out, "stop_reason": "error", "error": f"{type(exc).__name__}: {exc}"[:500]}
        text = msg.text
        finish = (msg.response_metadata or {}).get("finish_reason")
        answer = task.extract_answer(the_item, text)
        q = float(quality(the_item, answer, text, finish))
        if q > best_q or k == 1:
            best, best_q = answer, q
        spent = (state.get("spend") or Spend()) + _usage(msg)
        qualities = [*(state.get("qualities") or ()), best_q]
        out.update(
            answer=best,
            quality=best_q,
            qualities=qualities,
            trace=[AnytimePoint.of(spent, best, best_q)],
        )
        decision = rule(qualities)
        out["stop_statistic"] = decision.statistic
        if stop_at is not None and best_q >= stop_at:
            out["stop_reason"] = "solved"
        elif decision.stop:
            out["stop_reason"] = "converged"
        elif k >= max_steps:
            out["stop_reason"] = "depth"
        if "stop_reason" in out:
            observe.emit(
                "budget.early_stop",
                rule=str(rule),
                statistic=decision.statistic,
                reason=out["stop_reason"],
                samples=k,
                answer=best,
                confidence=best_q,
                item=the_item.id,
            )
        return out

    def route(state: Mapping[str, Any]) -> str:
        return END if state.get("stop_reason") is not None else "step"

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(AnytimeState)
    builder.add_node("step", guard(step, name="step"))
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", route, ["step", END])
    graph = builder.compile(checkpointer=checkpointer, name=name).with_config(
        recursion_limit=max_steps + 10
    )
    return with_budget(graph, budget) if budget is not None else graph
