"""Nested budgets (#25): a budgeted model inside a tool of a middleware agent nested in a graph.

The agent's own limit (``TokenBudgetMiddleware(run_limit=..., scope=...)``) is the
innermost level for a budgeted model its tools call, even when the agent runs inside a
``with_budget`` graph whose meter is in the run config: every level holds each call.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph

from budget_graph import (
    Budget,
    BudgetState,
    Meter,
    budgeted,
    current_meter,
    guard,
    use_meter,
    with_budget,
)
from budget_graph.context import budget_config
from budget_graph.middleware import TokenBudgetMiddleware
from budget_graph.testing import BillingFakeChat, ScriptedToolModel, turn

TEXT = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron"


class S(MessagesState, BudgetState):
    pass


def _tools(llm: Any, *, use_async: bool) -> list[Any]:
    if use_async:

        @tool
        async def summarize(q: str) -> str:
            """Summarize with an LLM."""
            # Several calls in one tool run: the agent's limit must stop them midway.
            return " ".join(
                [(await llm.ainvoke(f"{i} {q}: {TEXT}", max_tokens=40)).text for i in range(10)]
            )

    else:

        @tool
        def summarize(q: str) -> str:
            """Summarize with an LLM."""
            return " ".join(llm.invoke(f"{i} {q}: {TEXT}", max_tokens=40).text for i in range(10))

    return [summarize]


def _app(agent: Any, *, inside_node: bool, limit: int) -> Any:
    b = StateGraph(S)
    if inside_node:

        def ask(state: dict) -> dict:
            return {"messages": agent.invoke({"messages": state["messages"]})["messages"][-1:]}

        async def aask(state: dict) -> dict:
            out = await agent.ainvoke({"messages": state["messages"]})
            return {"messages": out["messages"][-1:]}

        b.add_node("agent", guard(RunnableLambda(ask, afunc=aask), name="agent"))
    else:
        b.add_node("agent", agent)
    b.add_edge(START, "agent")
    return with_budget(b.compile(), Budget(max_tokens=limit), name="request")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("inside_node", [False, True], ids=["as_node", "inside_node"])
async def test_a_tool_llm_is_held_by_the_agents_own_limit(inside_node, use_async):
    summarizer = BillingFakeChat(texts=[TEXT * 3])
    model = ScriptedToolModel(steps=[turn(("summarize", {"q": "x"}), output_tokens=10)] * 12)
    mw = TokenBudgetMiddleware(run_limit=500, count="total", scope="writer")
    agent = create_agent(model, _tools(budgeted(summarizer), use_async=use_async), middleware=[mw])
    app = _app(agent, inside_node=inside_node, limit=50_000)
    payload = {"messages": [HumanMessage("write")]}
    out = await app.ainvoke(payload) if use_async else app.invoke(payload)
    tool_billed = sum(summarizer.billed)
    assert len(summarizer.billed) >= 2  # the tool's LLM ran more than once
    # The writer's 500 holds its model calls and its tools' LLM calls together; the
    # request's 50,000 alone would have let the script run all 12 turns.
    assert model.billed_total + tool_billed <= 500
    assert out["spend"].total_tokens == model.billed_total + tool_billed
    assert out.get("stop_reason") is None  # the request still had room


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_the_enclosing_cap_still_holds_a_tool_llm(use_async):
    summarizer = BillingFakeChat(texts=[TEXT * 3])
    model = ScriptedToolModel(steps=[turn(("summarize", {"q": "x"}), output_tokens=10)] * 12)
    mw = TokenBudgetMiddleware(run_limit=50_000, count="total", scope="writer")
    agent = create_agent(model, _tools(budgeted(summarizer), use_async=use_async), middleware=[mw])
    app = _app(agent, inside_node=True, limit=450)
    payload = {"messages": [HumanMessage("write")]}
    out = await app.ainvoke(payload) if use_async else app.invoke(payload)
    billed = model.billed_total + sum(summarizer.billed)
    assert 0 < billed <= 450
    assert out["spend"].total_tokens == billed


def test_current_meter_is_the_innermost_of_the_config_and_context():
    outer = Meter(Budget(max_tokens=100), scope="request")
    inner = Meter(Budget(max_tokens=40), scope="writer", parent=outer)
    other = Meter(Budget(max_tokens=10), scope="elsewhere")
    with use_meter(inner):
        assert current_meter(budget_config(outer)) is inner  # a child of the config's
        assert current_meter(budget_config(other)) is other  # unrelated: the config's
    with use_meter(outer):
        assert current_meter(budget_config(inner)) is inner  # the config's is innermost


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_an_agent_inside_another_agents_tool_is_held_by_both_limits(use_async):
    helper_model = ScriptedToolModel(steps=[turn(("lookup", {"q": "x"}), output_tokens=30)] * 20)

    @tool
    def lookup(q: str) -> str:
        """Look something up."""
        return f"facts about {q}"

    helper = create_agent(
        helper_model,
        [lookup],
        middleware=[TokenBudgetMiddleware(run_limit=5_000, count="total", scope="helper")],
    )

    @tool
    async def delegate(q: str) -> str:
        """Ask the helper agent."""
        out = await helper.ainvoke({"messages": [HumanMessage(q)]})
        return str(out["messages"][-1].content)

    @tool
    def delegate_sync(q: str) -> str:
        """Ask the helper agent."""
        return str(helper.invoke({"messages": [HumanMessage(q)]})["messages"][-1].content)

    name = "delegate" if use_async else "delegate_sync"
    model = ScriptedToolModel(steps=[turn((name, {"q": "x"}), output_tokens=10)] * 3)
    mw = TokenBudgetMiddleware(run_limit=400, count="total", scope="lead")
    lead = create_agent(model, [delegate if use_async else delegate_sync], middleware=[mw])
    app = _app(lead, inside_node=False, limit=50_000)
    payload = {"messages": [HumanMessage("go")]}
    out = await app.ainvoke(payload) if use_async else app.invoke(payload)
    billed = model.billed_total + helper_model.billed_total
    assert helper_model.billed_total > 0
    assert billed <= 400  # the lead's 400 holds its helper's calls, not only the helper's 5,000
    assert out["spend"].total_tokens == billed
