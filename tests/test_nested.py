"""Nested budgets (#25): every "Works for" combination, sync, async and streaming.

Each test puts a limit at two levels and checks that the provider never bills past the
tightest one, that each level's state records its own spend once, and that a child
stopped by its own limit does not end its parent.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from budget_graph import (
    Budget,
    BudgetExceededError,
    BudgetState,
    budget_edge,
    budget_tools_condition,
    budgeted,
    guard,
    with_budget,
)
from budget_graph.middleware import TokenBudgetMiddleware
from budget_graph.testing import BillingFakeChat, ScriptedToolModel, turn

TEXT = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
MODES = ["invoke", "ainvoke", "stream"]


class Steps(BudgetState):
    steps: Annotated[list[str], operator.add]


async def _run(app: Any, payload: Any, mode: str) -> dict:
    if mode == "invoke":
        return app.invoke(payload)
    if mode == "ainvoke":
        return await app.ainvoke(payload)
    last: dict = {}
    for chunk in app.stream(payload, stream_mode="values"):
        last = chunk
    return last


def _loop(llm: Any, name: str, n: int) -> Any:
    """A chain of ``n`` guarded steps, each one budgeted call."""
    b = StateGraph(Steps)
    prev = START
    for i in range(n):
        step = f"{name}{i}"

        def run(state: dict, _s: str = step) -> dict:
            llm.invoke(f"{_s}: {TEXT}", max_tokens=20)
            return {"steps": [_s]}

        b.add_node(step, guard(run, name=step))
        b.add_edge(prev, step)
        prev = step
    return b


def _parent(child: Any, llm: Any, *, inside_node: bool) -> Any:
    b = _loop(llm, "p", 1)
    if inside_node:

        def calls_child(state: dict) -> dict:
            out = child.invoke({"steps": []})
            return {"steps": out["steps"], "stop_reasons": out.get("stop_reasons", {})}

        b.add_node("child", guard(calls_child, name="child"))
    else:
        b.add_node("child", child)
    b.add_edge("p0", "child")
    b.add_node(
        "after",
        guard(lambda s: {"steps": [llm.invoke(TEXT, max_tokens=20).text[:5]]}, name="after"),
    )
    b.add_edge("child", "after")
    return b.compile()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inside_node", [False, True], ids=["as_node", "inside_node"])
async def test_a_child_stopped_by_its_own_limit_does_not_end_the_parent(inside_node, mode):
    fake = BillingFakeChat(texts=[TEXT])
    llm = budgeted(fake)
    child = with_budget(_loop(llm, "c", 5).compile(), Budget(max_tokens=90), name="child_graph")
    app = with_budget(_parent(child, llm, inside_node=inside_node), Budget(max_tokens=5_000))
    out = await _run(app, {"steps": []}, mode)
    child_calls = [s for s in out["steps"] if s.startswith("c")]
    assert 0 < len(child_calls) < 5  # the child's 90 tokens stopped it early
    assert out["stop_reasons"] == {"child_graph": "budget"}
    assert out.get("stop_reason") is None and out["steps"][-1] != "c"  # "after" still ran
    assert out["spend"].total_tokens == sum(fake.billed)  # the parent holds the total once
    assert out["spend"].calls == len(fake.billed) == len(child_calls) + 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inside_node", [False, True], ids=["as_node", "inside_node"])
async def test_the_tightest_enclosing_budget_wins(inside_node, mode):
    fake = BillingFakeChat(texts=[TEXT])
    llm = budgeted(fake)
    child = with_budget(_loop(llm, "c", 8).compile(), Budget(max_tokens=5_000), name="child")
    app = with_budget(_parent(child, llm, inside_node=inside_node), Budget(max_tokens=150))
    out = await _run(app, {"steps": []}, mode)
    assert sum(fake.billed) <= 150  # the parent's 150, not the child's 5,000
    assert out["stop_reason"] == "budget"
    assert out["spend"].total_tokens == sum(fake.billed)


def test_a_refusal_names_the_level_that_refused():
    llm = budgeted(BillingFakeChat(texts=[TEXT]))
    seen: list[BudgetExceededError] = []

    def node(state: dict) -> dict:
        try:
            llm.invoke(TEXT, max_tokens=20)
        except BudgetExceededError as exc:
            seen.append(exc)
        return {}

    b = StateGraph(Steps)
    b.add_node("n", node)
    b.add_edge(START, "n")
    inner = with_budget(b.compile(), Budget(max_tokens=1_000), name="researcher")
    outer = StateGraph(Steps)
    outer.add_node("inner", inner)
    outer.add_edge(START, "inner")
    with_budget(outer.compile(), Budget(max_tokens=12), name="request").invoke({"steps": []})
    (exc,) = seen
    assert exc.scope == "request" and exc.limit == 12
    assert "request budget of 12 tokens" in str(exc)


@tool
def lookup(q: str) -> str:
    """Look something up."""
    return f"facts about {q}"


def _agent(limit: int, scope: str, *, tool_costs: dict | None = None) -> tuple[Any, Any]:
    model = ScriptedToolModel(steps=[turn(("lookup", {"q": "x"}), output_tokens=30)] * 6)
    mw = TokenBudgetMiddleware(
        run_limit=limit, count="total", scope=scope, tool_costs=tool_costs or {}
    )
    return create_agent(model, [lookup], middleware=[mw]), model


def _with_agent(agent: Any, *, inside_node: bool) -> Any:
    class S(MessagesState, BudgetState):
        pass

    b = StateGraph(S)
    if inside_node:

        def ask(state: dict) -> dict:
            return {"messages": agent.invoke({"messages": state["messages"]})["messages"][-1:]}

        b.add_node("agent", guard(ask, name="agent"))
    else:
        b.add_node("agent", agent)
    b.add_edge(START, "agent")
    return b.compile()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("inside_node", [False, True], ids=["as_node", "inside_node"])
async def test_an_agent_with_its_own_limit_stays_inside_the_graph_budget(inside_node, mode):
    agent, model = _agent(limit=5_000, scope="researcher")
    app = with_budget(_with_agent(agent, inside_node=inside_node), Budget(max_tokens=600))
    out = await _run(app, {"messages": [HumanMessage("find x")]}, mode)
    assert 0 < model.billed_total <= 600  # the graph's 600, not the agent's 5,000
    assert out["spend"].total_tokens == model.billed_total


@pytest.mark.parametrize("inside_node", [False, True], ids=["as_node", "inside_node"])
def test_an_agent_stopped_by_its_own_limit_leaves_the_graph_running(inside_node):
    agent, model = _agent(limit=400, scope="researcher")
    app = with_budget(_with_agent(agent, inside_node=inside_node), Budget(max_tokens=50_000))
    out = app.invoke({"messages": [HumanMessage("find x")]})
    assert model.billed_total <= 400
    assert "researcher" in out["messages"][-1].content  # the agent's own budget message
    assert out.get("stop_reason") is None
    assert out["spend"].total_tokens == model.billed_total


def test_a_declared_tool_cost_is_held_on_every_level():
    agent, model = _agent(limit=50_000, scope="researcher", tool_costs={"lookup": 100})
    app = with_budget(_with_agent(agent, inside_node=True), Budget(max_tokens=500))
    app.invoke({"messages": [HumanMessage("find x")]})
    # Each lookup costs 100 on the agent's level and on the graph's: the graph's 500
    # holds model calls and tool costs together.
    assert app.last_meter.spent <= 500
    assert app.last_meter.spent - model.billed_total >= 100  # at least one tool was charged


@pytest.mark.parametrize("mode", MODES)
async def test_a_budgeted_model_inside_a_tool_counts_at_every_level(mode):
    summarizer = BillingFakeChat(texts=[TEXT])
    llm = budgeted(summarizer)

    @tool
    def summarize(q: str) -> str:
        """Summarize with an LLM."""
        return llm.invoke(f"summarize {q}: {TEXT}", max_tokens=20).text

    class S(MessagesState, BudgetState):
        pass

    model = ScriptedToolModel(steps=[turn(("summarize", {"q": "x"}), output_tokens=20)] * 8)
    agent_llm = budgeted(model)

    @guard
    def agent(state: dict) -> dict:
        return {"messages": [agent_llm.bind_tools([summarize]).invoke(state["messages"])]}

    b = StateGraph(S)
    b.add_node("agent", agent)
    b.add_node("tools", guard(ToolNode([summarize])))
    b.add_edge(START, "agent")
    b.add_conditional_edges("agent", budget_tools_condition(final=END), ["tools", END])
    b.add_conditional_edges("tools", budget_edge(ok="agent", low=END), ["agent", END])
    inner = with_budget(b.compile(), Budget(max_tokens=10_000), name="worker")
    outer = StateGraph(S)
    outer.add_node("worker", inner)
    outer.add_edge(START, "worker")
    app = with_budget(outer.compile(), Budget(max_tokens=700), name="request")
    out = await _run(app, {"messages": [HumanMessage("go")]}, mode)
    billed = model.billed_total + sum(summarizer.billed)
    assert len(summarizer.billed) > 0 and billed <= 700
    assert out["spend"].total_tokens == billed
