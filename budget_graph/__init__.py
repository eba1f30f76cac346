"""budget_graph: token budgets for LangGraph agents and reasoning graphs.

Hard caps (reserve, then commit), spend in graph state, OpenTelemetry export and
efficiency accounting.

Every public name is imported on first use (PEP 562), so ``import budget_graph`` and the
``budget-graph`` CLI start without loading LangGraph, LangChain or OpenTelemetry.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from budget_graph._internal.observe import (
        CallInfo,
        NodeInfo,
        Observer,
        add_observer,
        remove_observer,
    )
    from budget_graph.accounting import count_messages, count_tokens, usage_from_message
    from budget_graph.budget import Budget, CountMode, ModelPrice, Spend, Usage
    from budget_graph.budgeted import BudgetedChatModel, budgeted
    from budget_graph.consistency import SelfConsistencyState, build_self_consistency
    from budget_graph.context import (
        METER_KEY,
        budget_config,
        carry_context,
        current_meter,
        use_meter,
    )
    from budget_graph.errors import (
        BudgetError,
        BudgetExceededError,
        NoMeterError,
        UsageOverrunWarning,
    )
    from budget_graph.guard import (
        BudgetedGraph,
        budget_edge,
        budget_tools_condition,
        guard,
        with_budget,
    )
    from budget_graph.meter import BaseMeter, Meter, Reservation
    from budget_graph.middleware import (
        TokenBudgetExceededError,
        TokenBudgetMiddleware,
        TokenBudgetState,
    )
    from budget_graph.planner import PlannerState, build_planner
    from budget_graph.retry import RetryPolicy
    from budget_graph.state import (
        CHECKPOINT_TYPES,
        BudgetState,
        RemainingTokens,
        RemainingTokensManager,
    )
    from budget_graph.stopping import (
        AdaptiveConsistency,
        FixedSamples,
        MarginalGain,
        StopDecision,
        StopRule,
        WindowAgreement,
    )

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "AdaptiveConsistency": "budget_graph.stopping",
    "BaseMeter": "budget_graph.meter",
    "Budget": "budget_graph.budget",
    "BudgetError": "budget_graph.errors",
    "BudgetExceededError": "budget_graph.errors",
    "BudgetState": "budget_graph.state",
    "BudgetedChatModel": "budget_graph.budgeted",
    "BudgetedGraph": "budget_graph.guard",
    "CHECKPOINT_TYPES": "budget_graph.state",
    "CallInfo": "budget_graph._internal.observe",
    "CountMode": "budget_graph.budget",
    "FixedSamples": "budget_graph.stopping",
    "METER_KEY": "budget_graph.context",
    "MarginalGain": "budget_graph.stopping",
    "Meter": "budget_graph.meter",
    "ModelPrice": "budget_graph.budget",
    "NoMeterError": "budget_graph.errors",
    "NodeInfo": "budget_graph._internal.observe",
    "Observer": "budget_graph._internal.observe",
    "PlannerState": "budget_graph.planner",
    "RemainingTokens": "budget_graph.state",
    "RemainingTokensManager": "budget_graph.state",
    "Reservation": "budget_graph.meter",
    "RetryPolicy": "budget_graph.retry",
    "SelfConsistencyState": "budget_graph.consistency",
    "Spend": "budget_graph.budget",
    "StopDecision": "budget_graph.stopping",
    "StopRule": "budget_graph.stopping",
    "TokenBudgetExceededError": "budget_graph.middleware",
    "TokenBudgetMiddleware": "budget_graph.middleware",
    "TokenBudgetState": "budget_graph.middleware",
    "Usage": "budget_graph.budget",
    "UsageOverrunWarning": "budget_graph.errors",
    "WindowAgreement": "budget_graph.stopping",
    "add_observer": "budget_graph._internal.observe",
    "budget_config": "budget_graph.context",
    "budget_edge": "budget_graph.guard",
    "budget_tools_condition": "budget_graph.guard",
    "budgeted": "budget_graph.budgeted",
    "build_planner": "budget_graph.planner",
    "build_self_consistency": "budget_graph.consistency",
    "carry_context": "budget_graph.context",
    "count_messages": "budget_graph.accounting",
    "count_tokens": "budget_graph.accounting",
    "current_meter": "budget_graph.context",
    "guard": "budget_graph.guard",
    "remove_observer": "budget_graph._internal.observe",
    "usage_from_message": "budget_graph.accounting",
    "use_meter": "budget_graph.context",
    "with_budget": "budget_graph.guard",
}
"""Public name -> the module defining it (the middleware needs the ``[agents]`` extra)."""


def _export(name: str) -> Any:
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return _export(name)
    raise AttributeError(f"module 'budget_graph' has no attribute {name!r}")


def _function_over_module(name: str) -> property:
    # ``guard`` and ``budgeted`` are both submodules and exported functions: importing the
    # submodule must not replace the function on the package (as eager imports ensured).
    def get(self: ModuleType) -> Any:
        value = globals().get(name)  # ``self`` is this module: its namespace is globals()
        return value if value is not None and not isinstance(value, ModuleType) else _export(name)

    def keep(self: ModuleType, value: Any) -> None:
        if not isinstance(value, ModuleType):
            globals()[name] = value

    return property(get, keep)


class _Package(ModuleType):
    """The package module; exported names shadow same-named submodules."""

    guard = _function_over_module("guard")
    budgeted = _function_over_module("budgeted")


sys.modules[__name__].__class__ = _Package

__all__ = [
    "CHECKPOINT_TYPES",
    "METER_KEY",
    "AdaptiveConsistency",
    "BaseMeter",
    "Budget",
    "BudgetError",
    "BudgetExceededError",
    "BudgetState",
    "BudgetedChatModel",
    "BudgetedGraph",
    "CallInfo",
    "CountMode",
    "FixedSamples",
    "MarginalGain",
    "Meter",
    "ModelPrice",
    "NoMeterError",
    "NodeInfo",
    "Observer",
    "PlannerState",
    "RemainingTokens",
    "RemainingTokensManager",
    "Reservation",
    "RetryPolicy",
    "SelfConsistencyState",
    "TokenBudgetExceededError",
    "TokenBudgetMiddleware",
    "TokenBudgetState",
    "Spend",
    "StopDecision",
    "StopRule",
    "Usage",
    "UsageOverrunWarning",
    "WindowAgreement",
    "add_observer",
    "budget_config",
    "budget_edge",
    "budget_tools_condition",
    "budgeted",
    "build_planner",
    "build_self_consistency",
    "carry_context",
    "count_messages",
    "count_tokens",
    "current_meter",
    "guard",
    "remove_observer",
    "usage_from_message",
    "use_meter",
    "with_budget",
]
