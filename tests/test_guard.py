import operator
import sqlite3
from typing import Annotated

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from budget_graph import (
    Budget,
    BudgetExceededError,
    BudgetState,
    RemainingTokens,
    budget_edge,
    budgeted,
    guard,
    with_budget,
)
from budget_graph.context import BASE_UNITS_KEY
from tests.core_fakes import BillingFakeChat

TEXT = "alpha beta gamma delta epsilon zeta eta theta"


class FanState(BudgetState):
    outs: Annotated[list[str], operator.add]


def fan_graph(fake, per_call=8):
    llm = budgeted(fake)

    @guard
    def work(state):
        return {"outs": [llm.invoke(f"task {state['i']}", max_tokens=per_call).text]}

    b = StateGraph(FanState)
    b.add_node("work", work)
    b.add_conditional_edges(START, lambda s: [Send("work", {"i": i}) for i in range(32)], ["work"])
    b.add_edge("work", END)
    return b.compile()


@pytest.mark.parametrize("limit", [10_000, 300, 17])
def test_32_parallel_branches_share_one_budget(limit):
    fake = BillingFakeChat(texts=[TEXT])
    app = with_budget(fan_graph(fake), Budget(max_tokens=limit))
    out = app.invoke({"outs": []})
    spend = out["spend"]
    assert spend.total_tokens == sum(fake.billed)  # state spend == sum of real usage
    assert spend.units <= limit
    assert spend.calls == len(fake.billed) == len(out["outs"])
    assert spend.by_node["work"].calls == spend.calls
    if limit == 10_000:
        assert spend.calls == 32 and out.get("stop_reason") is None
    else:
        assert spend.calls < 32 and out["stop_reason"] == "budget"


async def test_parallel_branches_async():
    fake = BillingFakeChat(texts=[TEXT])
    app = with_budget(fan_graph(fake), Budget(max_tokens=200))
    out = await app.ainvoke({"outs": []})
    assert out["spend"].total_tokens == sum(fake.billed) <= 200


class StepState(BudgetState):
    steps: Annotated[list[str], operator.add]
    left: RemainingTokens


def three_step_graph(fake, fail_once: dict):
    llm = budgeted(fake)

    def step(name):
        @guard(name=name)
        def run(state):
            if fail_once.get(name):
                fail_once[name] = False
                raise RuntimeError(f"crash before {name}")
            llm.invoke(f"do {name}", max_tokens=10)
            return {"steps": [name]}

        return run

    b = StateGraph(StepState)
    for name in ("a", "b", "c"):
        b.add_node(name, step(name))
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", "c")
    b.add_edge("c", END)
    return b


def test_sqlite_resume_keeps_exact_spend_and_cap(tmp_path):
    fake = BillingFakeChat(texts=[TEXT])
    fail = {"c": True}
    conn = sqlite3.connect(tmp_path / "ckpt.sqlite", check_same_thread=False)
    app = with_budget(
        three_step_graph(fake, fail).compile(checkpointer=SqliteSaver(conn)),
        Budget(max_tokens=10_000),
    )
    cfg = {"configurable": {"thread_id": "t1"}}
    with pytest.raises(RuntimeError, match="crash before c"):
        app.invoke({"steps": []}, cfg)
    mid = app.get_state(cfg).values["spend"]
    assert mid.calls == 2 and mid.total_tokens == sum(fake.billed)
    out = app.invoke(None, cfg)  # resume
    assert out["steps"] == ["a", "b", "c"]
    assert out["spend"].calls == 3 == len(fake.billed)
    assert out["spend"].total_tokens == sum(fake.billed)
    assert app.last_meter.spent == out["spend"].units  # rebuilt meter carried the first run's spend


def test_resume_cannot_exceed_the_budget(tmp_path):
    fake = BillingFakeChat(texts=[TEXT])
    conn = sqlite3.connect(tmp_path / "ckpt.sqlite", check_same_thread=False)
    graph = three_step_graph(fake, {"c": True}).compile(checkpointer=SqliteSaver(conn))
    cfg = {"configurable": {"thread_id": "t2"}}
    with pytest.raises(RuntimeError):
        with_budget(graph, Budget(max_tokens=10_000)).invoke({"steps": []}, cfg)
    spent = graph.get_state(cfg).values["spend"].units
    # Resume under a budget that leaves less than one prompt: c is refused and ends gracefully.
    app = with_budget(graph, Budget(max_tokens=spent + 8))
    out = app.invoke(None, cfg)
    assert out["stop_reason"] == "budget"
    assert out["spend"].units <= spent + 8


