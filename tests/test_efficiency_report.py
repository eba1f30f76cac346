import json

import pytest

from budget_graph.efficiency import RunRecord, write_jsonl
from budget_graph.efficiency.report import (
    COLUMNS,
    DEFAULT_TABLE,
    TableSpec,
    aggregate,
    render_json,
    render_markdown,
    render_report,
    render_table,
    report_main,
    write_report,
)
from budget_graph.efficiency.tables import extra_sum


def r(
    task,
    method,
    item,
    correct,
    prompt,
    gen,
    budget=None,
    calls=1,
    samples=None,
    anytime=(),
    **extra,
):
    if samples is not None:
        extra["samples"] = samples
    return RunRecord(
        task=task,
        item=item,
        method=method,
        budget=budget,
        correct=correct,
        prompt_tokens=prompt,
        generated_tokens=gen,
        calls=calls,
        extra=extra,
        anytime=list(anytime),
    )


@pytest.fixture
def records():
    return [
        # game24: tot solves 2/2 with 2000 total tokens each; planner@500 solves 1/2 with 500.
        r("game24", "tot-bfs", "1", True, 1500, 500, calls=10, anytime=[(1000, 0.0), (2000, 1.0)]),
        r("game24", "tot-bfs", "2", True, 1500, 500, calls=10, anytime=[(1200, 0.0), (2000, 1.0)]),
        r(
            "game24",
            "planner",
            "1",
            True,
            400,
            100,
            budget=500,
            calls=3,
            anytime=[(250, 0.5), (500, 1.0)],
        ),
        r(
            "game24",
            "planner",
            "2",
            False,
            400,
            100,
            budget=500,
            calls=3,
            overshoot=0,
            unrecorded=2,
        ),
        # date: fixed-40 2/2 with 400 generated each; window 1/2 with 50 generated each.
        r("date", "fixed-40", "q1", True, 2000, 400, samples=40),
        r("date", "fixed-40", "q2", True, 2000, 400, samples=40),
        r("date", "window", "q1", True, 300, 50, budget=100, samples=5),
        r("date", "window", "q2", False, 500, 50, budget=100, samples=7),
    ]


def test_aggregate_groups_in_first_appearance_order(records):
    groups = aggregate(records)
    assert [(g.task, g.label) for g in groups] == [
        ("game24", "tot-bfs"),
        ("game24", "planner @ 500"),
        ("date", "fixed-40"),
        ("date", "window @ 100"),
    ]
    tot, planner, fixed, window = groups
    assert (tot.n, tot.solved, tot.tokens("total"), tot.calls) == (2, 2, 4000, 20)
    assert planner.efficiency_1k("total") == pytest.approx(1.0)  # 1 / 1000 * 1000
    assert window.mean_samples == 6.0 and fixed.mean_samples == 40.0
    assert tot.mean_samples == 10.0  # no "samples" recorded: calls


def test_planner_table_markdown(records):
    md = render_markdown(records)
    lines = md.splitlines()
    head = lines.index("## game24")
    assert lines[head + 2] == (
        "| method | budget | solved | prompt tokens | completion tokens | total tokens "
        "| unbilled | estimated | correct per 1k visible tokens | correct per 1k total tokens "
        "| % of ToT tokens | max overshoot |"
    )
    assert lines[head + 4] == (
        "| tot-bfs | - | 2/2 | 3,000 | 1,000 | 4,000 | 4,000 | 0 | 2.000 | 0.5000 | 100.0% | 0 |"
    )
    assert lines[head + 5] == (
        "| planner | 500 | 1/2 | 800 | 200 | 1,000 | 1,000 | 2 | 5.000 | 1.000 | 25.0% | 0 |"
    )
    assert render_table([x for x in records if x.task == "game24"]) == "\n".join(
        lines[head + 2 : head + 6]
    )


def test_self_consistency_table_markdown(records):
    lines = render_markdown(records).splitlines()
    head = lines.index("## date")
    assert lines[head + 2] == (
        "| method | accuracy | solved | mean samples per question | visible generated tokens "
        "| reasoning tokens | prompt tokens | correct per 1k visible tokens "
        "| % of fixed-40 generated | max overshoot |"
    )
    assert lines[head + 4] == (
        "| fixed-40 | 100.0% | 2/2 | 40.00 | 800 | 0 | 4,000 | 2.500 | n/a | 0 |"
    )
    assert lines[head + 5] == (
        "| window @ 100 | 50.0% | 1/2 | 6.00 | 100 | 0 | 800 | 10.00 | n/a | 0 |"
    )


def test_rank_differences_without_a_paired_test_get_no_mark(records):
    md = render_markdown(records)
    assert "### Rankings: accuracy vs E (correct per 1k total tokens)" in md
    # tot-bfs is 1st by accuracy and 2nd by E, planner the reverse, on 2 items: not a finding.
    assert "so no row is marked" in md and "- tot-bfs" not in md
    data = render_json(records)
    assert all(not row["diverges"] for task in data["tasks"] for row in task["rankings"])


def test_divergence_marks_need_both_paired_tests():
    # 30 items: "big" right on 27 at 1,000 tokens each, "small" right on 12 at 100 each.
    recs = [r("x", "big", str(i), i < 27, 0, 1000) for i in range(30)]
    recs += [r("x", "small", str(i), i < 12, 0, 100) for i in range(30)]
    md = render_markdown(recs)
    assert "- big is more accurate (p = 6.1e-05) and small more efficient" in md
    rows = {row["label"]: row for row in render_json(recs)["tasks"][0]["rankings"]}
    assert rows["big"]["diverges_from"] == ["small"] and rows["small"]["diverges"]


