"""Tests for the Game of 24 benchmark runner (on the shipped replay): billing, rows, frontier."""

from __future__ import annotations

import re

import pytest

from budget_graph.bench import game24
from budget_graph.bench.game24_tools import depth_rule, one_number_check
from budget_graph.efficiency import RunRecord
from budget_graph.replay import NotRecordedError
from budget_graph.tasks.base import Item
from budget_graph.tasks.game24 import Game24Task

ITEM = Item(id="900", input="4 5 6 10")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4 + 5 = 9 (left: 6 9 10)\n", None),
        ("4 + 5 = 9 (left: 6 9 10)\n10 - 6 = 4 (left: 4 9)\n", 0.0),
        ("a (left: 6 9 10)\nb (left: 4 6)\n", 60.0),
        ("a (left: 6 9 10)\nb (left: 4 6)\n4 * 6 = 24 (left: 24)\n", 60.0),
        ("a (left: 6 9 10)\nb (left: 4 6)\n4 + 6 = 10 (left: 10)\n", 0.0),
        ("a (left: 2/3 36)\n", 60.0),
        ("a (left: x 2)\n", None),
        ("a\nb\nc\nAnswer: 1 + 2 = 24\n", 0.0),
        ("", None),
    ],
)
def test_game24_reward_decides_only_trivial_states(text: str, expected: float | None) -> None:
    assert game24.game24_reward(ITEM, text) == expected


def test_value_tools_split_the_solver_from_the_checks() -> None:
    two_left = "a (left: 6 9 10)\nb (left: 4 6)\n"
    assert one_number_check(ITEM, two_left) is None  # only the task solver decides these
    assert one_number_check(ITEM, two_left + "4 * 6 = 24 (left: 24)\n") == 60.0
    assert depth_rule(ITEM, "a (left: 1 2 3)\nb (left: 1 2)\nc (left: 3)\nd (left: 5)\n") == 0.0
    assert depth_rule(ITEM, two_left) is None


def test_unrecorded_request_is_billed_exact_prompt_plus_mean_completion() -> None:
    task = Game24Task()
    model = game24.replay_model(ITEM)
    state = "4 + 5 = 9 (left: 6 9 10)\n9 + 10 = 19 (left: 6 19)\n6 + 19 = 25 (left: 25)\n"
    prompt = task.propose_prompt(ITEM, "1 + 1 = 2 (left: 2 2 2)\n")  # never recorded
    with pytest.raises(NotRecordedError) as info:
        model.invoke(prompt, max_tokens=1000)
    usage = info.value.billed_usage  # type: ignore[attr-defined]
    mean = game24.load_recording(game24.RECORDINGS).means.mean("propose", 1)
    assert usage.output_tokens == round(mean) and usage.estimated_calls == 1
    from budget_graph.accounting import count_messages

    assert usage.input_tokens == count_messages([{"role": "user", "content": prompt}])
    assert game24.classify([_msg(task.value_prompt(ITEM, state))]) == ("value", 2)
    assert model.tally.requests == 1


def _msg(text: str):  # type: ignore[no-untyped-def]
    from langchain_core.messages import HumanMessage

    return HumanMessage(text)


def test_run_on_two_puzzles_bills_every_request_with_zero_overshoot() -> None:
    methods = ["tot-bfs", "budget-search", "budget-search-judge", "tot-bfs-5", "cot-verify"]
    records = game24.run(methods=methods, budget_fractions=[0.5], limit=2, workers=1)
    assert all(isinstance(r, RunRecord) for r in records)
    tot = {r.item: r for r in records if r.method == "tot-bfs"}
    budget = round(0.5 * sum(r.total_tokens for r in tot.values()) / 2)
    assert {(r.method, r.budget) for r in records} == {
        ("tot-bfs", None),
        ("tot-bfs-5", None),
        ("budget-search", budget),
        ("budget-search-judge", budget),
        ("cot-verify", budget),
    }
    for r in records:
        assert r.extra["overshoot"] == 0
        if r.budget is not None:
            assert r.total_tokens <= r.budget
    ours = {r.item: r for r in records if r.method == "budget-search"}
    assert tot["900"].correct and ours["900"].correct
    assert ours["900"].stop_reason == "solved"
    assert ours["900"].total_tokens < tot["900"].total_tokens
    text = game24.table(records)
    header = text.splitlines()[0]
    for col in ("method", "budget", "solved", "total tokens", "unbilled", "estimated"):
        assert col in header
    assert "| tot-bfs | - | 2/2 |" in text
    assert game24.frontier_line(records).startswith("frontier_billed: s67=none s68=none")


def test_frontier_is_the_smallest_share_reaching_the_count() -> None:
    def runs(method: str, budget: int | None, solved: int, tokens: int) -> list[RunRecord]:
        return [
            RunRecord(
                task="game24",
                item=str(i),
                method=method,
                budget=budget,
                correct=i < solved,
                prompt_tokens=tokens,
            )
            for i in range(100)
        ]

    records = (
        runs("tot-bfs", None, 69, 100)
        + runs("budget-search", 10, 66, 20)
        + runs("budget-search", 20, 67, 30)
        + runs("budget-search", 40, 68, 45)
    )
    assert game24.frontier(records, solved=67) == pytest.approx(30.0)
    assert game24.frontier_line(records) == "frontier_billed: s67=30.0 s68=45.0"
    assert game24.frontier(records, solved=69) is None


def test_run_rejects_unknown_methods_and_bad_budgets() -> None:
    with pytest.raises(ValueError, match=r"Unknown method\(s\) \['nope'\]"):
        game24.run(methods=["nope"], limit=1)
    with pytest.raises(ValueError, match="budget_fractions entry nan"):
        game24.run(methods=["cot-verify"], budget_fractions=[float("nan")], limit=1)


