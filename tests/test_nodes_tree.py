"""Tests for the search tree state: persistent map, reducer, backup, serialisation."""

from __future__ import annotations

import copy
import inspect
import pickle
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from budget_graph.nodes.tree import (
    DEFAULT_GAMMA,
    ROOT_ID,
    SearchStats,
    Tree,
    TreeNode,
    backup,
    merge_tree,
    merge_tree_updates,
)
from budget_graph.planner import build_planner


def _node(node_id: str, value: float | None = None, status: str = "open") -> TreeNode:
    parent = node_id.rsplit(".", 1)[0] if "." in node_id else None
    depth = node_id.count(".")
    return TreeNode(
        id=node_id,
        parent=parent,
        depth=depth,
        text=node_id,
        reward=value,
        value=value,
        status=status,  # type: ignore[arg-type]
    )


def test_merge_adds_and_replaces_by_id() -> None:
    t = merge_tree(Tree(), [_node("0", 0.0)])
    t = merge_tree(t, [_node("0.0", 1.0), _node("0.1", 2.0)])
    t = merge_tree(t, {"0.0": _node("0.0", 5.0)})
    assert len(t) == 3
    assert t["0.0"].value == 5.0
    assert [c.id for c in t.children("0")] == ["0.0", "0.1"]
    assert [n.id for n in t.path("0.1")] == ["0", "0.1"]


def test_merge_into_head_shares_storage_and_old_versions_keep_their_view() -> None:
    t1 = merge_tree(Tree(), [_node("0", 0.0), _node("0.0", 1.0)])
    t2 = merge_tree(t1, [_node("0.0", 9.0), _node("0.1", 2.0)])
    assert t2._core is t1._core  # O(delta): no copy of the tree
    assert t1["0.0"].value == 1.0 and "0.1" not in t1 and len(t1) == 2
    assert t2["0.0"].value == 9.0 and len(t2) == 3
    # Writing to the old version forks instead of corrupting the newer one.
    t3 = merge_tree(t1, [_node("0.2", 3.0)])
    assert t3._core is not t1._core
    assert set(t3) == {"0", "0.0", "0.2"} and t3["0.0"].value == 1.0
    assert set(t2) == {"0", "0.0", "0.1"}


def test_whole_tree_update_replaces_an_empty_tree() -> None:
    whole = Tree([_node("0", 0.0)])
    assert merge_tree(Tree(), whole) is whole
    assert merge_tree(None, None) == Tree()


def test_best_open_orders_by_value_then_depth_and_skips_stale_records() -> None:
    t = merge_tree(Tree(), [_node("0", 0.0, "expanded"), _node("0.0", 3.0), _node("0.1", 5.0)])
    t = merge_tree(t, [_node("0.0.0", 5.0), replace(_node("0.1", 5.0), status="expanded")])
    assert [n.id for n in t.best_open(5)] == ["0.0.0", "0.0"]
    assert [n.id for n in t.best_open(5, max_depth=2)] == ["0.0"]
    assert [n.id for n in t.best_open(1)] == ["0.0.0"]
    # A second read returns the same (entries are pushed back).
    assert [n.id for n in t.best_open(2)] == ["0.0.0", "0.0"]


def test_unvalued_lists_open_nodes_without_a_value() -> None:
    t = merge_tree(Tree(), [_node("0", 0.0), _node("0.0"), _node("0.1")])
    assert [n.id for n in t.unvalued()] == ["0.0", "0.1"]
    t = merge_tree(t, [_node("0.0", 1.0)])
    assert [n.id for n in t.unvalued()] == ["0.1"]


def test_backup_takes_reward_plus_discounted_best_child_up_to_the_root() -> None:
    t = Tree(
        [
            _node("0", 0.0, "expanded"),
            replace(_node("0.0", 2.0, "expanded")),
            _node("0.1", 1.0),
            _node("0.0.0", 4.0),
            _node("0.0.1", 10.0),
        ]
    )
    changed = {n.id: n for n in backup(t, ["0.0"], gamma=0.5)}
    assert changed["0.0"].value == 2.0 + 0.5 * 10.0
    assert changed[ROOT_ID].value == 0.0 + 0.5 * 7.0
    assert "0.1" not in changed  # siblings are not touched


def test_backup_and_the_planner_share_the_documented_default_gamma() -> None:
    assert DEFAULT_GAMMA == 0.9  # DESIGN.md and docs/planner.md: "γ defaults to 0.9"
    assert inspect.signature(build_planner).parameters["gamma"].default == DEFAULT_GAMMA
    t = Tree([_node("0", 0.0, "expanded"), _node("0.0", 2.0)])
    (root,) = backup(t, ["0.0"])
    assert root.value == pytest.approx(DEFAULT_GAMMA * 2.0)


