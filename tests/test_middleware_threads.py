"""TokenBudgetMiddleware's thread_limit caps the whole thread, forks included.

A fork (a run from an earlier checkpoint of the thread: "edit and regenerate", time
travel) starts from the thread's total over every branch, read from the checkpointer,
so the forks of a thread cannot spend its limit more than once.
"""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from budget_graph import CHECKPOINT_TYPES
from budget_graph.middleware import TokenBudgetMiddleware
from tests.fixtures.fakes import ScriptedToolModel, turn

CFG = {"configurable": {"thread_id": "t-forks"}}
SERDE = JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)


@contextlib.asynccontextmanager
async def _saver(kind, tmp_path, use_async, request=None):
    if kind == "memory":
        yield InMemorySaver(serde=SERDE)
    elif kind == "postgres":
        conninfo = request.getfixturevalue("postgres_conninfo")
        if use_async:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

            async with AsyncPostgresSaver.from_conn_string(conninfo) as saver:
                await saver.setup()
                saver.serde = SERDE
                yield saver
        else:
            from langgraph.checkpoint.postgres import PostgresSaver

            with PostgresSaver.from_conn_string(conninfo) as saver:
                saver.setup()
                saver.serde = SERDE
                yield saver
    elif use_async:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "t.sqlite")) as saver:
            saver.serde = SERDE
            yield saver
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(tmp_path / "t.sqlite", check_same_thread=False)
        try:
            yield SqliteSaver(conn, serde=SERDE)
        finally:
            conn.close()


async def _invoke(agent, payload, config, use_async):
    if use_async:
        return await agent.ainvoke(payload, config)
    return agent.invoke(payload, config)


async def _first_checkpoint(agent, use_async):
    if use_async:
        history = [s async for s in agent.aget_state_history(CFG)]
    else:
        history = list(agent.get_state_history(CFG))
    return history[-1].config  # the thread's first checkpoint, before any spend


@pytest.mark.parametrize(
    "kind",
    [
        "memory",
        "sqlite",
        pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.integration]),
    ],
)
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_forks_from_an_earlier_checkpoint_share_the_thread_limit(
    kind, use_async, tmp_path, request
):
    model = ScriptedToolModel(steps=[turn(output_tokens=60)] * 4)
    mw = TokenBudgetMiddleware(thread_limit=130)
    async with _saver(kind, tmp_path, use_async, request) as saver:
        agent = create_agent(model, tools=[], middleware=[mw], checkpointer=saver)
        await _invoke(agent, {"messages": [HumanMessage("one")]}, CFG, use_async)
        first = await _first_checkpoint(agent, use_async)

        # Each fork starts from the first checkpoint, whose branch had spent nothing.
        await _invoke(agent, {"messages": [HumanMessage("fork")]}, first, use_async)
        assert model.calls[1]["max_tokens"] == 70  # clamped by the thread's 60 spent
        out = await _invoke(agent, {"messages": [HumanMessage("fork again")]}, first, use_async)
        assert out["messages"][-1].content == (
            "Token budget: the next model call would exceed the thread limit of 130 tokens "
            "(thread_spent=120, reserved=0, requested=16, remaining=10)"
        )
        assert model.billed_output == 120 <= 130 and len(model.calls) == 2
        state = await agent.aget_state(CFG) if use_async else agent.get_state(CFG)
        assert state.values["thread_token_spend"] == model.billed_output


class StartNote(AgentMiddleware):
    """Another middleware starting the run first (its own step and checkpoint)."""

    def before_agent(self, state, runtime):
        return None

    async def abefore_agent(self, state, runtime):
        return None


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_the_original_branch_counts_what_a_fork_spent(use_async):
    model = ScriptedToolModel(steps=[turn(output_tokens=50)] * 4)
    mw = TokenBudgetMiddleware(run_limit=100, thread_limit=140)
    agent = create_agent(
        model, tools=[], middleware=[StartNote(), mw], checkpointer=InMemorySaver()
    )
    await _invoke(agent, {"messages": [HumanMessage("one")]}, CFG, use_async)
    head = (await agent.aget_state(CFG) if use_async else agent.get_state(CFG)).config
    first = await _first_checkpoint(agent, use_async)
    await _invoke(agent, {"messages": [HumanMessage("fork")]}, first, use_async)
    # Back on the original branch (its head addressed by id): 40 of the thread's 140 left.
    await _invoke(agent, {"messages": [HumanMessage("two")]}, head, use_async)
    assert model.calls[-1]["max_tokens"] == 40
    assert model.billed_output <= 140
    values = (await agent.aget_state(CFG) if use_async else agent.get_state(CFG)).values
    assert values["thread_token_spend"] == model.billed_output
    assert values["run_token_spend"] == model.calls[-1]["output"]


