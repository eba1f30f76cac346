"""Agent middleware: :class:`TokenBudgetMiddleware` for ``langchain.agents.create_agent``."""

from budget_graph.middleware._meters import AgentMeter
from budget_graph.middleware.token_budget import (
    FINAL_NOTE,
    TokenBudgetExceededError,
    TokenBudgetMiddleware,
    TokenBudgetState,
    build_budget_message,
)

__all__ = [
    "FINAL_NOTE",
    "AgentMeter",
    "TokenBudgetExceededError",
    "TokenBudgetMiddleware",
    "TokenBudgetState",
    "build_budget_message",
]