def test_rankings_agree_message_and_ties():
    recs = [
        r("x", "a", "1", True, 0, 100),
        r("x", "b", "1", True, 0, 100),
        r("x", "c", "1", False, 0, 100),
    ]
    md = render_markdown(recs)
    assert "The accuracy and E rankings agree." in md
    rows = {row["label"]: row for row in render_json(recs)["tasks"][0]["rankings"]}
    assert (rows["a"]["accuracy_rank"], rows["b"]["accuracy_rank"], rows["c"]["accuracy_rank"]) == (
        1,
        1,
        3,
    )


def test_pareto_and_anytime_sections(records):
    md = render_markdown(records)
    pareto = md[md.index("### Pareto front: accuracy vs mean total tokens") :]
    assert "| planner @ 500 | 500.0 | 50.0% |" in pareto
    assert "| tot-bfs | 2000 | 100.0% |" in pareto
    # game24's grid is fixed for the task: 10 even budgets up to 20,000 total tokens
    anytime = md[md.index("### E³ and the Anytime Index (total tokens)") : md.index("## date")]
    assert "Q(2,000)" in anytime and "Q(20,000)" in anytime and "fixed for this task" in anytime
    # every row gets an index, traced or not. planner@500: its traced run cannot be read in
    # total tokens (no anytime_usage), so it counts at its final 500 total: Q(2,000) = 0.5;
    # E³ per 1k = 0.5² / 500 * 1000; AI per 1k = 0.5 / 20,000 * 1000; on the log grid
    # (20,000/512, ..., 10,000, 20,000) Q rises by 0.5 between 312.5 and 625: 0.5/312.5/10.
    assert "| planner @ 500 | 0.5000 | 0.500 |" in anytime
    assert anytime.rstrip().endswith("| 0.500 | 0.02500 | 0.1600 |")
    assert "### E³ and the Anytime Index (visible tokens)" in md[md.index("## date") :]


def test_json_report_raw_numbers(records):
    data = json.loads(render_report(records, fmt="json"))
    assert data["runs"] == 8
    game24 = data["tasks"][0]
    assert game24["task"] == "game24" and game24["tokens"] == "total"
    tot = game24["rows"][0]
    assert (tot["label"], tot["solved"], tot["total_tokens"], tot["e_total_1k"]) == (
        "tot-bfs",
        2,
        4000,
        0.5,
    )
    assert tot["total_share_of_tot-bfs"] == 1.0 and game24["rows"][1]["unrecorded_sum"] == 2
    assert tot["accuracy_ci"] == [1.0, 1.0]
    assert [p["label"] for p in game24["pareto"]] == ["planner @ 500", "tot-bfs"]
    # E³ = A² / mean tokens; AI on the task's fixed even grid telescopes to Q(top) / top
    assert tot["e3"] == pytest.approx(1.0**2 / 2000)
    assert tot["anytime_index"] == pytest.approx(1.0 / 20_000)
    assert (
        game24["anytime_grid"]["budgets"][-1] == 20_000 and game24["anytime_grid"]["fixed_for_task"]
    )
    assert (tot["visible_tokens"], tot["hidden_tokens"]) == (1000, 0)


def test_custom_spec_and_errors(records):
    spec = TableSpec(
        columns=("config", "runs", "calls", "accuracy_ci", extra_sum("samples", "samples")),
        tokens="total",
    )
    lines = render_markdown(records, specs={"date": spec}).splitlines()
    head = lines.index("## date")
    assert lines[head + 2] == "| method | runs | calls | accuracy 95% CI | samples |"
    assert lines[head + 4] == "| fixed-40 | 2 | 2 | [100.0%, 100.0%] | 80 |"
    assert lines[head + 5] == "| window @ 100 | 2 | 2 | [0.0%, 100.0%] | 12 |"
    other = render_markdown([r("unknown", "m", "1", True, 1, 1)])
    assert "| " + " | ".join(COLUMNS[c].header for c in DEFAULT_TABLE.columns) + " |" in other
    with pytest.raises(ValueError, match=r"Unknown columns: \['nope'\]"):
        TableSpec(columns=("method", "nope"))
    with pytest.raises(ValueError, match="Invalid tokens: 'cost'"):
        TableSpec(columns=("method",), tokens="cost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Invalid fmt: 'html'"):
        render_report(records, fmt="html")


def test_empty_report():
    assert render_markdown([]).startswith("# Efficiency report\n\n0 runs over 0 task(s).")


def test_write_report_and_report_main_reproduce_the_table(records, tmp_path, capsys):
    paths = write_report(tmp_path / "bench", records, plots=False)
    assert sorted(paths) == ["report.json", "report.md", "results.jsonl"]
    written = (tmp_path / "bench" / "report.md").read_text()
    assert written == render_markdown(records)
    text = report_main(tmp_path / "bench" / "results.jsonl")
    assert text == written
    assert capsys.readouterr().out == written
    assert report_main(paths["results.jsonl"], echo=False) == written
    assert capsys.readouterr().out == ""


def test_report_main_with_out_writes_report_not_records(records, tmp_path):
    src = write_jsonl(tmp_path / "runs.jsonl", records)
    report_main(src, out=tmp_path / "out", echo=False)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "report.md" in names and "results.jsonl" not in names
    assert "game24_pareto.png" in names
