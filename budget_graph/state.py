"""State keys a user adds to their own graph state, and the ``RemainingTokens`` managed value."""

from __future__ import annotations

import operator
from typing import Annotated, NotRequired

from langgraph.managed.base import ManagedValue
from typing_extensions import TypedDict

from budget_graph.budget import Budget, Spend, Usage

__all__ = [
    "CHECKPOINT_TYPES",
    "BudgetState",
    "RemainingTokens",
    "RemainingTokensManager",
    "StopReason",
    "keep_reason",
    "merge_reasons",
]

StopReason = str
"""Why a run ended: ``"budget"``, ``"converged"``, ``"solved"``, ``"depth"``, ``"error"``..."""


def keep_reason(current: StopReason | None, new: StopReason | None) -> StopReason | None:
    """Reducer for ``stop_reason``: parallel branches may each report one; keep the latest."""
    return new if new is not None else current


def merge_reasons(
    current: dict[str, StopReason] | None, new: dict[str, StopReason] | None
) -> dict[str, StopReason]:
    """Reducer for ``stop_reasons``: one entry per nested level, the latest reason wins."""
    return {**(current or {}), **(new or {})}


class BudgetState(TypedDict):
    """Keys to mix into a graph's state so its spend is tracked there.

    ``spend`` merges node deltas with ``+`` (safe under parallel ``Send`` branches and
    restored by checkpoints); nodes return deltas, never totals.

    Example:
        >>> class MyState(BudgetState):
        ...     question: str

    """

    spend: Annotated[Spend, operator.add]
    """Everything the thread has spent (additive reducer)."""
    budget: NotRequired[Budget | None]
    """The budget of the current run (set by ``with_budget``)."""
    stop_reason: NotRequired[Annotated[StopReason | None, keep_reason]]
    """Why the run stopped (or is stopping), if it did."""
    stop_reasons: NotRequired[Annotated[dict[str, StopReason], merge_reasons]]
    """Why nested budgeted runs (subgraphs, agents) stopped, by scope name; a nested
    level stopping for its own limit does not end this run."""


CHECKPOINT_TYPES: tuple[tuple[str, str], ...] = tuple(
    (t.__module__, t.__name__) for t in (Budget, Spend, Usage)
)
"""``(module, name)`` of every type ``BudgetState`` puts in checkpoints.

Pass them to LangGraph's serializer to load them without its "unregistered type" message:
``JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)``. Under
``LANGGRAPH_STRICT_MSGPACK=true`` this is not needed: LangGraph allows the types it finds
in the state schema, and ``BudgetState`` names them all.
"""


class RemainingTokensManager(ManagedValue[int]):
    """Managed value: units the run's meter can still reserve (like ``RemainingSteps``)."""

    @staticmethod
    def get(scratchpad: object) -> int:  # noqa: D102
        from budget_graph.context import current_meter

        meter = current_meter()
        return meter.available() if meter is not None else 2**31 - 1


RemainingTokens = Annotated[int, RemainingTokensManager]
"""Annotate a state key with this to read the run's remaining budget in a node."""
