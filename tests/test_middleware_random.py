"""Randomized agents under TokenBudgetMiddleware never exceed a limit by a single token."""

import asyncio
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from budget_graph import budgeted
from budget_graph.middleware import TokenBudgetExceededError, TokenBudgetMiddleware
from tests.fixtures.fakes import ScriptedToolModel, turn

TOOL_NAMES = ("search", "calc", "summarize")
CALC_COST = 25


def _units(model: ScriptedToolModel, count: str, start: int = 0) -> int:
    calls = model.calls[start:]
    if count == "output":
        return sum(c["output"] for c in calls)
    return sum(c["input"] + c["output"] for c in calls)


def _build(plan: dict):
    """An agent with three tools (one calling its own LLM) scripted by ``plan``."""
    tool_llm = ScriptedToolModel(
        steps=[turn(output_tokens=n) for n in plan["tool_outputs"]],
        final_output_tokens=30,
        max_tokens=plan["tool_max_tokens"],
    )

    @tool
    def search(query: str) -> str:
        """Search the web."""
        return f"results for {query}"

    @tool
    def calc(expr: str) -> str:
        """Evaluate an expression."""
        return "42"

    @tool
    def summarize(url: str) -> str:
        """Summarize a page with an LLM."""
        return str(budgeted(tool_llm).invoke(f"summarize {url}").content)

    steps = [
        turn(
            *[
                (TOOL_NAMES[t], {"query" if t == 0 else "expr" if t == 1 else "url": f"x{i}"})
                for i, t in enumerate(calls)
            ],
            output_tokens=out,
        )
        for calls, out in plan["turns"]
    ]
    model = ScriptedToolModel(  # adversarial: calls tools even when none are bound
        steps=steps, final_output_tokens=plan["final_tokens"], calls_tools_unbound=True
    )
    mw = TokenBudgetMiddleware(
        run_limit=plan["run_limit"],
        thread_limit=plan["thread_limit"],
        count=plan["count"],
        exit_behavior=plan["behavior"],
        tool_costs={"calc": CALC_COST},
        min_output_tokens=plan["min_output"],
        warn_at=0.7,
    )
    agent = create_agent(
        model, tools=[search, calc, summarize], middleware=[mw], checkpointer=InMemorySaver()
    )
    return agent, model, tool_llm


def _calc_runs(messages) -> int:
    return sum(
        1
        for m in messages
        if isinstance(m, ToolMessage) and m.name == "calc" and m.status != "error"
    )


async def _run_plan(plan: dict, *, use_async: bool) -> None:
    agent, model, tool_llm = _build(plan)
    cfg = {"configurable": {"thread_id": "r"}}
    thread_units, calc_seen = 0, 0
    for run in range(2):
        m0, t0 = len(model.calls), len(tool_llm.calls)
        payload = {"messages": [HumanMessage(f"task {run}")]}
        try:
            out = await agent.ainvoke(payload, cfg) if use_async else agent.invoke(payload, cfg)
        except TokenBudgetExceededError:
            assert plan["behavior"] == "error"
            out = None
        messages = agent.get_state(cfg).values["messages"]
        calc_now = _calc_runs(messages)
        run_units = (
            _units(model, plan["count"], m0)
            + _units(tool_llm, plan["count"], t0)
            + CALC_COST * (calc_now - calc_seen)
        )
        calc_seen = calc_now
        thread_units += run_units
        assert run_units <= plan["run_limit"], (run, run_units, plan)
        if plan["thread_limit"] is not None:
            assert thread_units <= plan["thread_limit"], (run, thread_units, plan)
        values = agent.get_state(cfg).values
        assert values["thread_token_spend"] == thread_units  # exact accounting
        if out is not None:
            last = out["messages"][-1]
            assert isinstance(last, AIMessage) and last.tool_calls == []


plans = st.fixed_dictionaries(
    {
        "count": st.sampled_from(["output", "total"]),
        "behavior": st.sampled_from(["end", "finalize", "error"]),
        "run_limit": st.integers(60, 1500),
        "thread_limit": st.one_of(st.none(), st.integers(1000, 2500)),
        "min_output": st.sampled_from([1, 16]),
        "final_tokens": st.integers(1, 120),
        "tool_max_tokens": st.one_of(st.none(), st.integers(5, 80)),
        "tool_outputs": st.lists(st.integers(1, 150), max_size=12),
        "turns": st.lists(
            st.tuples(st.lists(st.integers(0, 2), max_size=4), st.integers(1, 250)),
            min_size=1,
            max_size=7,
        ),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans)
def test_random_agents_never_exceed_the_limits(plan):
    asyncio.run(_run_plan(plan, use_async=False))


@pytest.mark.parametrize("seed", range(6))
async def test_random_agents_async(seed):
    rng = random.Random(seed)
    plan = {
        "count": rng.choice(["output", "total"]),
        "behavior": rng.choice(["end", "finalize", "error"]),
        "run_limit": rng.randint(60, 1500),
        "thread_limit": rng.choice([None, rng.randint(1000, 2500)]),
        "min_output": rng.choice([1, 16]),
        "final_tokens": rng.randint(1, 120),
        "tool_max_tokens": rng.choice([None, rng.randint(5, 80)]),
        "tool_outputs": [rng.randint(1, 150) for _ in range(rng.randint(0, 12))],
        "turns": [
            ([rng.randint(0, 2) for _ in range(rng.randint(0, 4))], rng.randint(1, 250))
            for _ in range(rng.randint(1, 7))
        ],
    }
    await _run_plan(plan, use_async=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans.map(lambda p: {**p, "behavior": "finalize"}))
def test_finalize_always_ends_with_an_answer_without_tool_calls(plan):
    agent, model, _ = _build(plan)
    cfg = {"configurable": {"thread_id": "f"}}
    out = agent.invoke({"messages": [HumanMessage("go")]}, cfg)
    last = out["messages"][-1]
    assert isinstance(last, AIMessage) and last.tool_calls == [] and last.content
