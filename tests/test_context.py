"""Tests for budget_graph.context: the current meter's block."""

from __future__ import annotations

import re

import pytest

from budget_graph import Budget, Meter
from budget_graph.context import current_meter, current_node, use_meter


def test_use_meter_sets_and_restores_the_current_meter() -> None:
    outer, inner = Meter(Budget(max_tokens=10)), Meter(Budget(max_tokens=5))
    with use_meter(outer) as got:
        assert got is outer and current_meter() is outer
        with use_meter(inner):
            assert current_meter() is inner
        assert current_meter() is outer
    assert current_meter() is None


def test_a_use_meter_block_can_be_entered_again_after_it_exits() -> None:
    meter = Meter(Budget(max_tokens=10))
    block = use_meter(meter)
    for _ in range(2):
        with block:
            assert current_meter() is meter
        assert current_meter() is None


def test_a_use_meter_block_cannot_be_entered_while_open() -> None:
    block = use_meter(Meter(Budget(max_tokens=10)))
    with block:
        with pytest.raises(RuntimeError, match=re.escape("this use_meter block is already open")):
            block.__enter__()
    assert current_meter() is None


def test_use_meter_restores_on_error() -> None:
    with pytest.raises(ValueError, match="boom"), use_meter(Meter(Budget(max_tokens=10))):
        raise ValueError("boom")
    assert current_meter() is None


def test_current_node_is_the_running_langgraph_node() -> None:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        seen: list[str | None]

    def plan(state: State) -> State:
        return {"seen": [*state["seen"], current_node()]}

    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", END)
    assert builder.compile().invoke({"seen": []})["seen"] == ["plan"]
    assert current_node() is None  # outside a graph
    assert current_node({"metadata": {"langgraph_node": "given"}}) == "given"
    assert current_node({"metadata": {"langgraph_node": 3}}) is None  # not a name
