"""End-to-end tests of build_planner on a toy task with a billing fake model."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from budget_graph import Budget
from budget_graph.guard import with_budget
from budget_graph.nodes import BreadthLimitedBFS, FixedEstimator, ValueProportional
from budget_graph.planner import PlannerState, build_planner
from budget_graph.tasks.base import Item
from budget_graph.testing import BillingFakeChat
from tests.test_nodes_value import ITEM, ToyTask

# Root proposes a, b, c; only "b" leads on to the goal; the judge likes b best.
ANSWERS = {
    "PROPOSE[]": "a\nb\nc",
    "PROPOSE[b\n]": "x\ngoal",
    "PROPOSE[a\n]": "y\nz",
    "PROPOSE[c\n]": "w",
    "VALUE[a\n]": "likely",
    "VALUE[b\n]": "sure",
    "VALUE[c\n]": "impossible",
}


def _model(**answers: str) -> BillingFakeChat:
    return BillingFakeChat(answers={**ANSWERS, **answers}, texts=["impossible"])


def test_best_first_finds_the_goal_and_stops_solved() -> None:
    model = _model()
    app = build_planner(model, task=ToyTask(), budget=Budget(max_tokens=50_000), judge_samples=1)
    out = app.invoke({"item": ITEM})
    assert out["solved"] is True and out["stop_reason"] == "solved"
    assert out["answer"] == "goal" and out["path"] == ["b\n", "goal\n"]
    assert out["spend"].units == app.last_meter.spent == sum(model.billed)
    assert out["search_stats"].expansions == 2  # root, then b


def test_tiny_budget_degrades_to_best_so_far_without_overshoot() -> None:
    for limit in (30, 120, 400, 700):
        model = _model()
        app = build_planner(model, task=ToyTask(), budget=Budget(max_tokens=limit), judge_samples=1)
        out = app.invoke({"item": ITEM})
        assert app.last_meter.spent <= limit
        assert out["spend"].units == sum(model.billed) <= limit
        assert out["stop_reason"] in {"budget", "solved"}


def test_breadth_limited_bfs_runs_to_depth_without_early_stop() -> None:
    model = _model()
    app = build_planner(
        model,
        task=ToyTask(),
        budget=Budget(max_tokens=50_000),
        breadth=2,
        judge_samples=1,
        stop_on_solved=False,
        max_depth=2,
    )
    out = app.invoke({"item": ITEM})
    assert out["stop_reason"] == "depth" and out["solved"] is True
    expanded = {n.id for n in out["tree"].values() if n.status == "expanded"}
    assert expanded == {"0", "0.0", "0.1"}  # root, then the best two: b (sure), a (likely)


def test_estimator_caps_the_searchs_generated_tokens_not_its_units() -> None:
    # TALE's estimate counts output tokens: 150 lets the search (30 generated, 166 prompt
    # tokens) solve; 20 stops it at the first step that reaches 20 generated tokens.
    model = _model(**{"VALUE[b\n]": "impossible"})
    app = build_planner(
        model,
        task=ToyTask(),
        budget=Budget(max_tokens=50_000),
        estimator=FixedEstimator(150),
        judge_samples=1,
    )
    out = app.invoke({"item": ITEM})
    assert out["budget_tokens"] == 150 and out["stop_reason"] == "solved"
    assert out["spend"].output_tokens < 150 < out["spend"].units
    app = build_planner(
        _model(**{"VALUE[b\n]": "impossible"}),
        task=ToyTask(),
        budget=Budget(max_tokens=50_000),
        estimator=FixedEstimator(20),
        judge_samples=1,
    )
    out = app.invoke({"item": ITEM})
    assert out["stop_reason"] == "budget" and 20 <= out["spend"].output_tokens
    assert out["spend"].input_tokens > 20


def test_unrecorded_like_errors_make_a_node_unexpandable(monkeypatch: pytest.MonkeyPatch) -> None:
    from budget_graph.replay.store import NotRecordedError

    class Partial(BillingFakeChat):
        def _generate(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> Any:
            if "PROPOSE[b" in messages[-1].text:
                raise NotRecordedError(key="k", task=None, closest=None, similarity=0.0)
            return super()._generate(messages, stop, run_manager, **kwargs)

    model = Partial(answers=ANSWERS, texts=["impossible"])
    app = build_planner(model, task=ToyTask(), budget=Budget(max_tokens=50_000), judge_samples=1)
    out = app.invoke({"item": ITEM})
    assert out["tree"]["0.1"].status == "unexpandable"
    assert out["search_stats"].unrecorded == 1
    assert out["solved"] is False and out["stop_reason"] in {"exhausted", "depth"}


def test_checkpointed_run_keeps_the_tree_in_state() -> None:
    app = build_planner(_model(), task=ToyTask(), judge_samples=1, checkpointer=InMemorySaver())
    app = with_budget(app, Budget(max_tokens=50_000))
    cfg = {"configurable": {"thread_id": "t1"}}
    out = app.invoke({"item": ITEM}, cfg)
    saved = app.get_state(cfg).values
    assert out["solved"] and saved["tree"] == out["tree"] and len(saved["tree"]) >= 6


def test_streams_updates_from_each_node() -> None:
    app = build_planner(_model(), task=ToyTask(), budget=Budget(max_tokens=50_000), judge_samples=1)
    nodes = [next(iter(ev)) for ev in app.stream({"item": ITEM}, stream_mode="updates")]
    assert nodes[0] == "estimate" and nodes[-1] == "terminate"
    assert {"plan", "expand", "value"} <= set(nodes)


def test_embeds_as_a_subgraph_under_a_budgeted_parent() -> None:
    model = _model()
    planner = build_planner(model, task=ToyTask(), item=ITEM, judge_samples=1)

    class Parent(PlannerState):
        note: str

    builder = StateGraph(Parent)
    builder.add_node("planner", planner)
    builder.add_node("after", lambda s: {"note": f"answer={s['answer']}"})
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "after")
    builder.add_edge("after", END)
    app = with_budget(builder.compile(), Budget(max_tokens=50_000))
    out = app.invoke({"item": ITEM})
    assert out["note"] == "answer=goal"
    assert app.last_meter.spent == sum(model.billed) > 0


def test_parallel_branches_merge_every_node_and_token() -> None:
    model = _model()
    app = build_planner(
        model,
        task=ToyTask(),
        budget=Budget(max_tokens=50_000),
        policy=ValueProportional(width=3),
        judge_samples=1,
        stop_on_solved=False,
    )
    out = app.invoke({"item": ITEM})
    assert out["spend"].units == sum(model.billed) == app.last_meter.spent
    ids = set(out["tree"])
    assert {"0", "0.0", "0.1", "0.2", "0.1.1"} <= ids


def test_needs_an_item() -> None:
    app = build_planner(_model(), task=ToyTask())
    with pytest.raises(ValueError, match="build_planner needs an item"):
        app.invoke({})


def test_default_policy_objects() -> None:
    assert BreadthLimitedBFS().breadth == 5
    assert Item(id="1", input="toy") == ITEM


async def test_ainvoke_runs_the_same_search() -> None:
    model = _model()
    app = build_planner(model, task=ToyTask(), budget=Budget(max_tokens=50_000), judge_samples=1)
    out = await app.ainvoke({"item": ITEM})
    assert out["solved"] and out["stop_reason"] == "solved"
    assert out["spend"].units == sum(model.billed) == app.last_meter.spent


def test_generated_left_counts_the_runs_own_output_against_the_estimate() -> None:
    from budget_graph import Spend
    from budget_graph.context import BASE_UNITS_KEY, run_base_units
    from budget_graph.nodes import generated_left, remaining_units

    state = {"budget_tokens": 100, "spend": Spend(input_tokens=900, output_tokens=70, units=970)}
    assert generated_left(state) == 30 and remaining_units(state, {}) is None
    # 50 output tokens were spent before the estimate was made: the search spent 20 of 100.
    assert generated_left({**state, "budget_tokens_base": 50}) == 80
    assert generated_left({"spend": Spend(output_tokens=5)}) is None
    assert run_base_units({"metadata": {BASE_UNITS_KEY: 50}}) == 50 and run_base_units({}) == 0


def test_a_budgeted_search_keeps_the_planners_recursion_limit() -> None:
    from tests.test_planner_checkpoints import ITEM as GRID_ITEM
    from tests.test_planner_checkpoints import make_app

    # 121 nodes: 42 super-steps, past LangGraph's default limit of 25.
    out = make_app(None, depth=4).invoke({"item": GRID_ITEM})
    assert len(out["tree"]) == 121 and out["stop_reason"] in {"depth", "exhausted"}


def test_a_policy_sees_what_the_run_has_spent_so_far() -> None:
    from budget_graph.nodes import BestFirst
    from budget_graph.nodes.allocation import PolicyView, Selection

    seen: list[tuple[int, int | None]] = []
    inner = BestFirst()

    def policy(view: PolicyView) -> Selection:
        seen.append((view.spent, view.remaining))
        return inner(view)

    model = _model()
    app = build_planner(
        model, task=ToyTask(), budget=Budget(max_tokens=50_000), policy=policy, judge_samples=1
    )
    out = app.invoke({"item": ITEM})
    assert seen[0] == (0, 50_000)
    spent = [s for s, _ in seen]
    assert spent == sorted(spent) and spent[-1] > 0
    assert all(s + (r or 0) == 50_000 for s, r in seen)  # spent + remaining = the budget
    assert spent[-1] <= out["spend"].units == sum(model.billed)
