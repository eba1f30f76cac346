"""The date benchmark runner on the first questions (full run: ``budget-graph bench date``)."""

from __future__ import annotations

import re

import pytest

from budget_graph.bench import date as bench
from budget_graph.replay import load_records

LIMIT = 4


@pytest.fixture(scope="module")
def records() -> list:
    return bench.run(limit=LIMIT, workers=1)


def test_every_method_and_budget_runs_each_question(records: list) -> None:
    expected = sum(len(bench.BUDGETS) if s.budgeted else 1 for s in bench.METHODS.values())
    assert len(records) == expected * LIMIT
    assert {r.method for r in records} == set(bench.METHODS)
    assert {r.budget for r in records if r.method == "sc-budget"} == set(bench.BUDGETS)
    assert all(r.budget is None for r in records if r.method != "sc-budget")


def test_fixed_40_is_the_original_majority_vote(records: list) -> None:
    majority = {rec.item_id: rec.meta["majority_answer"] for rec in load_records("date_ltm")}
    fixed = [r for r in records if r.method == "sc-fixed40"]
    assert [r.answer for r in fixed] == [majority[r.item] for r in fixed]
    assert all(r.extra["samples"] == 40 and r.calls == 4 for r in fixed)


def test_budgeted_runs_never_overshoot_and_spend_what_fits(records: list) -> None:
    for r in records:
        if r.budget is not None:
            assert r.extra["overshoot"] == 0 and r.total_tokens <= r.budget
    tight = [r for r in records if r.budget == 1_800]
    assert all(r.extra["samples"] == 1 and r.stop_reason == "budget" for r in tight)


def test_anytime_traces_end_at_the_final_answer(records: list) -> None:
    for r in records:
        if r.stop_reason == "budget" and r.method == "anytime-gen":
            continue  # a refused step leaves the last paid point
        assert r.anytime and r.anytime[-1] == (r.generated_tokens, float(r.correct))
        assert r.anytime_usage[-1] == (r.prompt_tokens, r.reasoning_tokens)
        assert len(r.anytime_usage) == len(r.anytime)


def test_anytime_generation_steps_up_max_tokens_and_stops_on_relative_gain(records: list) -> None:
    runs = [r for r in records if r.method == "anytime-gen"]
    assert len(runs) == LIMIT and all(r.budget is None for r in runs)
    for r in runs:
        # one call per step, the prompt paid each time, at most 100 * k tokens at step k
        assert r.calls == r.extra["samples"] == len(r.anytime) >= 2
        spent = [t for t, _ in r.anytime]
        steps = [b - a for a, b in zip([0, *spent], spent, strict=False)]
        assert all(0 < s <= 100 * (k + 1) for k, s in enumerate(steps))
        # the default quality (a complete, parsable answer) reached 1 and then did not grow
        assert r.stop_reason == "converged"


def test_sc_budget_anytime_index_does_not_depend_on_the_other_rows(records: list) -> None:
    from budget_graph.efficiency.report import render_json

    alone = bench.run(methods=["sc-budget"], limit=LIMIT, workers=1)

    def indices(recs: list) -> dict:
        rows = render_json(recs)["tasks"][0]["rows"]
        return {row["label"]: row["anytime_index"] for row in rows if row["method"] == "sc-budget"}

    full, only = indices(records), indices(alone)
    assert len(full) == len(bench.BUDGETS) and full == only
    assert all(v is not None and v > 0 for v in full.values())


def test_table_has_a_row_per_method_and_budget(records: list) -> None:
    text = bench.table(records)
    header = text.splitlines()[0]
    for column in (
        "method",
        "accuracy",
        "mean samples per question",
        "visible generated tokens",
        "reasoning tokens",
        "prompt tokens",
        "correct per 1k visible",
    ):
        assert column in header
    rows = [line for line in text.splitlines() if line.startswith(("| sc-", "| anytime-"))]
    assert len(rows) == len(bench.METHODS) - 1 + len(bench.BUDGETS)
    fixed40 = next(line for line in rows if line.startswith("| sc-fixed40 |"))
    assert "| 40.00 |" in fixed40 and "| 100.0% |" in fixed40
    assert f"reproduces the recorded majority answer on {LIMIT}/{LIMIT}" in text


def test_fractional_budgets_scale_the_fixed_40_spend() -> None:
    recs = bench.run(methods=["sc-budget"], budgets=[0.25], limit=1, workers=1)
    assert [r.budget for r in recs] == [round(0.25 * bench.reference_tokens())]
    assert 8_000 < bench.reference_tokens() < 10_000  # 4 prompts of ~1,360 + ~3,392 generated


def test_unknown_methods_are_named() -> None:
    with pytest.raises(ValueError, match=re.escape("Unknown method(s) ['sc-magic']")):
        bench.run(methods=["sc-magic"])


def test_progress_is_reported_per_question() -> None:
    calls: list[dict] = []
    bench.run(methods=["sc-fixed5"], limit=2, workers=1, progress=lambda **kw: calls.append(kw))
    assert sum(c["advance"] for c in calls) == 2 and calls[-1]["total"] == 2


@pytest.mark.integration
def test_worker_processes_give_the_same_records() -> None:
    kwargs = {"methods": ["sc-window5", "sc-budget"], "budgets": [2_400], "limit": 3}
    assert bench.run(**kwargs, workers=2) == bench.run(**kwargs, workers=1)
