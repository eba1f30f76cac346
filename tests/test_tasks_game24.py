"""Game of 24 task: prompts match the recordings, the verifier agrees with every recorded flag."""

from __future__ import annotations

import gzip
import json

import pytest

from budget_graph.replay import load_records
from budget_graph.tasks import SampledTask, SearchTask
from budget_graph.tasks.game24 import (
    Game24Task,
    current_numbers,
    evaluate_expression,
    load_items,
    verify_expression,
)

TASK = Game24Task()
ITEMS = {i.id: i for i in TASK.items()}


def test_protocols_and_items() -> None:
    assert isinstance(TASK, SampledTask) and isinstance(TASK, SearchTask)
    items = load_items()
    assert [i.id for i in items] == [str(i) for i in range(900, 1000)]
    assert items[0].input == "4 5 6 10"


@pytest.mark.parametrize(
    ("expr", "ok"),
    [
        ("(4 * 5) + (10 - 6)", True),
        ("4 * 5 + 10 - 6", True),
        ("(10 - 6) * 5 + 4", True),  # = 24, each number once
        ("4 * 6", False),  # misses numbers
        ("(4 * 5) + (10 - 6) + 0", False),  # extra number
        ("__import__('os')", False),
        ("4 ** 5 - 10 - 6", False),  # power is not allowed
        ("(10 - 6) / (5 - 5) + 4", False),  # division by zero
    ],
)
def test_verify_expression(expr: str, ok: bool) -> None:
    assert verify_expression("4 5 6 10", expr) is ok


def test_evaluate_expression_is_exact() -> None:
    assert evaluate_expression("8 / (3 - 8 / 3)") is not None
    value, used = evaluate_expression("8 / (3 - 8 / 3)")  # type: ignore[misc]
    assert value == 24 and sorted(used) == [3, 3, 8, 8]


@pytest.mark.parametrize("dataset", ["game24_cot", "game24_standard"])
def test_verifier_agrees_with_every_recorded_flag(dataset: str) -> None:
    disagreements = []
    total = 0
    for rec in load_records(dataset):
        item = ITEMS[rec.item_id]
        for text, flag in zip(rec.completions, rec.meta["correct"], strict=True):
            total += 1
            if TASK.is_correct(item, TASK.extract_answer(item, text)) != bool(flag):
                disagreements.append((rec.item_id, text))
    assert total == 10_000
    assert disagreements == []


def test_recorded_requests_are_our_prompts() -> None:
    for rec in load_records("game24_cot"):
        assert rec.messages[0]["content"] == TASK.cot_prompt(ITEMS[rec.item_id])
    for rec in load_records("game24_standard"):
        assert rec.messages[0]["content"] == TASK.standard_prompt(ITEMS[rec.item_id])
    for rec in load_records("game24_tot"):
        item, state = ITEMS[rec.item_id], rec.meta["state"]
        prompt = TASK.propose_prompt(item, state) if rec.kind == "propose" else \
            TASK.value_prompt(item, state)
        assert rec.messages[0]["content"] == prompt


def test_recorded_values_reparse_to_the_logged_values() -> None:
    for rec in load_records("game24_tot"):
        if rec.kind == "value":
            item, state = ITEMS[rec.item_id], rec.meta["state"]
            assert TASK.value(item, state, list(rec.completions)) == rec.meta["value"]


def test_final_states_verified_like_the_log(tot_log: list[dict]) -> None:
    solved = 0
    for puzzle in tot_log:
        item = ITEMS[str(puzzle["idx"])]
        flags = [TASK.verify(item, y) for y in puzzle["ys"]]
        assert flags == [bool(i["r"]) for i in puzzle["infos"]]
        solved += any(flags)
    assert solved == 69


@pytest.fixture(scope="module")
def tot_log() -> list[dict]:
    from pathlib import Path

    path = Path("/work/shared/replay/game24") / (
        "gpt-4_0.7_propose1_value3_greedy5_start900_end1000.json.gz")
    if not path.exists():
        pytest.skip("source log not available")
    return json.load(gzip.open(path))


def test_state_helpers() -> None:
    item = ITEMS["900"]
    assert current_numbers("4 + 5 = 9 (left: 6 9 10)\n") == "6 9 10"
    kids = TASK.parse_proposals(item, "", "4 + 5 = 9 (left: 6 9 10)\n5 * 6 = 30 (left: 4 10 30)")
    assert kids == ["4 + 5 = 9 (left: 6 9 10)\n", "5 * 6 = 30 (left: 4 10 30)\n"]
    state = "4 * 5 = 20 (left: 6 10 20)\n10 - 6 = 4 (left: 4 20)\n4 + 20 = 24 (left: 24)\n"
    assert TASK.propose_prompt(item, state).endswith("Input: 4 5 6 10\nSteps:" + state)
    final = state + "Answer: (4 * 5) + (10 - 6) = 24\n"
    assert TASK.answer(item, final) == "(4 * 5) + (10 - 6)" and TASK.verify(item, final)
    assert TASK.value(item, final, ["sure", "x\nsure", "impossible"]) == 40.001
    dead = state.replace("(left: 24)", "(left: 25)") + "25 - 1 = 24 (left: 24)\n"
    assert TASK.is_dead_end(dead) and TASK.value(item, dead, ["sure"] * 3) == 0.0
    assert TASK.parse_value(item, state, "no label here") is None
