"""build_anytime on the date replay: progressive max_tokens, its stops, and its hard cap."""

from __future__ import annotations

import re

import pytest

from budget_graph.anytime import answer_complete, build_anytime
from budget_graph.budget import Budget
from budget_graph.replay import ReplayChatModel
from budget_graph.tasks.date import DateTask

TASK = DateTask()


def _model() -> ReplayChatModel:
    return ReplayChatModel(datasets=["date_ltm"])


def test_each_step_raises_the_output_cap_by_step_tokens() -> None:
    item = TASK.items()[4]
    out = build_anytime(_model(), task=TASK, step_tokens=50, max_steps=3).invoke({"item": item})
    spent = [p.output_tokens for p in out["trace"]]
    steps = [b - a for a, b in zip([0, *spent], spent, strict=False)]
    assert steps[:2] == [50, 100]  # the recorded chains are longer: cut at 50, then 100
    assert out["stop_reason"] == "depth" and out["step"] == 3


def test_stop_at_ends_on_the_first_good_enough_answer() -> None:
    item = TASK.items()[4]

    def correct(_item, answer, _text, _finish) -> float:  # type: ignore[no-untyped-def]
        return 1.0 if TASK.is_correct(item, answer) else 0.0

    out = build_anytime(_model(), task=TASK, quality=correct, stop_at=1.0).invoke({"item": item})
    assert out["stop_reason"] == "solved" and TASK.is_correct(item, out["answer"])
    assert out["trace"][-1].quality == 1.0 and out["spend"].calls == len(out["trace"])


def test_a_refused_step_ends_with_budget_and_the_best_answer_so_far() -> None:
    item = TASK.items()[0]
    app = build_anytime(_model(), task=TASK, budget=Budget(max_tokens=1_600))
    out = app.invoke({"item": item})
    # one prompt (about 1,354 tokens) and its chain fit; a second prompt does not
    assert out["stop_reason"] == "budget" and out["spend"].calls == 1
    assert out["answer"] == out["trace"][-1].answer is not None
    assert app.last_meter.spent <= 1_600


def test_default_quality_needs_a_complete_parsable_answer() -> None:
    item = TASK.items()[0]
    assert answer_complete(item, "05/01/2021", "...", "stop") == 1.0
    assert answer_complete(item, "05/01/2021", "...", "length") == 0.0
    assert answer_complete(item, None, "...", "stop") == 0.0


@pytest.mark.parametrize(("field", "value"), [("step_tokens", 0), ("max_steps", 0)])
def test_bad_arguments_are_named(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{field} must be >= 1 (got {value})")):
        build_anytime(_model(), task=TASK, **{field: value})
