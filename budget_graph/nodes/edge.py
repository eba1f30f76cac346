"""The planner's budget edge: keep searching while the next step is affordable and useful.

Also the anytime trace point (:class:`AnytimePoint`) that the planner and
:func:`~budget_graph.anytime.build_anytime` record after each step.

:class:`PlannerEdge` holds the stopping rules; its :meth:`~PlannerEdge.check` says why to
stop (or ``None``), and calling it as a conditional edge routes to the ``Send``s of the
selected actions or to the terminator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Send

from budget_graph._internal.records import record_fields
from budget_graph.budget import Spend
from budget_graph.context import current_meter
from budget_graph.nodes.allocation import Action
from budget_graph.nodes.tree import SearchStats, Tree
from budget_graph.stopping import RelativeGain

__all__ = [
    "AnytimePoint",
    "PlannerEdge",
    "expected_step_cost",
    "generated_left",
    "remaining_units",
    "search_point",
]

STOP_REASONS = ("budget", "solved", "depth", "converged", "exhausted", "error")


@dataclass(frozen=True, slots=True)
class AnytimePoint:
    """The run's best answer so far after one step, and what the run had spent by then."""

    output_tokens: int
    """Generated tokens spent so far in this run (hidden reasoning included)."""
    input_tokens: int = 0
    """Prompt tokens spent so far."""
    reasoning_tokens: int = 0
    """Hidden reasoning tokens spent so far."""
    answer: str | None = None
    """The best answer so far (``None``: none yet)."""
    quality: float = 0.0
    """The graph's own score of that answer (a verifier's 1.0, a value, a confidence)."""

    @classmethod
    def of(
        cls, spend: Spend | None, answer: str | None = None, quality: float = 0.0
    ) -> AnytimePoint:
        """A point at the spend ``spend`` (``None``: nothing spent)."""
        if spend is None:
            return cls(0, answer=answer, quality=quality)
        return cls(spend.output_tokens, spend.input_tokens, spend.reasoning_tokens, answer, quality)

    def _asdict(self) -> dict[str, Any]:
        # Checkpoints store this record as its fields (see budget_graph._internal.records).
        return record_fields(self)


def remaining_units(state: Mapping[str, Any], config: RunnableConfig | None = None) -> int | None:
    """Units the search may still spend: the meter's available units (``None``: no meter).

    The estimator's ``budget_tokens`` is not in these units: it counts generated tokens
    only (see :func:`generated_left`).
    """
    meter = current_meter(config)
    return meter.available() if meter is not None else None


def generated_left(state: Mapping[str, Any]) -> int | None:
    """Generated tokens the search may still spend under the estimator's budget.

    ``budget_tokens`` is TALE's budget: the output tokens a solution needs. It caps the
    search's *generated* tokens, counted from the estimate on (``budget_tokens_base``,
    the run's output tokens when the estimate was made; the estimator's own call counts
    against it), never prompt + output units. ``None`` without an estimate.

    Example:
        >>> from budget_graph.budget import Spend
        >>> generated_left({"budget_tokens": 300, "budget_tokens_base": 0,
        ...                 "spend": Spend(input_tokens=600, output_tokens=100, calls=1)})
        200

    """
    estimate = state.get("budget_tokens")
    if estimate is None:
        return None
    spend = state.get("spend")
    generated = (spend.output_tokens if spend is not None else 0) - int(
        state.get("budget_tokens_base") or 0
    )
    return max(int(estimate) - generated, 0)


