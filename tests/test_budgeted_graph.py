"""``with_budget`` as a Runnable: every entry point keeps the cap and makes exactly one run.

Regression tests for issue #19's observations 1, 2, 4, 6, 7 and 10 (the others live in
tests/test_reliability_bad_input.py and tests/conformance/).
"""

from __future__ import annotations

import operator
import sqlite3
import uuid
from typing import Annotated, Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, Send, interrupt

from budget_graph import (
    Budget,
    BudgetState,
    budget_edge,
    budgeted,
    guard,
    with_budget,
)
from budget_graph._internal import observe
from budget_graph.testing import BillingFakeChat, ScriptedToolModel, turn
from tests.conformance.graphs import lookup, react_builder

TEXT = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"


class Runs:
    """Counts the runs ``with_budget`` reports (what telemetry turns into run spans)."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.finished: list[Any] = []

    def run_started(self, run: Any) -> None:
        self.started.append(run)

    def run_finished(self, run: Any) -> None:
        self.finished.append(run)


@pytest.fixture
def runs():
    obs = Runs()
    observe.add_observer(obs)
    yield obs
    observe.remove_observer(obs)


class FanState(BudgetState):
    outs: Annotated[list[str], operator.add]


def fan(fake: Any, branches: int = 6, per_call: int = 12) -> Any:
    llm = budgeted(fake)

    @guard
    def work(state: dict) -> dict:
        return {"outs": [llm.invoke(f"task {state['i']}", max_tokens=per_call).text]}

    b = StateGraph(FanState)
    b.add_node("work", work)
    b.add_conditional_edges(
        START, lambda s: [Send("work", {"i": i}) for i in range(branches)], ["work"]
    )
    b.add_edge("work", END)
    return b


def _check(out: dict, fake: BillingFakeChat, limit: int) -> None:
    assert sum(fake.billed) <= limit
    assert out["spend"].total_tokens == sum(fake.billed)
    assert out["spend"].calls == len(fake.billed)


ENTRY_POINTS = ["invoke", "stream", "batch", "with_config", "pipe", "as_node", "astream_events"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_keeps_the_cap_and_makes_one_run(entry, runs):
    fake = BillingFakeChat(texts=[TEXT])
    limit = 120
    app = with_budget(fan(fake).compile(), Budget(max_tokens=limit))
    if entry == "invoke":
        out = app.invoke({"outs": []})
    elif entry == "stream":
        out = list(app.stream({"outs": []}, stream_mode="values"))[-1]
    elif entry == "batch":
        out = app.batch([{"outs": []}])[0]
    elif entry == "with_config":
        out = app.with_config(tags=["x"]).invoke({"outs": []})
    elif entry == "pipe":
        out = (RunnableLambda(lambda x: x) | app).invoke({"outs": []})
    elif entry == "as_node":
        parent = StateGraph(FanState)
        parent.add_node("inner", app)
        parent.add_edge(START, "inner")
        out = parent.compile().invoke({"outs": []})
    else:
        import asyncio

        async def events() -> dict:
            last: dict = {}
            async for ev in app.astream_events({"outs": []}, version="v2"):
                if ev["event"] == "on_chain_end" and not ev["parent_ids"]:
                    last = ev["data"]["output"]
            return last

        out = asyncio.run(events())
    _check(out, fake, limit)
    assert out["stop_reason"] == "budget"  # 6 calls of ~20 tokens do not fit 120
    assert len(runs.started) == len(runs.finished) == 1


async def test_async_entry_points_keep_the_cap(runs):
    fake = BillingFakeChat(texts=[TEXT])
    app = with_budget(fan(fake).compile(), Budget(max_tokens=120))
    outs = await app.abatch([{"outs": []}, {"outs": []}])
    assert all(o["stop_reason"] == "budget" for o in outs)
    assert sum(o["spend"].total_tokens for o in outs) == sum(fake.billed)
    assert all(o["spend"].units <= 120 for o in outs)
    assert len(runs.started) == len(runs.finished) == 2


def test_an_abandoned_stream_is_one_finished_run(runs):
    fake = BillingFakeChat(texts=[TEXT])
    app = with_budget(fan(fake, branches=2).compile(), Budget(max_tokens=10_000))
    b = StateGraph(FanState)
    stream = app.stream({"outs": []}, stream_mode="updates")
    next(stream)
    stream.close()
    assert len(runs.started) == len(runs.finished) == 1
    assert runs.finished[0].error is None
    del b


async def test_async_sqlite_checkpointer_in_async_entry_points(tmp_path):
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    fake = BillingFakeChat(texts=[TEXT])
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "a.sqlite")) as saver:
        app = with_budget(fan(fake).compile(checkpointer=saver), Budget(max_tokens=120))
        cfg = {"configurable": {"thread_id": "t"}}
        out = await app.ainvoke({"outs": []}, cfg)
        _check(out, fake, 120)
        chunks = [c async for c in app.astream({"outs": []}, cfg, stream_mode="values")]
        assert chunks[-1]["spend"].total_tokens == sum(fake.billed)
        assert (await app.aget_state(cfg)).values["spend"] == chunks[-1]["spend"]


class SubState(BudgetState):
    steps: Annotated[list[str], operator.add]


def sub_graph(llm: Any, name: str = "sub") -> Any:
    @guard(name=name)
    def step(state: dict) -> dict:
        llm.invoke(f"{name} step", max_tokens=10)
        return {"steps": [name]}

    b = StateGraph(SubState)
    b.add_node(name, step)
    b.add_edge(START, name)
    return b.compile()


def test_subgraph_spend_counts_once_as_a_node_and_inside_a_node():
    fake = BillingFakeChat(texts=[TEXT])
    llm = budgeted(fake)
    inner = with_budget(sub_graph(llm), Budget(max_tokens=1_000), name="inner")

    @guard
    def calls_inner(state: dict) -> dict:
        out = inner.invoke({"steps": []})
        return {"steps": out["steps"]}

    @guard
    def own(state: dict) -> dict:
        llm.invoke("parent step", max_tokens=10)
        return {"steps": ["own"]}

    b = StateGraph(SubState)
    b.add_node("own", own)
    b.add_node("as_node", inner)
    b.add_node("in_node", calls_inner)
    b.add_edge(START, "own")
    b.add_edge("own", "as_node")
    b.add_edge("as_node", "in_node")
    app = with_budget(b.compile(checkpointer=InMemorySaver()), Budget(max_tokens=5_000))
    cfg = {"configurable": {"thread_id": "s"}}
    out = app.invoke({"steps": []}, cfg)
    assert out["spend"].calls == len(fake.billed) == 3
    assert out["spend"].total_tokens == sum(fake.billed)
    assert app.get_state(cfg).values["spend"] == out["spend"]


class AskState(BudgetState):
    answer: str


def interrupted(llm: Any, saver: Any) -> Any:
    @guard
    def ask(state: dict) -> dict:
        draft = llm.invoke("draft an answer", max_tokens=12).text
        ok = interrupt({"draft": draft})  # the call above is billed, then the node pauses
        return {"answer": draft if ok else "rejected"}

    b = StateGraph(AskState)
    b.add_node("ask", ask)
    b.add_edge(START, "ask")
    return b.compile(checkpointer=saver)


def test_spend_before_an_interrupt_reaches_the_checkpoint(tmp_path):
    fake = BillingFakeChat(texts=[TEXT])
    path = tmp_path / "i.sqlite"
    cfg = {"configurable": {"thread_id": "i"}}
    first = with_budget(
        interrupted(budgeted(fake), SqliteSaver(sqlite3.connect(path, check_same_thread=False))),
        Budget(max_tokens=1_000),
    )
    first.invoke({}, cfg)
    assert first.get_state(cfg).values["spend"].total_tokens == sum(fake.billed)
    # A fresh connection and wrapper: nothing of the first run's process memory.
    second = with_budget(
        interrupted(budgeted(fake), SqliteSaver(sqlite3.connect(path, check_same_thread=False))),
        Budget(max_tokens=1_000),
    )
    out = second.invoke(Command(resume=True), cfg)
    assert out["spend"].calls == len(fake.billed) == 2  # the resumed node calls again
    assert out["spend"].total_tokens == sum(fake.billed)


def test_a_failed_node_spend_reaches_the_checkpoint_once(tmp_path):
    fake = BillingFakeChat(texts=[TEXT])
    llm = budgeted(fake)
    fail = {"n": 2}

    @guard
    def flaky(state: dict) -> dict:
        llm.invoke("try", max_tokens=10)
        if fail["n"]:
            fail["n"] -= 1
            raise RuntimeError("tool crashed")
        return {"steps": ["ok"]}

    b = StateGraph(SubState)
    b.add_node("flaky", flaky)
    b.add_edge(START, "flaky")
    conn = sqlite3.connect(tmp_path / "f.sqlite", check_same_thread=False)
    app = with_budget(b.compile(checkpointer=SqliteSaver(conn)), Budget(max_tokens=1_000))
    cfg = {"configurable": {"thread_id": "f"}}
    for attempt in ({"steps": []}, None):
        with pytest.raises(RuntimeError):
            app.invoke(attempt, cfg)
    assert app.get_state(cfg).values["spend"].calls == 2
    out = app.invoke(None, cfg)
    assert out["spend"].calls == len(fake.billed) == 3
    assert out["spend"].total_tokens == sum(fake.billed)


def test_a_thread_limit_counts_forks_from_earlier_checkpoints():
    fake = BillingFakeChat(texts=[TEXT])
    llm = budgeted(fake)

    @guard
    def reply(state: dict) -> dict:
        llm.invoke("reply", max_tokens=12)
        return {"steps": ["reply"]}

    b = StateGraph(SubState)
    b.add_node("reply", reply)
    b.add_edge(START, "reply")
    limit = 100
    app = with_budget(
        b.compile(checkpointer=InMemorySaver()), Budget(max_tokens=limit), scope="thread"
    )
    cfg = {"configurable": {"thread_id": "fork"}}
    first = app.invoke({"steps": []}, cfg)
    origin = list(app.get_state_history(cfg))[-1].config  # before the first reply
    outs = [app.invoke({"steps": []}, origin) for _ in range(6)]  # "regenerate" six times
    assert sum(fake.billed) <= limit
    assert any(o["stop_reason"] == "budget" for o in outs)
    assert first["spend"].units + sum(o["spend"].units for o in outs) == sum(fake.billed)


def test_guard_on_a_tool_node_and_a_budget_router_keep_the_final_answer():
    model = ScriptedToolModel(steps=[turn(("lookup", {"q": "x"}), output_tokens=30)] * 9)
    budget = Budget(max_tokens=700, reserve=150)
    out = with_budget(react_builder(model).compile(), budget).invoke(
        {"messages": [HumanMessage("find x")]}
    )
    last = out["messages"][-1]
    assert isinstance(last, AIMessage) and not last.tool_calls and last.content
    assert out["stop_reason"] == "budget"
    assert model.billed_total <= 700 and out["spend"].total_tokens == model.billed_total


def test_tools_condition_alone_ends_on_a_tool_result():
    # What the budget router fixes: with tools_condition the run ends on a ToolMessage.
    model = ScriptedToolModel(steps=[turn(("lookup", {"q": "x"}), output_tokens=30)] * 9)
    app = with_budget(react_builder(model, guarded_router=False).compile(), Budget(max_tokens=700))
    out = app.invoke({"messages": [HumanMessage("find x")]})
    assert out["messages"][-1].type == "tool"
    assert out["stop_reason"] == "budget"


@pytest.mark.parametrize("builder", ["create_react_agent", "create_agent"])
def test_prebuilt_agents_end_with_a_message_and_a_stop_reason(builder):
    model = ScriptedToolModel(steps=[turn(("lookup", {"q": "x"}), output_tokens=40)] * 20)
    if builder == "create_react_agent":
        from langgraph.prebuilt import create_react_agent

        agent = create_react_agent(budgeted(model), [lookup], checkpointer=InMemorySaver())
    else:
        from langchain.agents import create_agent

        agent = create_agent(budgeted(model), [lookup], checkpointer=InMemorySaver())
    app = with_budget(agent, Budget(max_tokens=600))
    cfg = {"configurable": {"thread_id": "p"}}
    out = app.invoke({"messages": [HumanMessage("find x")]}, cfg)
    assert out["stop_reason"] == "budget"
    assert "budget" in out["messages"][-1].content
    assert model.billed_total <= 600
    # The ending is in the thread, which is left finished (not stuck before the model).
    state = app.get_state(cfg)
    assert state.next == () and "budget" in state.values["messages"][-1].content


def test_budget_edge_sets_stop_reason_when_it_ends_the_loop():
    fake = BillingFakeChat(texts=[TEXT])
    llm = budgeted(fake)

    @guard
    def think(state: dict) -> dict:
        llm.invoke("think", max_tokens=10)
        return {"steps": ["think"]}

    def done(state: dict) -> dict:  # not guarded: with_budget still reports the reason
        return {"steps": ["done"]}

    b = StateGraph(SubState)
    b.add_node("think", think)
    b.add_node("done", done)
    b.add_edge(START, "think")
    b.add_conditional_edges("think", budget_edge(ok="think", low="done", min_remaining=40))
    b.add_edge("done", END)
    out = with_budget(b.compile(), Budget(max_tokens=150)).invoke({"steps": []})
    assert out["steps"][-1] == "done" and out["stop_reason"] == "budget"


@pytest.mark.parametrize(
    "bad, message",
    [
        (5000, "with_budget needs a Budget (got int 5000)"),
        (None, "with_budget needs a Budget (got NoneType None)"),
    ],
)
def test_with_budget_rejects_a_non_budget_at_construction(bad, message):
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        with_budget(fan(BillingFakeChat()).compile(), bad)


def test_guard_rejects_what_is_not_a_node():
    with pytest.raises(TypeError, match=r"guard needs a node function or Runnable \(got int\)"):
        guard(42)


def test_a_tool_that_bills_then_raises_keeps_its_spend_across_retries():
    # Issue #19 observation 9: four tries of a tool that calls a budgeted model and then
    # raises; every try's call is billed and must reach the thread's spend.
    inner = BillingFakeChat(texts=[TEXT])
    summarizer = budgeted(inner)

    @tool
    def flaky(q: str) -> str:
        """Summarize, then fail."""
        summarizer.invoke(f"summarize {q}", max_tokens=12)
        raise RuntimeError("tool crashed after billing")

    class S(MessagesState, BudgetState):
        pass

    model = ScriptedToolModel(steps=[turn(("flaky", {"q": "x"}), output_tokens=20)])

    @guard
    def agent(state: dict) -> dict:
        return {"messages": [budgeted(model).bind_tools([flaky]).invoke(state["messages"])]}

    b = StateGraph(S)
    b.add_node("agent", agent)
    b.add_node("tools", guard(ToolNode([flaky], handle_tool_errors=False)))
    b.add_edge(START, "agent")
    b.add_edge("agent", "tools")
    app = with_budget(b.compile(checkpointer=InMemorySaver()), Budget(max_tokens=5_000))
    cfg = {"configurable": {"thread_id": "tool-fails"}}
    for attempt in ({"messages": [HumanMessage("go")]}, None, None, None):
        with pytest.raises(RuntimeError, match="tool crashed"):
            app.invoke(attempt, cfg)
    spend = app.get_state(cfg).values["spend"]
    assert len(inner.billed) == 4
    assert spend.total_tokens == model.billed_total + sum(inner.billed)
    assert spend.calls == 5


class Chains(BaseCallbackHandler):
    """Records chain runs: ``(run_id, parent_run_id)`` per start, the output per end."""

    def __init__(self) -> None:
        self.starts: list[tuple[Any, Any]] = []
        self.ends: dict[Any, Any] = {}

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kw) -> None:
        self.starts.append((run_id, parent_run_id))

    def on_chain_end(self, outputs, *, run_id, **kw) -> None:
        self.ends[run_id] = outputs


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_callback_handler_sees_the_budgeted_run_as_the_graph_runs_parent(mode):
    import asyncio

    fake = BillingFakeChat(texts=[TEXT])
    app = with_budget(fan(fake, branches=2).compile(), Budget(max_tokens=10_000))
    seen = Chains()
    cfg: Any = {"callbacks": [seen]}
    if mode == "sync":
        out = app.invoke({"outs": []}, cfg)
    else:
        out = asyncio.run(app.ainvoke({"outs": []}, cfg))
    (root, no_parent), (graph_run, parent) = seen.starts[:2]
    assert no_parent is None and parent == root
    assert seen.ends[root] == out and out["spend"].calls == 2


def test_without_a_handler_the_graph_gets_no_callback_manager_of_ours():
    graph = fan(BillingFakeChat(texts=[TEXT]), branches=1).compile()
    configs: list[Any] = []
    stream = graph.stream

    def recording(input: Any, config: Any = None, **kwargs: Any) -> Any:
        configs.append(config)
        return stream(input, config, **kwargs)

    graph.stream = recording  # type: ignore[method-assign]
    app = with_budget(graph, Budget(max_tokens=10_000))
    app.invoke({"outs": []}, {"run_id": (rid := uuid.uuid4())})
    app.invoke({"outs": []}, {"callbacks": [Chains()]})
    # No handler would see a run of ours: the caller's (empty) callbacks and run id pass on.
    assert configs[0].get("callbacks") is None and configs[0]["run_id"] == rid
    assert isinstance(configs[1]["callbacks"], BaseCallbackManager)