def test_a_new_run_on_a_thread_clears_the_last_runs_stop_reason(tmp_path):
    fake = BillingFakeChat(texts=[TEXT])
    graph = three_step_graph(fake, {}).compile(
        checkpointer=SqliteSaver(sqlite3.connect(tmp_path / "c.sqlite", check_same_thread=False))
    )
    cfg = {"configurable": {"thread_id": "t3"}}
    # The first run's budget runs out: it stops for budget.
    first = with_budget(graph, Budget(max_tokens=30)).invoke({"steps": []}, cfg)
    assert first["stop_reason"] == "budget"
    # A new run on the same thread, with room, must not inherit that reason.
    second = with_budget(graph, Budget(max_tokens=10_000)).invoke({"steps": []}, cfg)
    assert second["stop_reason"] is None
    assert second["spend"].calls == first["spend"].calls + 3


def test_on_exhausted_error_propagates():
    fake = BillingFakeChat(texts=[TEXT])
    llm = budgeted(fake)

    @guard(on_exhausted="error")
    def node(state):
        llm.invoke("hi")
        return {}

    b = StateGraph(BudgetState)
    b.add_node("n", node)
    b.add_edge(START, "n")
    app = with_budget(b.compile(), Budget(max_tokens=5))
    with pytest.raises(BudgetExceededError, match="run budget of 5 tokens"):
        app.invoke({})
    with pytest.raises(ValueError, match="Invalid on_exhausted: 'stop'"):
        guard(lambda s: s, on_exhausted="stop")


def test_budget_edge_and_remaining_tokens_route_out_of_a_loop():
    fake = BillingFakeChat(texts=[TEXT])
    llm = budgeted(fake)
    seen: list[int] = []

    @guard
    def agent(state):
        seen.append(state["left"])
        llm.invoke("think", max_tokens=10)
        return {"steps": ["agent"]}

    def summarize(state):
        return {"steps": ["summary"]}

    b = StateGraph(StepState)
    b.add_node("agent", agent)
    b.add_node("summarize", summarize)
    b.add_edge(START, "agent")
    b.add_conditional_edges(
        "agent", budget_edge(ok="agent", low="summarize", min_remaining=30), ["agent", "summarize"]
    )
    b.add_edge("summarize", END)
    app = with_budget(b.compile(), Budget(max_tokens=100))
    out = app.invoke({"steps": []})
    assert out["steps"][-1] == "summary"
    assert out["spend"].units <= 100
    assert seen == sorted(seen, reverse=True) and seen[0] == 100  # RemainingTokens counts down
    assert app.last_meter.available() < 30


def test_a_resumed_second_run_on_a_thread_counts_only_its_own_spend(tmp_path):
    fake = BillingFakeChat(texts=[TEXT])
    fail: dict[str, bool] = {}
    graph = three_step_graph(fake, fail).compile(
        checkpointer=SqliteSaver(sqlite3.connect(tmp_path / "c.sqlite", check_same_thread=False))
    )
    cfg = {"configurable": {"thread_id": "t4"}}
    app = with_budget(graph, Budget(max_tokens=10_000))
    first = app.invoke({"steps": []}, cfg)["spend"]
    fail["c"] = True
    with pytest.raises(RuntimeError, match="crash before c"):
        app.invoke({"steps": []}, cfg)
    # The run's base (the thread's spend when it started) comes back from the checkpoint.
    assert graph.get_state(cfg).metadata[BASE_UNITS_KEY] == first.units
    total = app.invoke(None, cfg)["spend"]
    assert total.calls == 2 * first.calls
    assert app.last_meter.spent == total.units - first.units


class _PricedFake(BillingFakeChat):
    model_name: str = "billing-fake"
    """The name a cost budget prices the calls by."""


@pytest.mark.parametrize("listed", [False, True])
def test_checkpoint_types_load_as_registered_types(tmp_path, listed):
    from langgraph.checkpoint.serde.event_hooks import register_serde_event_listener
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from budget_graph import CHECKPOINT_TYPES, ModelPrice

    events: list[tuple[str, str, str]] = []
    stop = register_serde_event_listener(
        lambda e: events.append((e["kind"], e["module"], e["name"]))
    )
    serde = JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES) if listed else None
    conn = sqlite3.connect(tmp_path / "ckpt.sqlite", check_same_thread=False)
    # A cost budget: its prices come back as ModelPrice (the Budget rebuilds them).
    budget = Budget(
        count="cost",
        max_cost_usd=1.0,
        prices={"billing-fake": ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0)},
    )
    graph = three_step_graph(_PricedFake(texts=[TEXT]), {"c": False})
    app = with_budget(graph.compile(checkpointer=SqliteSaver(conn, serde=serde)), budget)
    cfg = {"configurable": {"thread_id": "t"}}
    try:
        app.invoke({"steps": []}, cfg)
        values = app.get_state(cfg).values
    finally:
        stop()
    assert values["budget"] == budget and values["spend"].calls == 3
    assert {type(u).__name__ for u in values["spend"].by_node.values()} == {"Usage"}
    ours = {name for _, module, name in events if module == "budget_graph.budget"}
    # LangGraph reports every one of our types as unregistered unless they are listed.
    assert ours == (set() if listed else {"Budget", "Spend", "Usage"})
