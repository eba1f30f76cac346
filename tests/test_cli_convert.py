"""``budget-graph convert``: the shipped recordings byte for byte, and a user's own log run
through ``budget-graph bench --recording --items``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from budget_graph.cli import main
from budget_graph.replay import data_dir, load_records
from budget_graph.tasks.base import Item, TaskError, load_items

RAW = Path(__file__).resolve().parents[2] / "shared" / "replay"
if not RAW.exists():
    RAW = Path("/work/shared/replay")


@pytest.mark.skipif(not (RAW / "game24").is_dir(), reason="raw logs (../shared/replay) absent")
def test_convert_regenerates_the_shipped_recordings_byte_for_byte(tmp_path: Path) -> None:
    assert main(["convert", "shipped", str(RAW), "--out", str(tmp_path)]) == 0
    shipped = data_dir()
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(made) == 11
    for rel in made:
        assert (tmp_path / rel).read_bytes() == (shipped / rel).read_bytes(), rel


# A made-up puzzle and a two-branch ToT BFS log of it, in the original log's format.
S1 = "1 + 2 = 3 (left: 3 3 4)\n"
S1B = "4 - 1 = 3 (left: 2 3 3)\n"
S2 = S1 + "3 + 3 = 6 (left: 4 6)\n"
S3 = S2 + "4 * 6 = 24 (left: 24)\n"
S4 = S3 + "Answer: (1 + 2 + 3) * 4 = 24\n"
LOG = [
    {
        "idx": 0,
        "steps": [
            {
                "step": 0,
                "x": "1 2 3 4",
                "ys": [""],
                "new_ys": [S1, S1B],
                "values": [21.0, 1.0],
                "select_new_ys": [S1, S1B],
            },
            {
                "step": 1,
                "x": "1 2 3 4",
                "ys": [S1],
                "new_ys": [S2],
                "values": [60.0],
                "select_new_ys": [S2],
            },
            {
                "step": 2,
                "x": "1 2 3 4",
                "ys": [S2],
                "new_ys": [S3],
                "values": [60.0],
                "select_new_ys": [S3],
            },
            {
                "step": 3,
                "x": "1 2 3 4",
                "ys": [S3],
                "new_ys": [S4],
                "values": [60.0],
                "select_new_ys": [S4],
            },
        ],
        "infos": [{"r": 1}],
    }
]


def test_a_users_tot_log_converts_and_benchmarks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "my_tot_log.json"
    log.write_text(json.dumps(LOG))
    rec = tmp_path / "my.jsonl.gz"
    prompts = str(data_dir() / "game24" / "prompts.json")
    assert (
        main(
            [
                "convert",
                "tot",
                str(log),
                "--prompts",
                prompts,
                "--out",
                str(rec),
                "--dataset",
                "mine",
            ]
        )
        == 0
    )
    rows = list(load_records(rec))
    assert [r.kind for r in rows].count("propose") == 4 and {r.dataset for r in rows} == {"mine"}
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "0", "input": "1 2 3 4"}) + "\n")
    out = tmp_path / "out"
    capsys.readouterr()
    code = main(
        [
            "bench",
            "game24",
            "--recording",
            str(rec),
            "--items",
            str(items),
            "--methods",
            "tot-bfs,budget-search,tot-bfs-1",
            "--budget-tokens",
            "20000",
            "--out",
            str(out),
            "--no-plots",
            "--quiet",
            "--workers",
            "1",
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0
    assert "| budget-search | 20,000 | 1/1 |" in stdout
    assert "| tot-bfs-1 | - | 1/1 |" in stdout
    # The unexpanded sibling S1B: budget-search never needs it, so nothing is estimated.
    assert stdout.strip().splitlines()[-1] == "frontier_billed: s67=none s68=none"
    assert (out / "report.md").exists()


def test_date_bench_takes_a_recording_by_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rec = data_dir() / "recordings" / "date_ltm.jsonl.gz"
    argv = ["bench", "date", "--recording", str(rec), "--methods", "sc-fixed5", "--limit", "1"]
    code = main([*argv, "--out", str(tmp_path / "o"), "--no-plots", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and "| sc-fixed5 |" in captured.out, captured.err


def test_items_with_a_set_of_gold_answers(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        '{"id": "a", "input": "q", "gold": ["01/02/2020", "1/2/2020"]}\n'
        '{"id": "b", "input": "r", "gold": "x"}\n'
    )
    a, b = load_items(path)
    assert a.golds == ("01/02/2020", "1/2/2020") and a.accepts("1/2/2020")
    assert not a.accepts("02/01/2020") and b.accepts("x") and not Item("c", "s").accepts("x")
    path.write_text('{"id": "a", "input": "q", "gold": 5}\n')
    with pytest.raises(TaskError, match="'gold' must be a string"):
        load_items(path)
