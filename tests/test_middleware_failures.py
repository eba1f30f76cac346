"""TokenBudgetMiddleware keeps what was billed when a tool or a model step then fails.

LangGraph drops the writes of a task that raised; the calls it made were billed, so
their spend must still reach the agent's ``run_token_spend``/``thread_token_spend``
(through the checkpoint) and count against the next run's thread limit.
"""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from budget_graph import budgeted
from budget_graph.middleware import TokenBudgetMiddleware
from tests.fixtures.fakes import ScriptedToolModel, turn
from tests.reliability_helpers import PROMPTS, billed_tokens, openai_chat

CFG = {"configurable": {"thread_id": "t-fail"}}


class ToolBroke(RuntimeError):
    """What the failing tools raise (after their LLM call was billed)."""


def _failing_tools(llm):
    @tool
    def summarize(url: str) -> str:
        """Summarize a page with an LLM, then fail."""
        budgeted(llm).invoke(PROMPTS[0], max_tokens=40)
        raise ToolBroke(f"could not parse {url}")

    @tool
    async def asummarize(url: str) -> str:
        """Async twin of summarize."""
        await budgeted(llm).ainvoke(PROMPTS[0], max_tokens=40)
        raise ToolBroke(f"could not parse {url}")

    return summarize, asummarize


async def _invoke(agent, payload, use_async):
    if use_async:
        return await agent.ainvoke(payload, CFG)
    return agent.invoke(payload, CFG)


@pytest.mark.integration
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_tool_that_raises_after_a_billed_llm_call_keeps_its_spend(
    replay_server_clean, use_async
):
    llm = openai_chat(replay_server_clean, async_client=use_async)
    summarize, asummarize = _failing_tools(llm)
    tool_ = asummarize if use_async else summarize
    model = ScriptedToolModel(
        steps=[turn((tool_.name, {"url": "u"}), output_tokens=30)], final_output_tokens=10
    )
    mw = TokenBudgetMiddleware(run_limit=5_000, thread_limit=10_000, count="total")
    agent = create_agent(model, tools=[tool_], middleware=[mw], checkpointer=InMemorySaver())

    with pytest.raises(ToolBroke):
        await _invoke(agent, {"messages": [HumanMessage("go")]}, use_async)
    billed = model.billed_total + billed_tokens(replay_server_clean)
    assert billed_tokens(replay_server_clean) > 0
    values = agent.get_state(CFG).values
    assert values["run_token_spend"] == values["thread_token_spend"] == billed

    # The next run starts from a thread that counts it (and resets only the run).
    await _invoke(agent, {"messages": [HumanMessage("again")]}, use_async)
    values = agent.get_state(CFG).values
    assert values["thread_token_spend"] == model.billed_total + billed_tokens(replay_server_clean)
    assert values["thread_token_spend"] - values["run_token_spend"] == billed


class FailAfterModel(AgentMiddleware):
    """Calls the model (billed) and then fails, like a response check inside the budget."""

    def wrap_model_call(self, request, handler):
        handler(request)
        raise ToolBroke("response rejected")

    async def awrap_model_call(self, request, handler):
        await handler(request)
        raise ToolBroke("response rejected")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_model_step_that_fails_after_a_billed_call_keeps_its_spend(use_async):
    model = ScriptedToolModel(steps=[turn(output_tokens=30)] * 2)
    mw = TokenBudgetMiddleware(run_limit=500, thread_limit=1_000)
    agent = create_agent(
        model, tools=[], middleware=[mw, FailAfterModel()], checkpointer=InMemorySaver()
    )
    with pytest.raises(ToolBroke):
        await _invoke(agent, {"messages": [HumanMessage("go")]}, use_async)
    assert model.billed_output == 30
    values = agent.get_state(CFG).values
    assert values["run_token_spend"] == values["thread_token_spend"] == 30


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_failed_tools_spend_counts_against_the_thread_limit(use_async):
    tool_llm = ScriptedToolModel(steps=[], final_output_tokens=50)
    summarize, asummarize = _failing_tools(tool_llm)
    tool_ = asummarize if use_async else summarize
    model = ScriptedToolModel(
        steps=[turn((tool_.name, {"url": "u"}), output_tokens=30)] + [turn(output_tokens=40)] * 3
    )
    mw = TokenBudgetMiddleware(thread_limit=100)
    agent = create_agent(model, tools=[tool_], middleware=[mw], checkpointer=InMemorySaver())
    with pytest.raises(ToolBroke):
        await _invoke(agent, {"messages": [HumanMessage("go")]}, use_async)
    assert agent.get_state(CFG).values["thread_token_spend"] == 30 + 40  # model + tool's LLM
    await _invoke(agent, {"messages": [HumanMessage("again")]}, use_async)
    # 30 left of the thread's 100: the next call was clamped to them, not to 70
    assert model.calls[-1]["max_tokens"] == 30
    assert model.billed_output + tool_llm.billed_output <= 100


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_sibling_that_finished_beside_a_failed_tool_is_counted_by_the_next_run(
    use_async,
):
    # LangGraph keeps the finished sibling's writes pending on the failed step's
    # checkpoint and drops them when the thread goes on with new input.
    tool_llm = ScriptedToolModel(steps=[], final_output_tokens=20)
    summarize, asummarize = _failing_tools(tool_llm)
    failing = asummarize if use_async else summarize

    @tool
    def lookup(query: str) -> str:
        """Look something up with an LLM."""
        return str(budgeted(tool_llm).invoke(query, max_tokens=20).content)

    model = ScriptedToolModel(
        steps=[turn(("lookup", {"query": "q"}), (failing.name, {"url": "u"}), output_tokens=30)]
        + [turn(output_tokens=5)] * 2
    )
    mw = TokenBudgetMiddleware(thread_limit=1_000)
    agent = create_agent(
        model, tools=[lookup, failing], middleware=[mw], checkpointer=InMemorySaver()
    )
    with pytest.raises(ToolBroke):
        await _invoke(agent, {"messages": [HumanMessage("go")]}, use_async)
    await _invoke(agent, {"messages": [HumanMessage("again")]}, use_async)
    billed = model.billed_output + tool_llm.billed_output
    assert billed == 30 + 20 + 20 + 5
    assert agent.get_state(CFG).values["thread_token_spend"] == billed
