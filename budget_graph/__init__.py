"""budget_graph: token budgets for LangGraph agents and reasoning graphs.

Hard caps (reserve, then commit), spend in graph state, OpenTelemetry export and
efficiency accounting.
"""

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
from budget_graph.context import METER_KEY, budget_config, current_meter, use_meter
from budget_graph.errors import BudgetError, BudgetExceededError, UsageOverrunWarning
from budget_graph.guard import BudgetedGraph, budget_edge, guard, with_budget
from budget_graph.meter import BaseMeter, Meter, Reservation
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

_LAZY = {
    # The agent middleware needs ``langchain`` (the ``[agents]`` extra): imported on use.
    "TokenBudgetMiddleware": "budget_graph.middleware",
    "TokenBudgetExceededError": "budget_graph.middleware",
    "TokenBudgetState": "budget_graph.middleware",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'budget_graph' has no attribute {name!r}")

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
    "budgeted",
    "build_planner",
    "build_self_consistency",
    "count_messages",
    "count_tokens",
    "current_meter",
    "guard",
    "remove_observer",
    "usage_from_message",
    "use_meter",
    "with_budget",
]