def search_point(state: Mapping[str, Any], last: Sequence[Action]) -> AnytimePoint | None:
    """The anytime point after a search step: the best verified answer so far and the spend.

    Reads only the nodes the last step created or valued (the children of its expanded
    nodes and the nodes it valued), so a step costs O(its own nodes), not O(tree). A
    verified node's answer replaces an unverified one; ``None`` before anything was spent.
    """
    spend = state.get("spend")
    trace = state.get("trace") or ()
    previous = trace[-1] if trace else None
    if spend is None:
        return None
    answer = previous.answer if previous is not None else None
    quality = previous.quality if previous is not None else 0.0
    if quality < 1.0:
        tree = state.get("tree")
        touched: list[Any] = []
        for a in last:
            if tree is None:
                break
            if a.kind == "expand":
                touched.extend(tree.children(a.node))
            else:
                touched.extend(tree[i] for i in a.ids if i in tree)
        found = next((n for n in touched if n.verified), None)
        if found is not None:
            answer, quality = found.answer, 1.0
    point = AnytimePoint.of(spend, answer, quality)
    if previous is not None and point == previous:
        return None
    return point


def expected_step_cost(
    stats: SearchStats | None, prior: float | None = None, *, kind: str = "expand"
) -> float | None:
    """Expected units of the next expansion (or judge call), learned from the calls so far."""
    if stats is None:
        return prior
    learned = stats.units_per_expansion if kind == "expand" else stats.units_per_value_call
    return learned if learned is not None else prior


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannerEdge:
    """Continue while there is work, budget for it, depth left and enough gain.

    Stops with ``"budget"`` (a call was refused, the remaining budget is below the
    expected cost of the next expansion, or the search generated the estimator's
    ``budget_tokens``), ``"solved"`` (a verified solution exists and ``stop_on_solved``),
    ``"depth"``/``"exhausted"`` (nothing left to select), or ``"converged"`` (the
    relative-gain rule, :class:`~budget_graph.stopping.RelativeGain`, fired on Q after
    each step: signed gain, checked while Q > 0, ``patience`` low steps in a row).
    """

    expand: str = "expand"
    """Node that expands one tree node."""
    value: str = "value"
    """Node that values a batch of tree nodes."""
    end: str = "terminate"
    """Node to go to when stopping."""
    stop_on_solved: bool = True
    """Stop at the first verified solution."""
    min_gain: float | None = None
    """ε: stop when (Q(b + Δb) − Q(b)) / Q(b) < min_gain (Q(b) > 0); ``None``: never."""
    patience: int = 1
    """Consecutive low-gain steps needed to stop (1: the first one stops)."""
    prior_step_units: float | None = None
    """Expected units of the next step before any was observed (``None``: don't check)."""

    def check(
        self,
        state: Mapping[str, Any],
        *,
        actions: Sequence[Action],
        reason: str | None,
        remaining: int | None,
        quality: Sequence[float] = (),
    ) -> str | None:
        """Why to stop now, or ``None`` to go on."""
        if state.get("stop_reason") in STOP_REASONS:
            return str(state["stop_reason"])
        stats = state.get("search_stats")
        if self.stop_on_solved and stats is not None and stats.solved > 0:
            return "solved"
        if not actions:
            return reason or "exhausted"
        kind = "expand" if any(a.kind == "expand" for a in actions) else "value"
        cost = expected_step_cost(stats, self.prior_step_units, kind=kind)
        if remaining is not None and (remaining <= 0 or (cost is not None and remaining < cost)):
            return "budget"
        left = generated_left(state)
        if left is not None and left <= 0:
            return "budget"
        if self.min_gain is not None and RelativeGain(self.min_gain, self.patience)(quality):
            return "converged"
        return None

    def __call__(self, state: Mapping[str, Any], config: RunnableConfig) -> Any:
        """Route: ``Send`` each selected action, or go to ``end``."""
        if state.get("stop_reason") in STOP_REASONS:
            return self.end
        actions: Sequence[Action] = state.get("actions") or ()
        if not actions:
            return self.end
        tree: Tree = state["tree"]
        item = state["item"]
        sends = []
        for a in actions:
            if a.kind == "expand":
                payload = {"item": item, "node": tree[a.node], "allocated": a.allocated}
                sends.append(Send(self.expand, payload))
            else:
                nodes = [tree[i] for i in a.ids]
                sends.append(Send(self.value, {"item": item, "nodes": nodes}))
        return sends
