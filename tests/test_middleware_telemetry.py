"""What observers (and so telemetry) see of a TokenBudgetMiddleware agent.

Its model calls are reported like any ``budgeted()`` call (``call_started`` /
``call_finished`` on the agent's meter); its own refusals are reported as
``budgeted()`` and ``with_budget`` report theirs (``budget.reservation_refused``,
``budget.exhausted``); beside a LangChain instrumentor our attributes go on its spans
and every call's tokens are counted once.
"""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from budget_graph import add_observer, remove_observer
from budget_graph.middleware import AgentMeter, TokenBudgetMiddleware
from budget_graph.telemetry import attributes as A
from tests.fixtures.fakes import ScriptedToolModel, turn
from tests.fixtures.otel import INSTRUMENTORS, langchain_instrumentor, spans_of_kind
from tests.reliability_helpers import PROMPTS, billed_requests, billed_tokens, openai_chat
from tests.test_telemetry_coexist import check_counted_once

CFG = {"configurable": {"thread_id": "t-obs"}}


class Recorder:
    """Keeps every call and event observers receive."""

    def __init__(self) -> None:
        self.started: list = []
        self.finished: list = []
        self.events: list[tuple[str, dict]] = []

    def call_started(self, call) -> None:
        self.started.append(call)

    def call_finished(self, call) -> None:
        self.finished.append(call)

    def event(self, name, attributes) -> None:
        self.events.append((name, dict(attributes)))

    def named(self, name):
        return [attrs for n, attrs in self.events if n == name]


@pytest.fixture
def recorder():
    rec = Recorder()
    add_observer(rec)
    yield rec
    remove_observer(rec)


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


async def _invoke(agent, payload, use_async):
    if use_async:
        return await agent.ainvoke(payload, CFG)
    return agent.invoke(payload, CFG)


@pytest.mark.integration
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_model_calls_are_reported_on_the_agents_meter(
    replay_server_clean, recorder, use_async
):
    llm = openai_chat(replay_server_clean, async_client=use_async)
    mw = TokenBudgetMiddleware(run_limit=2_000, count="total", scope="writer")
    agent = create_agent(llm, tools=[], middleware=[mw], checkpointer=InMemorySaver())
    await _invoke(agent, {"messages": [HumanMessage(PROMPTS[0])]}, use_async)
    assert billed_requests(replay_server_clean) == len(recorder.finished) == 1
    (call,) = recorder.finished
    assert recorder.started == [call]
    assert isinstance(call.meter, AgentMeter) and call.meter.scope == "writer"
    assert call.usage.input_tokens + call.usage.output_tokens == billed_tokens(replay_server_clean)
    assert call.limit == 2_000 and call.max_tokens is not None


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_refused_call_and_the_budget_ending_are_reported(recorder, use_async):
    # 130 tokens: three 40-token calls fit, the fourth could only get 10 (< 16).
    model = ScriptedToolModel(steps=[turn(("search", {"query": "q"}), output_tokens=40)] * 5)
    mw = TokenBudgetMiddleware(run_limit=130, scope="researcher")
    agent = create_agent(model, tools=[search], middleware=[mw], checkpointer=InMemorySaver())
    out = await _invoke(agent, {"messages": [HumanMessage("go")]}, use_async)
    assert out["messages"][-1].content.startswith("Token budget")
    assert len(recorder.finished) == len(model.calls) == 3  # every sent call, no other
    (refused,) = recorder.named("budget.reservation_refused")
    assert refused == {
        "model": None,  # the scripted model has no name
        "node": "model",
        "requested": 16,
        "remaining": 10,
        "limit": 130,
        "scope": "researcher",
    }
    (ended,) = recorder.named("budget.exhausted")
    assert ended == {
        "limit": 130,
        "spent": 120,
        "requested": 16,
        "scope": "researcher",
        "exit_behavior": "end",
        "stop_reason": "budget",
    }


