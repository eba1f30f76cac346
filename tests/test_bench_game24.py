"""Tests for the Game of 24 benchmark runner (on the shipped replay)."""

from __future__ import annotations

import pytest

from budget_graph.bench import game24
from budget_graph.efficiency import RunRecord
from budget_graph.tasks.base import Item

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


def test_run_all_methods_on_two_puzzles_with_zero_overshoot() -> None:
    records = game24.run(budgets=[0.5], limit=2, workers=1)
    assert all(isinstance(r, RunRecord) for r in records)
    by = {(r.method, r.budget) for r in records}
    budget = round(0.5 * game24.TOT_MEAN_TOKENS)
    assert by == {("tot-bfs", None), ("budget-search", budget),
                  ("tot-bfs-truncated", budget), ("cot-verify", budget)}
    assert len(records) == 8
    for r in records:
        assert r.extra["overshoot"] == 0
        if r.budget is not None:
            assert r.total_tokens <= r.budget
    tot = {r.item: r for r in records if r.method == "tot-bfs"}
    ours = {r.item: r for r in records if r.method == "budget-search"}
    assert tot["900"].correct and ours["900"].correct
    assert ours["900"].stop_reason == "solved"
    assert ours["900"].total_tokens < tot["900"].total_tokens
    text = game24.table(records)
    header = text.splitlines()[0]
    for col in ("method", "budget", "solved", "prompt tokens", "completion tokens",
                "total tokens", "correct per 1k total tokens"):
        assert col in header
    assert "| tot-bfs | - | 2/2 |" in text


def test_run_rejects_unknown_methods() -> None:
    with pytest.raises(ValueError, match=r"Unknown method\(s\) \['nope'\]"):
        game24.run(methods=["nope"], limit=1)


def test_budgets_accept_fractions_and_token_counts() -> None:
    seen: list[int] = []

    def progress(advance: int = 1, *, total: int | None = None,
                 description: str | None = None) -> None:
        seen.append(advance)

    records = game24.run(methods=["cot-verify"], budgets=[0.1, 3000], limit=1, workers=1,
                         progress=progress)
    assert sorted({r.budget for r in records}) == [round(0.1 * game24.TOT_MEAN_TOKENS), 3000]
    assert sum(seen) == 2
