"""Nested budgets (#25) across an interrupt: a resumed child's limit counts its whole run.

A child (a ``with_budget`` subgraph, or a ``TokenBudgetMiddleware`` agent) nested in a
checkpointed budgeted graph spends ``s`` of its limit ``L``, pauses in ``interrupt()``,
and is resumed with ``Command(resume=...)``: after the resume it may spend at most
``L - s`` (billed on the model side), and every level's state records each token once.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import Command, interrupt

from budget_graph import CHECKPOINT_TYPES, Budget, BudgetState, budgeted, guard, with_budget
from budget_graph.middleware import TokenBudgetMiddleware
from budget_graph.testing import BillingFakeChat, ScriptedToolModel, turn

TEXT = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
CFG = {"configurable": {"thread_id": "t"}}
SERDE = JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)


class Steps(BudgetState):
    steps: Annotated[list[str], operator.add]


class S(MessagesState, BudgetState):
    pass


async def _run(app: Any, payload: Any, use_async: bool) -> dict:
    return await app.ainvoke(payload, CFG) if use_async else app.invoke(payload, CFG)


def _step(llm: Any, name: str) -> Any:
    def run(state: dict) -> dict:
        llm.invoke(f"{name}: {TEXT}", max_tokens=20)
        return {"steps": [name]}

    return guard(run, name=name)


def _child_graph(llm: Any, limit: int) -> Any:
    """c0, then ``ask`` (a call, then ``interrupt()``), then nine more steps."""

    def ask(state: dict) -> dict:
        llm.invoke(f"ask: {TEXT}", max_tokens=20)  # billed before the pause, and again after
        return {"steps": [f"ask:{interrupt('go on?')}"]}

    b = StateGraph(Steps)
    b.add_node("c0", _step(llm, "c0"))
    b.add_node("ask", guard(ask, name="ask"))
    b.add_edge(START, "c0")
    b.add_edge("c0", "ask")
    prev = "ask"
    for i in range(1, 10):
        b.add_node(f"c{i}", _step(llm, f"c{i}"))
        b.add_edge(prev, f"c{i}")
        prev = f"c{i}"
    return with_budget(b.compile(), Budget(max_tokens=limit), name="child")


def _parent(child: Any, llm: Any, *, inside_node: bool) -> Any:
    b = StateGraph(Steps)
    b.add_node("p0", _step(llm, "p0"))
    if inside_node:

        def calls(state: dict) -> dict:
            out = child.invoke({"steps": []})
            return {"steps": out["steps"], "stop_reasons": out.get("stop_reasons", {})}

        async def acalls(state: dict) -> dict:
            out = await child.ainvoke({"steps": []})
            return {"steps": out["steps"], "stop_reasons": out.get("stop_reasons", {})}

        b.add_node("child", guard(RunnableLambda(calls, afunc=acalls), name="child"))
    else:
        b.add_node("child", child)
    b.add_node("after", _step(llm, "after"))
    b.add_edge(START, "p0")
    b.add_edge("p0", "child")
    b.add_edge("child", "after")
    graph = b.compile(checkpointer=InMemorySaver(serde=SERDE))
    return with_budget(graph, Budget(max_tokens=50_000), name="request")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("inside_node", [False, True], ids=["as_node", "inside_node"])
async def test_a_resumed_subgraph_counts_what_it_spent_before_the_interrupt(inside_node, use_async):
    limit = 150
    child_fake, parent_fake = BillingFakeChat(texts=[TEXT]), BillingFakeChat(texts=[TEXT])
    child = _child_graph(budgeted(child_fake), limit)
    app = _parent(child, budgeted(parent_fake), inside_node=inside_node)

    out = await _run(app, {"steps": []}, use_async)
    assert "__interrupt__" in out
    before = sum(child_fake.billed)  # c0 and ask's call
    assert len(child_fake.billed) == 2 and before < limit

    out = await _run(app, Command(resume="yes"), use_async)
    after = sum(child_fake.billed) - before
    assert after > 0  # ask ran again, and the chain went on ...
    assert after <= limit - before  # ... only as far as the rest of the child's limit
    assert out["stop_reasons"] == {"child": "budget"}
    assert out.get("stop_reason") is None and "after" in out["steps"]
    billed = sum(child_fake.billed) + sum(parent_fake.billed)
    assert out["spend"].total_tokens == billed  # the parent records each token once


def _agent(model: Any, summarizer: Any, limit: int) -> Any:
    llm = budgeted(summarizer)

    @tool
    def ask_human(q: str) -> str:
        """Draft a question with an LLM, then ask a human."""
        llm.invoke(f"draft {q}: {TEXT}", max_tokens=20)  # billed before the pause
        return str(interrupt(q))

    @tool
    def lookup(q: str) -> str:
        """Look something up."""
        return f"facts about {q}"

    mw = TokenBudgetMiddleware(run_limit=limit, count="total", scope="writer")
    return create_agent(model, [lookup, ask_human], middleware=[mw])


def _with_agent(agent: Any, *, inside_node: bool) -> Any:
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
    graph = b.compile(checkpointer=InMemorySaver(serde=SERDE))
    return with_budget(graph, Budget(max_tokens=50_000), name="request")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("inside_node", [False, True], ids=["as_node", "inside_node"])
async def test_a_resumed_agent_counts_what_its_paused_tool_spent(inside_node, use_async):
    # 640 leaves room after the resume for one more model call only if the paused
    # tool's first LLM call were forgotten.
    limit = 640
    script = [turn(("lookup", {"q": "x"}), output_tokens=30)] * 10
    model = ScriptedToolModel(
        steps=[script[0], turn(("ask_human", {"q": "ok?"}), output_tokens=30), *script]
    )
    summarizer = BillingFakeChat(texts=[TEXT])
    app = _with_agent(_agent(model, summarizer, limit), inside_node=inside_node)

    out = await _run(app, {"messages": [HumanMessage("go")]}, use_async)
    assert "__interrupt__" in out
    before = model.billed_total + sum(summarizer.billed)
    assert len(summarizer.billed) == 1 and before < limit

    out = await _run(app, Command(resume="yes"), use_async)
    after = model.billed_total + sum(summarizer.billed) - before
    assert len(summarizer.billed) == 2  # the tool ran again on resume
    assert after <= limit - before
    assert "writer limit of 640 tokens" in out["messages"][-1].content
    assert out["spend"].total_tokens == before + after
