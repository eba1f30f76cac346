"""The ``budget-graph`` CLI: bad input is one line and exit 2 before any work; a fast --help."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from budget_graph._internal.cli_args import UsageError, runner_kwargs
from budget_graph.cli import build_parser, main, parse_budget_fractions, parse_budget_tokens


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "chess"], "invalid choice: 'chess'"),
        (["bench", "--budget-tokens", "lots"], "--budget-tokens entry 'lots'"),
        (["bench", "--budget-tokens", "1.5"], "--budget-tokens entry '1.5'"),
        (["bench", "--budget-tokens=-5"], "--budget-tokens entry '-5': must be >= 1"),
        (["bench", "--budget-fractions", "nan"], "--budget-fractions entry 'nan'"),
        (["bench", "--budget-fractions", "inf"], "--budget-fractions entry 'inf'"),
        (["bench", "--budget-fractions", "0.5,"], "comma-separated"),
        (["bench", "--budget-tokens", "100", "--budget-fractions", "0.5"], "not both"),
        (["bench", "--budgets", "8"], "use --budget-tokens or --budget-fractions"),
        (["bench", "--limit", "0"], "--limit must be >= 1 (got 0)"),
        (["bench", "--limit", "abc"], "invalid int value: 'abc'"),
        (["bench", "game24", "--methods", "nope"], "unknown method(s) 'nope'"),
        (["bench", "game24", "--reference", "cot-verify"], "must be an unbudgeted method"),
        (["bench", "all", "--items", "x.jsonl"], "need one benchmark"),
        (["bench", "game24", "--recording", "/nonexistent.jsonl"], "no such file"),
        (["bench", "date", "--recording", __file__], "not valid JSON"),
        (["serve-replay", "--port", "70000"], "--port must be 0..65535"),
        (["convert", "tot", "/nonexistent.json", "--out", "x.jsonl"], "no such file"),
    ],
)
def test_bad_bench_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, err = _run(capsys, *argv, *(["--out", "/tmp/bg-cli-never"] if argv[0] == "bench" else []))
    assert code == 2
    assert needle in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not Path("/tmp/bg-cli-never").exists()


def test_runner_kwargs_pass_what_the_runner_takes_and_reject_the_rest() -> None:
    def run(*, budget_tokens: list[int] | None = None, items: Any = None) -> None: ...

    def old_run(*, budgets: list[int] | None = None) -> None: ...

    wanted = {"budget_tokens": [4000], "items": None}
    assert runner_kwargs("x", SimpleNamespace(run=run), wanted) == {"budget_tokens": [4000]}
    # A runner that only takes the removed ``budgets`` gets no translation.
    with pytest.raises(UsageError, match=re.escape("bench x does not take --budget-tokens")):
        runner_kwargs("x", SimpleNamespace(run=old_run), wanted)


def test_bad_out_is_caught_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    code, err = _run(capsys, "bench", "game24", "--out", str(afile))
    assert code == 2 and "exists and is not a directory" in err
    code, err = _run(capsys, "bench", "game24", "--out", str(afile / "sub"))
    assert code == 2 and "is not a directory" in err


def test_report_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = _run(capsys, "report", str(tmp_path))
    assert code == 2 and "is a directory" in err and len(err.splitlines()) == 1
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x00\xff not json\n")
    code, err = _run(capsys, "report", str(garbage))
    assert code == 2 and "garbage.jsonl" in err and len(err.splitlines()) == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, err = _run(capsys, "report", str(empty))
    assert code == 2 and "no run records" in err
    code, err = _run(capsys, "report", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "missing.jsonl" in err


def test_budget_parsers() -> None:
    assert parse_budget_tokens("4000, 8_000") == [4000, 8000]
    assert parse_budget_fractions("0.25,50%") == [0.25, 0.5]


def _actions(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    out = []
    for action in parser._actions:  # argparse has no public accessor for its actions
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [(f"{name} {n}", a) for n, a in _actions(sub)]
        elif not isinstance(action, argparse._HelpAction):
            out.append((action.dest, action))
    return out


def test_every_option_has_help_text() -> None:
    missing = [
        name
        for name, action in _actions(build_parser())
        if not action.help and action.help != argparse.SUPPRESS
    ]
    assert missing == []


def test_help_imports_nothing_heavy() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "budget_graph.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "bench" in proc.stdout
    heavy = [
        ln
        for ln in proc.stderr.splitlines()
        if any(m in ln for m in ("langgraph", "langchain", "opentelemetry"))
    ]
    assert heavy == []