def test_tree_round_trips_through_the_checkpoint_serializer_and_pickle() -> None:
    t = Tree([_node("0", 0.0), _node("0.0", 1.5), _node("0.0", 2.5)])
    serde = JsonPlusSerializer()
    back = serde.loads_typed(serde.dumps_typed(t))
    assert isinstance(back, Tree) and back == t and back["0.0"].value == 2.5
    assert pickle.loads(pickle.dumps(t)) == t


def test_search_stats_add_and_learn_costs() -> None:
    s = SearchStats(expansions=2, expand_units=300) + SearchStats(value_calls=4, value_units=400)
    assert s.units_per_expansion == 150 and s.units_per_value_call == 100
    assert SearchStats().units_per_expansion is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 9)), max_size=40))
def test_merge_matches_a_plain_dict(updates: list[tuple[int, int]]) -> None:
    tree, model = Tree(), {}
    for k, v in updates:
        node = _node(f"0.{k}", float(v))
        tree = merge_tree(tree, [node])
        model[node.id] = node
    assert dict(tree.items()) == model
    open_values = sorted((n.value for n in model.values()), reverse=True)
    assert [n.value for n in tree.best_open(3)] == open_values[:3]


def test_a_write_repeating_the_records_after_an_old_version_reuses_them() -> None:
    # LangGraph applies a node's writes to a copy of the state (for a conditional edge),
    # then the same write objects to the state itself.
    old = Tree([_node("0", 0.0)])
    records = [_node("0.0", 1.0), _node("0.1", 2.0)]
    ahead = merge_tree(copy.copy(old), records)
    again = merge_tree(old, records)
    assert copy.copy(old) is old and again._core is ahead._core and again == ahead
    # Equal but different records are a different write: the old version forks.
    other = merge_tree(old, [_node("0.0", 1.0), _node("0.1", 3.0)])
    assert other._core is not ahead._core and other["0.1"].value == 3.0
    assert ahead["0.1"].value == 2.0 and len(old) == 1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 9)), max_size=4), max_size=8),
    st.integers(0, 8),
)
def test_tree_updates_reduce_the_same_in_any_batching(
    batches: list[list[tuple[int, int]]], cut: int
) -> None:
    updates = [[_node(f"0.{k}", float(v)) for k, v in batch] for batch in batches]
    at_once = merge_tree_updates(Tree([_node("0", 0.0)]), updates)
    in_two = merge_tree_updates(
        merge_tree_updates(Tree([_node("0", 0.0)]), updates[:cut]), updates[cut:]
    )
    assert at_once == in_two


def test_best_open_breaks_ties_by_age_and_a_rebuilt_tree_picks_the_same_nodes() -> None:
    built = merge_tree(Tree(), [_node("0", 0.0, "expanded")])
    for i in ["0.2", "0.1", "0.3.0", "0.0"]:  # one record at a time, as a run writes them
        built = merge_tree(built, [_node(i, 5.0)])
    built = merge_tree(built, [_node("0.1", 5.0)])  # a newer record keeps the node's age
    order = [n.id for n in built.best_open(4)]
    assert order == ["0.3.0", "0.2", "0.1", "0.0"]
    serde = JsonPlusSerializer()
    for rebuilt in (Tree(built.nodes()), serde.loads_typed(serde.dumps_typed(built))):
        assert [n.id for n in rebuilt.best_open(4)] == order
    old = merge_tree(Tree(), built.nodes()[:3])  # an old version answers by scanning
    assert [n.id for n in Tree._view(built._core, 3).best_open(2)] == ["0.2", "0.1"]
    assert [n.id for n in old.best_open(2)] == ["0.2", "0.1"]


def test_records_serialize_as_their_non_default_fields() -> None:
    from budget_graph.planner import PLANNER_CHECKPOINT_TYPES

    node = replace(_node("0.3", 2.0), text="abc")
    assert set(node._asdict()) == {"id", "parent", "depth", "text", "reward", "value"}
    assert SearchStats(solved=1)._asdict() == {"solved": 1}
    serde = JsonPlusSerializer(allowed_msgpack_modules=PLANNER_CHECKPOINT_TYPES)
    back = serde.loads_typed(serde.dumps_typed([node, SearchStats(solved=1), Tree([node])]))
    assert back == [node, SearchStats(solved=1), Tree([node])]