def test_a_thread_without_forks_is_unchanged_and_runs_without_a_checkpointer():
    model = ScriptedToolModel(steps=[turn(output_tokens=30)] * 2)
    agent = create_agent(model, tools=[], middleware=[TokenBudgetMiddleware(thread_limit=100)])
    out = agent.invoke({"messages": [HumanMessage("one")]})
    assert out["messages"][-1].content == "Final answer."
    assert model.calls[0]["max_tokens"] == 100 and model.billed_output == 30


@pytest.mark.parametrize("how", ["replay", "update_state"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_fork_resumed_without_new_input_shares_the_thread_limit(how, use_async):
    # Time travel: invoke(None) from the checkpoint before the model step, or an edit
    # there with update_state: no new run starts (no before_agent), the model step does.
    model = ScriptedToolModel(steps=[turn(output_tokens=60)] * 4)
    mw = TokenBudgetMiddleware(thread_limit=130)
    agent = create_agent(model, tools=[], middleware=[mw], checkpointer=InMemorySaver())
    await _invoke(agent, {"messages": [HumanMessage("one")]}, CFG, use_async)
    if use_async:
        history = [s async for s in agent.aget_state_history(CFG)]
    else:
        history = list(agent.get_state_history(CFG))
    before_model = next(s for s in history if s.next == ("model",))
    for _ in range(2):
        target = before_model.config
        if how == "update_state":
            edit = {"messages": [HumanMessage("edited")]}
            if use_async:
                target = await agent.aupdate_state(target, edit)
            else:
                target = agent.update_state(target, edit)
        await _invoke(agent, None, target, use_async)
    assert [c["max_tokens"] for c in model.calls] == [130, 70]  # the third fork is refused
    assert model.billed_output == 120 <= 130
    state = await agent.aget_state(CFG) if use_async else agent.get_state(CFG)
    assert state.values["thread_token_spend"] == 120


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_replayed_tools_step_counts_the_thread_total(use_async):
    from langchain_core.tools import tool

    from budget_graph import budgeted

    tool_llm = ScriptedToolModel(steps=[], final_output_tokens=60)

    @tool
    def summarize(url: str) -> str:
        """Summarize a page with an LLM."""
        return str(budgeted(tool_llm).invoke(f"summarize {url}", max_tokens=60).content)

    model = ScriptedToolModel(
        steps=[turn(("summarize", {"url": "u"}), output_tokens=30)] + [turn(output_tokens=10)] * 3
    )
    mw = TokenBudgetMiddleware(thread_limit=150)
    agent = create_agent(model, tools=[summarize], middleware=[mw], checkpointer=InMemorySaver())
    await _invoke(agent, {"messages": [HumanMessage("go")]}, CFG, use_async)
    assert model.billed_output + tool_llm.billed_output == 100
    if use_async:
        history = [s async for s in agent.aget_state_history(CFG)]
    else:
        history = list(agent.get_state_history(CFG))
    before_tools = next(s for s in history if s.next == ("tools",))
    await _invoke(agent, None, before_tools.config, use_async)  # the tools step again
    # The branch had spent 30; the thread 100: the tool's LLM got the 50 left, not 60.
    assert [c["max_tokens"] for c in tool_llm.calls] == [60, 50]
    assert model.billed_output + tool_llm.billed_output == 150
    state = await agent.aget_state(CFG) if use_async else agent.get_state(CFG)
    assert state.values["thread_token_spend"] == 150