def test_a_spent_limit_before_the_model_step_is_reported(recorder):
    mw = TokenBudgetMiddleware(run_limit=100, thread_limit=100)
    agent = create_agent(
        ScriptedToolModel(steps=[turn(output_tokens=100)] * 2),
        tools=[],
        middleware=[mw],
        checkpointer=InMemorySaver(),
    )
    agent.invoke({"messages": [HumanMessage("one")]}, CFG)
    agent.invoke({"messages": [HumanMessage("two")]}, CFG)  # the thread is spent
    (ended,) = recorder.named("budget.exhausted")
    assert (ended["scope"], ended["limit"], ended["spent"], ended["requested"]) == (
        "thread",
        100,
        100,
        None,
    )


def test_a_refused_tool_cost_is_reported(recorder):
    model = ScriptedToolModel(steps=[turn(("search", {"query": "q"}), output_tokens=20)])
    mw = TokenBudgetMiddleware(run_limit=100, tool_costs={"search": 90})
    agent = create_agent(model, tools=[search], middleware=[mw])
    agent.invoke({"messages": [HumanMessage("go")]})
    (refused,) = recorder.named("budget.reservation_refused")
    assert (refused["node"], refused["requested"], refused["limit"]) == ("search", 90, 100)


@pytest.fixture(params=INSTRUMENTORS)
def instrumentor(request, tracer_provider, meter_provider):
    with langchain_instrumentor(request.param, tracer_provider, meter_provider):
        yield request.param


@pytest.mark.integration
def test_beside_an_instrumentor_calls_enrich_its_spans_and_count_once(
    replay_server_clean, instrumentor, budget_tracer, span_exporter
):
    llm = openai_chat(replay_server_clean)
    mw = TokenBudgetMiddleware(run_limit=2_000, count="total", scope="writer")
    agent = create_agent(llm, tools=[], middleware=[mw], checkpointer=InMemorySaver())
    agent.invoke({"messages": [HumanMessage(PROMPTS[1])]}, CFG)
    spans = span_exporter.get_finished_spans()
    (call,) = spans_of_kind(spans, "llm")
    assert call.instrumentation_scope.name != "budget_graph"  # theirs, enriched
    assert call.attributes[A.BUDGET_SCOPE] == "writer"
    assert call.attributes[A.BUDGET_LIMIT] == 2_000
    assert not [s for s in spans if s.instrumentation_scope.name == "budget_graph"]

    class Billed:  # what the server billed, as the coexistence check reads a spend
        calls = billed_requests(replay_server_clean)
        input_tokens = replay_server_clean.usage()["prompt_tokens"]
        output_tokens = replay_server_clean.usage()["completion_tokens"]

    check_counted_once(spans, Billed)


def test_a_traced_agent_is_one_trace_with_its_budget_on_the_run_span(budget_tracer, span_exporter):
    from budget_graph.telemetry import traced

    model = ScriptedToolModel(steps=[turn(("search", {"query": "q"}), output_tokens=40)] * 5)
    mw = TokenBudgetMiddleware(run_limit=130, scope="researcher")
    agent = traced(create_agent(model, tools=[search], middleware=[mw]), "researcher run")
    agent.invoke({"messages": [HumanMessage("go")]})
    spans = span_exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1
    (run,) = spans_of_kind(spans, "run")
    assert len(spans_of_kind(spans, "llm")) == len(model.calls) == 3
    # Read off the agent's last step's meter, not its first one's (40 spent).
    assert (run.attributes[A.BUDGET_SPENT], run.attributes[A.BUDGET_REMAINING]) == (120, 10)
    assert run.attributes[A.BUDGET_SCOPE] == "researcher"
    assert run.attributes[A.BUDGET_STOP_REASON] == "budget"
    assert run.attributes[A.USAGE_OUTPUT_TOKENS] == model.billed_output == 120
    assert [e.name for e in run.events] == ["budget.reservation_refused", "budget.exhausted"]
