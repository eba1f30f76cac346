"""Graphs shared by the conformance matrix and the ``with_budget`` tests: one builder each."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from budget_graph import BudgetState, budget_edge, budget_tools_condition, budgeted, guard

__all__ = ["ReactState", "lookup", "react_builder"]


@tool
def lookup(q: str) -> str:
    """Look something up."""
    return f"facts about {q}"


class ReactState(MessagesState, BudgetState):
    """The ReAct loop's messages plus the budget fields."""


def react_builder(model: Any, *, guarded_router: bool = True) -> StateGraph:
    """A ReAct loop calling ``lookup``, every node guarded, with a ``final`` answer node.

    ``guarded_router``: route with :func:`budget_tools_condition` and :func:`budget_edge`
    (a low budget goes to ``final``); otherwise with LangGraph's plain ``tools_condition``,
    which can end the run on a tool result.
    """
    llm, final_llm = budgeted(model), budgeted(model, final=True)

    @guard
    def agent(state: dict) -> dict:
        return {"messages": [llm.bind_tools([lookup]).invoke(state["messages"])]}

    @guard
    def final(state: dict) -> dict:
        return {"messages": [final_llm.invoke(state["messages"])]}

    b = StateGraph(ReactState)
    b.add_node("agent", agent)
    b.add_node("tools", guard(ToolNode([lookup])))
    b.add_node("final", final)
    b.add_edge(START, "agent")
    if guarded_router:
        b.add_conditional_edges("agent", budget_tools_condition(), ["tools", "final", END])
        b.add_conditional_edges("tools", budget_edge(ok="agent", low="final"), ["agent", "final"])
    else:
        b.add_conditional_edges("agent", tools_condition, ["tools", END])
        b.add_edge("tools", "agent")
    b.add_edge("final", END)
    return b
