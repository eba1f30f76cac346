"""Tests for allocation policies and the planner's budget edge."""

from __future__ import annotations

import pytest
from langgraph.types import Send

from budget_graph.nodes import (
    Action,
    BestFirst,
    BreadthLimitedBFS,
    PlannerEdge,
    PolicyView,
    SearchStats,
    Tree,
    TreeNode,
    ValueProportional,
    proportional_shares,
)
from budget_graph.tasks.base import Item


def _n(node_id: str, value: float | None, status: str = "open") -> TreeNode:
    parent = node_id.rsplit(".", 1)[0] if "." in node_id else None
    return TreeNode(
        id=node_id, parent=parent, depth=node_id.count("."), text=node_id,
        reward=value, value=value, status=status,  # type: ignore[arg-type]
    )


def test_proportional_shares() -> None:
    assert proportional_shares(1000, [3.0, 1.0]) == [750, 250]
    assert proportional_shares(900, [0.0, 0.0, 0.0]) == [300, 300, 300]
    assert proportional_shares(10, []) == []


def test_bfs_expands_root_then_keeps_the_best_children_stably() -> None:
    tree = Tree([_n("0", 0.0)])
    first = BreadthLimitedBFS(breadth=2)(PolicyView(tree=tree, remaining=100))
    assert [a.node for a in first.actions] == ["0"]
    tree = Tree([_n("0", 0.0, "expanded"), _n("0.0", 1.0), _n("0.1", 5.0), _n("0.2", 5.0),
                 _n("0.3", 1.0)])
    sel = BreadthLimitedBFS(breadth=2)(
        PolicyView(tree=tree, last=(Action("expand", "0"),), remaining=100)
    )
    assert [(a.node, a.allocated) for a in sel.actions] == [("0.1", 50), ("0.2", 50)]


def test_bfs_stops_for_depth() -> None:
    tree = Tree([_n("0", 0.0, "expanded"), _n("0.0", 1.0)])
    sel = BreadthLimitedBFS()(PolicyView(tree=tree, last=(Action("expand", "0"),), max_depth=1))
    assert sel.actions == () and sel.reason == "depth"


def test_bfs_validates_breadth() -> None:
    with pytest.raises(ValueError, match=r"breadth must be >= 1 \(got 0\)"):
        BreadthLimitedBFS(breadth=0)


def test_value_proportional_skips_nodes_whose_share_cannot_pay_an_expansion() -> None:
    tree = Tree([_n("0", 0.0, "expanded"), _n("0.0", 8.0), _n("0.1", 2.0)])
    view = PolicyView(tree=tree, remaining=1000, expected_cost=300)
    sel = ValueProportional(width=2)(view)
    assert [(a.node, a.allocated) for a in sel.actions] == [("0.0", 800)]
    roomy = PolicyView(tree=tree, remaining=2000, expected_cost=300)
    assert [a.node for a in ValueProportional(width=2)(roomy).actions] == ["0.0", "0.1"]


def test_value_proportional_reports_budget_when_nothing_is_affordable() -> None:
    tree = Tree([_n("0", 0.0, "expanded"), _n("0.0", 8.0)])
    sel = BestFirst()(PolicyView(tree=tree, remaining=100, expected_cost=300))
    assert sel.actions == () and sel.reason == "budget"


def test_best_first_values_pending_siblings_before_expanding_a_weak_node() -> None:
    tree = Tree([_n("0", 0.0, "expanded"), _n("0.0", 1.0), _n("0.1", None), _n("0.2", None)])
    sel = BestFirst(expand_at=20.0)(PolicyView(tree=tree, remaining=1000))
    assert sel.actions == (Action("value", "0", ids=("0.1", "0.2"), allocated=1000),)
    strong = Tree([_n("0", 0.0, "expanded"), _n("0.0", 30.0), _n("0.1", None)])
    sel = BestFirst(expand_at=20.0)(PolicyView(tree=strong, remaining=1000))
    assert [a.kind for a in sel.actions] == ["expand"]


@pytest.mark.parametrize(
    ("state", "kwargs", "remaining", "actions", "expected"),
    [
        ({"stop_reason": "budget"}, {}, 10_000, [Action("expand", "0")], "budget"),
        ({"search_stats": SearchStats(solved=1)}, {}, 10_000, [Action("expand", "0")], "solved"),
        ({"search_stats": SearchStats(solved=1)}, {"stop_on_solved": False}, 10_000,
         [Action("expand", "0")], None),
        ({}, {}, 10_000, [], "depth"),
        ({"search_stats": SearchStats(expansions=2, expand_units=800)}, {}, 399,
         [Action("expand", "0")], "budget"),
        ({"search_stats": SearchStats(expansions=2, expand_units=800)}, {}, 400,
         [Action("expand", "0")], None),
        ({}, {}, 0, [Action("value", "0", ids=("0.0",))], "budget"),
    ],
)
def test_edge_check(
    state: dict, kwargs: dict, remaining: int, actions: list[Action], expected: str | None
) -> None:
    edge = PlannerEdge(**kwargs)
    assert edge.check(state, actions=actions, reason="depth", remaining=remaining) == expected


def test_edge_converges_when_gain_stays_below_epsilon() -> None:
    edge = PlannerEdge(min_gain=0.05, patience=2)
    go = [Action("expand", "0")]
    assert edge.check({}, actions=go, reason=None, remaining=None,
                      quality=[1.0, 1.5, 1.5, 1.51]) == "converged"
    assert edge.check({}, actions=go, reason=None, remaining=None,
                      quality=[1.0, 1.5, 1.5, 2.0]) is None


def test_edge_routes_sends_or_terminates() -> None:
    item = Item(id="1", input="x")
    tree = Tree([_n("0", 0.0), _n("0.0", None)])
    edge = PlannerEdge()
    sends = edge({"item": item, "tree": tree, "actions": [
        Action("expand", "0", allocated=5), Action("value", "0", ids=("0.0",))]}, {})
    assert isinstance(sends, list) and all(isinstance(s, Send) for s in sends)
    assert [s.node for s in sends] == ["expand", "value"]
    assert sends[0].arg["node"] == tree["0"] and sends[1].arg["nodes"] == [tree["0.0"]]
    assert edge({"stop_reason": "solved"}, {}) == "terminate"
    assert edge({"actions": []}, {}) == "terminate"
