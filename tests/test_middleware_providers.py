"""TokenBudgetMiddleware with real-world model setups (issue #20 items 5, 6 and 7)."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ModelFallbackMiddleware
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from budget_graph.middleware import TokenBudgetMiddleware
from budget_graph.testing import ExplodingChat, ScriptedToolModel, turn

CFG = {"configurable": {"thread_id": "t1"}}


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}: " + "lorem ipsum dolor sit amet " * 8


async def _invoke(agent, payload, use_async):
    if use_async:
        return await agent.ainvoke(payload, CFG)
    return agent.invoke(payload, CFG)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_finalize_reserve_pays_for_the_real_final_prompt_issue20_item6(use_async):
    # count="total": the final call pays its whole prompt (the question, every tool call
    # and result so far); the default reserve (a tenth of 1,500) could not pay it.
    question = "Please research this question thoroughly. " * 40
    mw = TokenBudgetMiddleware(run_limit=1_500, count="total", exit_behavior="finalize")
    model = ScriptedToolModel(steps=[turn(("search", {"query": "q"}), output_tokens=60)] * 30)
    agent = create_agent(model, tools=[search], middleware=[mw], checkpointer=InMemorySaver())
    out = await _invoke(agent, {"messages": [HumanMessage(question)]}, use_async)
    last = out["messages"][-1]
    assert isinstance(last, AIMessage) and last.content == "Final answer."
    assert model.calls[-1]["tools"] == [] and model.calls[-1]["input"] > 150
    assert model.billed_total <= 1_500
    assert agent.get_state(CFG).values["run_token_spend"] == model.billed_total


@pytest.mark.parametrize("first", ["budget", "fallback"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_fallback_model_is_capped_in_either_order_issue20_item7(first, use_async):
    fallback = ScriptedToolModel(steps=[turn(output_tokens=1_040, text="long answer")])
    budget = TokenBudgetMiddleware(run_limit=300, count="total")
    fallbacks = ModelFallbackMiddleware(fallback)
    middleware = [budget, fallbacks] if first == "budget" else [fallbacks, budget]
    agent = create_agent(
        ExplodingChat(), tools=[search], middleware=middleware, checkpointer=InMemorySaver()
    )
    await _invoke(agent, {"messages": [HumanMessage("go")]}, use_async)
    (call,) = fallback.calls
    assert call["max_tokens"] is not None and call["input"] + call["max_tokens"] <= 300
    assert fallback.billed_total <= 300
    assert agent.get_state(CFG).values["run_token_spend"] == fallback.billed_total
