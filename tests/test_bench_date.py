"""The date benchmark runner on the first questions (full run: ``budget-graph bench date``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from budget_graph.bench import date as bench
from budget_graph.cli import main
from budget_graph.replay import load_records
from budget_graph.tasks.base import load_items
from budget_graph.tasks.date import DateTask, extract_date

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
    # 1,800 tokens: one prompt (~1,370) and two chains at the recording's cap (169 each).
    tight = [r for r in records if r.budget == 1_800]
    assert all(r.extra["samples"] == 2 and r.stop_reason == "budget" for r in tight)


def test_the_chain_cap_is_the_longest_recorded_completion() -> None:
    from budget_graph.accounting import count_tokens

    recs = list(load_records("date_ltm"))
    longest = max(count_tokens(c, model=r.model) for r in recs for c in r.completions)
    assert bench.load_recording(bench.RECORDINGS).cap == longest == 169


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


def test_fractional_budgets_scale_the_fixed_40_spend(records: list) -> None:
    items = DateTask().items()[:LIMIT]
    ref = bench.reference_tokens(items=items)
    fixed = [r for r in records if r.method == "sc-fixed40"]
    assert ref == sum(r.total_tokens for r in fixed) / LIMIT  # what fixed 40 measurably pays
    recs = bench.run(methods=["sc-budget"], budget_fractions=[0.25], limit=LIMIT, workers=1)
    assert {r.budget for r in recs} == {round(0.25 * ref)}
    assert 8_000 < bench.reference_tokens() < 10_000  # 4 prompts of ~1,366 + ~3,392 generated
    with pytest.raises(ValueError, match="not both"):
        bench.run(budget_tokens=[2_000], budget_fractions=[0.5], limit=1)


def test_unknown_methods_are_named() -> None:
    with pytest.raises(ValueError, match=re.escape("Unknown method(s) ['sc-magic']")):
        bench.run(methods=["sc-magic"])


def test_progress_is_reported_per_question() -> None:
    calls: list[dict] = []
    bench.run(methods=["sc-fixed5"], limit=2, workers=1, progress=lambda **kw: calls.append(kw))
    assert sum(c["advance"] for c in calls) == 2 and calls[-1]["total"] == 2


@pytest.mark.integration
def test_worker_processes_give_the_same_records() -> None:
    kwargs = {"methods": ["sc-window5", "sc-budget"], "budget_tokens": [2_400], "limit": 3}
    assert bench.run(**kwargs, workers=2) == bench.run(**kwargs, workers=1)


# A made-up date-style task and recording brought by a user: two questions, three recorded
# chains each (one of them longer than the old fixed 256-token cap), a set of gold answers.
LONG = "Step. " * 300 + "So the answer is 01/02/2020."


def _user_files(tmp_path: Path) -> tuple[Path, Path]:
    from budget_graph.tasks.base import Item

    task = MiniDates()
    chains = {
        "q1": ["So the answer is 01/02/2020.", LONG, "So the answer is 01/03/2020."],
        "q2": ["So the answer is 12/31/1999.", "So the answer is 12/31/1999.", "no idea"],
    }
    rows = [  # the replay format (docs/replay-format.md), written as a user would
        {
            "dataset": "mine",
            "task": "mini",
            "item_id": qid,
            "kind": "cot",
            "request": {"messages": [{"role": "user", "content": task.cot_prompt(Item(qid, q))}]},
            "completions": chains[qid],
            "model": "gpt-4",
        }
        for qid, q in QUESTIONS.items()
    ]
    rec = tmp_path / "mine.jsonl"
    rec.write_text("".join(json.dumps(row) + "\n" for row in rows))
    items = tmp_path / "items.jsonl"
    items.write_text(
        json.dumps({"id": "q1", "input": QUESTIONS["q1"], "gold": ["01/02/2020", "1/2/2020"]})
        + "\n"
        + json.dumps({"id": "q2", "input": QUESTIONS["q2"], "gold": "01/01/2000"})
        + "\n"
    )
    return rec, items


QUESTIONS = {"q1": "What is the day after 01/01/2020?", "q2": "What is the day before 2000?"}


class MiniDates:
    """A user's task: its own prompt; answers are dates, checked against the gold set."""

    name = "mini"

    def items(self) -> list:
        return []

    def cot_prompt(self, item: Any) -> str:
        return f"Q: {item.input}\nA: Let's think step by step."

    def extract_answer(self, item: Any, completion: str) -> str | None:
        return extract_date(completion)

    def is_correct(self, item: Any, answer: str | None) -> bool:
        return item.accepts(answer)


def test_a_users_recording_items_and_task_run_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec, items = _user_files(tmp_path)
    recording = bench.load_recording((str(rec),))
    assert recording.cap > 256 and recording.samples and set(recording.samples.values()) == {3}
    out = tmp_path / "out"
    code = main(
        [
            "bench",
            "date",
            "--recording",
            str(rec),
            "--items",
            str(items),
            "--task",
            "tests.test_bench_date:MiniDates",
            "--methods",
            "sc-fixed40,sc-budget",
            "--budget-tokens",
            "5000",
            "--out",
            str(out),
            "--no-plots",
            "--quiet",
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    fixed = {r["item"]: r for r in results if r["method"] == "sc-fixed40"}
    # Every recorded chain, none cut: the long one is served whole (cap from the recording).
    assert {k: r["extra"]["samples"] for k, r in fixed.items()} == {"q1": 3, "q2": 3}
    assert fixed["q1"]["generated_tokens"] > 256
    # q1: votes 01/02, 01/02, 01/03 -> 01/02/2020, one of its gold set; q2 votes wrong.
    assert fixed["q1"]["correct"] and fixed["q1"]["answer"] == "01/02/2020"
    assert not fixed["q2"]["correct"] and fixed["q2"]["answer"] == "12/31/1999"
    budgeted = [r for r in results if r["method"] == "sc-budget"]
    assert {r["budget"] for r in budgeted} == {5000}
    assert all(r["extra"]["overshoot"] == 0 for r in budgeted)
    assert "| sc-fixed40 |" in stdout and (out / "report.md").exists()


def test_a_users_recording_with_fractions_and_the_python_runner(tmp_path: Path) -> None:
    rec, items_path = _user_files(tmp_path)
    items = load_items(items_path)
    task = MiniDates()
    ref = bench.reference_tokens([rec], items, task)
    recs = bench.run(methods=["sc-fixed40"], recordings=[rec], items=items, task=task, workers=1)
    assert ref == sum(r.total_tokens for r in recs) / len(items)
    halves = bench.run(
        methods=["sc-budget"],
        budget_fractions=[0.5],
        recordings=[rec],
        items=items,
        task=task,
        workers=1,
    )
    assert {r.budget for r in halves} == {round(0.5 * ref)}


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--task", "tests.test_bench_date:Nope"], "has no attribute 'Nope'"),
        (["--items", "ITEMS_OTHER"], "have no recorded request"),
        (["--reference", "sc-fixed40"], "does not take --reference"),
    ],
)
def test_bad_user_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    rec, items = _user_files(tmp_path)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "zz", "input": "an unrecorded question"}) + "\n")
    extra = [str(other) if e == "ITEMS_OTHER" else e for e in extra]
    argv = ["bench", "date", "--recording", str(rec), "--task", "tests.test_bench_date:MiniDates"]
    if "--items" not in extra:
        argv += ["--items", str(items)]
    if "--task" in extra:
        argv = argv[:-2]
    code = main([*argv, *extra, "--out", str(tmp_path / "o"), "--quiet", "--no-plots"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()