def test_budget_tokens_and_progress() -> None:
    seen: list[int] = []

    def progress(
        advance: int = 1, *, total: int | None = None, description: str | None = None
    ) -> None:
        seen.append(advance)

    records = game24.run(
        methods=["cot-verify"], budget_tokens=[2000, 3000], limit=1, workers=1, progress=progress
    )
    assert sorted({r.budget for r in records}) == [2000, 3000]
    assert sum(seen) == 2


def test_planner_and_anytime_rows_get_traces_e3_and_an_anytime_index() -> None:
    from budget_graph.efficiency.report import render_json

    methods = ["budget-search", "budget-proportional", "anytime-gen", "cot-verify"]
    records = game24.run(methods=methods, budget_tokens=[6_000], limit=1, workers=1)
    assert {r.method for r in records} == set(methods)
    for r in records:  # planner rows too: a trace read in total tokens
        assert r.anytime and len(r.anytime_usage) == len(r.anytime)
        assert r.anytime[-1][0] <= r.generated_tokens and r.anytime_usage[-1][0] <= r.prompt_tokens
    gen = next(r for r in records if r.method == "anytime-gen")
    assert gen.budget is None and gen.calls == gen.extra["samples"] == len(gen.anytime)
    assert gen.stop_reason in {"solved", "converged", "depth"}
    rows = render_json(records)["tasks"][0]["rows"]
    assert {row["method"] for row in rows} == set(methods)
    assert all(row["anytime_index"] is not None and row["e3"] is not None for row in rows)


def test_layer_capped_best_first_gives_up_below_the_floors() -> None:
    from budget_graph.bench.game24_tools import LayerCappedBestFirst
    from budget_graph.nodes.allocation import PolicyView
    from budget_graph.nodes.tree import Tree, TreeNode

    def node(i: str, depth: int, value: float | None, status: str = "open") -> TreeNode:
        parent = i.rsplit(".", 1)[0] if "." in i else None
        return TreeNode(id=i, parent=parent, depth=depth, value=value, reward=value, status=status)  # type: ignore[arg-type]

    policy = LayerCappedBestFirst(per_depth=1, expand_at=20, min_value=(0.0, 3.0, 20.0))
    tree = Tree([node("0", 0, 0.0, "expanded"), node("0.0", 1, 3.0), node("0.1", 1, 1.002)])
    sel = policy(PolicyView(tree=tree, max_depth=4))
    assert [(a.kind, a.node) for a in sel.actions] == [("expand", "0.0")]
    capped = Tree([*tree.values(), node("0.0", 1, 3.0, "expanded"), node("0.0.0", 2, 3.0)])
    sel = policy(PolicyView(tree=capped, max_depth=4))
    assert sel.actions == () and sel.reason == "exhausted"  # 0.1 is under its floor of 3
    pending = Tree([*capped.values(), node("0.0.1", 2, None)])
    sel = policy(PolicyView(tree=pending, max_depth=4))
    assert [(a.kind, a.ids) for a in sel.actions] == [("value", ("0.0.1",))]


def test_layer_capped_best_first_falls_back_shallowest_first_within_its_share() -> None:
    from budget_graph.bench.game24_tools import LayerCappedBestFirst
    from budget_graph.nodes.allocation import PolicyView
    from budget_graph.nodes.tree import Tree, TreeNode

    def node(i: str, depth: int, value: float | None, status: str = "open") -> TreeNode:
        parent = i.rsplit(".", 1)[0] if "." in i else None
        index = int(i.rsplit(".", 1)[-1])
        return TreeNode(
            id=i,
            parent=parent,
            depth=depth,
            index=index,
            value=value,
            reward=value,
            status=status,  # type: ignore[arg-type]
        )

    floors = {"per_depth": 8, "expand_at": 20, "min_value": (0.0, 3.0, 20.0)}
    policy = LayerCappedBestFirst(**floors, fallback_share=0.5)  # type: ignore[arg-type]
    tree = Tree(
        [
            node("0", 0, 0.0, "expanded"),
            node("0.0", 1, 3.0, "expanded"),
            node("0.0.0", 2, 2.001),  # below its floor of 20, the most valuable
            node("0.1", 1, 0.003),
            node("0.2", 1, 0.003),
            node("0.3", 1, 1.002),  # the judge's mix: likely + impossible x 2
            node("0.4", 1, 0.0),  # worth nothing: never a fallback
        ]
    )

    def act(p: LayerCappedBestFirst, t: Tree, spent: int, remaining: int | None) -> object:
        sel = p(PolicyView(tree=t, max_depth=4, spent=spent, remaining=remaining))
        return sel.reason or [(a.kind, a.node) for a in sel.actions]

    assert act(policy, tree, 400, 600) == [("expand", "0.3")]  # shallowest, then value
    assert act(policy, tree, 500, 500) == "exhausted"  # spent half its budget: gives up
    assert act(policy, tree, 0, None) == "exhausted"  # no budget, no share of it
    assert act(LayerCappedBestFirst(**floors), tree, 0, 1000) == "exhausted"  # type: ignore[arg-type]
    tried = Tree([*tree.values(), node("0.3", 1, 1.002, "expanded")])
    assert act(policy, tried, 400, 600) == [("expand", "0.1")]  # a tie: proposal order
    above = Tree([*tried.values(), node("0.3.0", 2, 60.0)])
    assert act(policy, above, 400, 600) == [("expand", "0.3.0")]  # above a floor again
    with pytest.raises(
        ValueError, match=re.escape("Invalid fallback_share: 1.5. Must be in (0, 1] or None")
    ):
        LayerCappedBestFirst(fallback_share=1.5)
