"""Date task: LtM prompt matches the recordings; extraction reproduces the recorded majority."""

from __future__ import annotations

from collections import Counter

import pytest

from budget_graph.replay import load_records
from budget_graph.tasks import SampledTask
from budget_graph.tasks.date import DateTask, extract_date, load_items

TASK = DateTask()
ITEMS = {i.id: i for i in TASK.items()}


def test_items_and_protocol() -> None:
    items = load_items()
    assert isinstance(TASK, SampledTask)
    assert len(items) == 359 and items[0].gold == "05/01/2021"


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Today is 05/01/2021. So the answer is 05/01/2021.\n\n", "05/01/2021"),
        ("So the answer is 6/18/2019.", "6/18/2019"),  # kept as written: not the gold format
        ("no final answer", None),
        ("So the answer is tomorrow.", None),
    ],
)
def test_extract_date(text: str, answer: str | None) -> None:
    assert extract_date(text) == answer


def test_exact_match() -> None:
    item = ITEMS["176"]
    assert item.gold == "06/18/2019"
    assert TASK.is_correct(item, "06/18/2019")
    assert not TASK.is_correct(item, "6/18/2019")
    assert not TASK.is_correct(item, None)


def test_recorded_prompts_and_majority() -> None:
    records = list(load_records("date_ltm"))
    assert len(records) == 359
    correct = samples = 0
    for rec in records:
        item = ITEMS[rec.item_id]
        assert rec.messages[0]["content"] == TASK.cot_prompt(item)
        assert rec.gold == item.gold and len(rec.completions) == 40
        answers = [TASK.extract_answer(item, c) for c in rec.completions]
        assert None not in answers
        assert Counter(answers).most_common(1)[0][0] == rec.meta["majority_answer"]
        correct += sum(TASK.is_correct(item, a) for a in answers)
        samples += len(answers)
    assert 0.76 < correct / samples < 0.78  # README: about 77% of single samples
