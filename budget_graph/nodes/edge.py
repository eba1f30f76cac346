"""The planner's budget edge: keep searching while the next step is affordable and useful.

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

from budget_graph.context import current_meter, run_base_units
from budget_graph.nodes.allocation import Action
from budget_graph.nodes.tree import SearchStats, Tree

__all__ = ["PlannerEdge", "expected_step_cost", "remaining_units"]

STOP_REASONS = ("budget", "solved", "depth", "converged", "exhausted", "error")


def remaining_units(state: Mapping[str, Any], config: RunnableConfig | None = None) -> int | None:
    """Units the search may still spend: the meter's available units, capped by the estimate.

    ``budget_tokens`` (set by the estimator) caps the run's own spend; ``None`` when there
    is neither a meter nor an estimate.
    """
    meter = current_meter(config)
    avail: int | None = meter.available() if meter is not None else None
    estimate = state.get("budget_tokens")
    if estimate is not None:
        spend = state.get("spend")
        spent = (spend.units if spend is not None else 0) - run_base_units(config)
        left = max(int(estimate) - spent, 0)
        avail = left if avail is None else min(avail, left)
    return avail


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

    Stops with ``"budget"`` (a call was refused, or the remaining budget is below the
    expected cost of the next expansion), ``"solved"`` (a verified solution exists and
    ``stop_on_solved``), ``"depth"``/``"exhausted"`` (nothing left to select), or
    ``"converged"`` (the best value's relative gain stayed below ``min_gain`` for
    ``patience`` steps).
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
    """Stop when (Q(b + db) - Q(b)) / Q(b) < min_gain for ``patience`` steps; ``None`` never."""
    patience: int = 2
    """Consecutive low-gain steps tolerated."""
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
        if self.min_gain is not None and len(quality) > self.patience:
            recent = quality[-(self.patience + 1) :]
            gains = [
                (b - a) / abs(a) if a else (float("inf") if b > a else 0.0)
                for a, b in zip(recent, recent[1:], strict=False)
            ]
            if all(g < self.min_gain for g in gains):
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
