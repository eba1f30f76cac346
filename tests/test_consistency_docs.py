"""The python examples of docs/self-consistency.md run, and the example script works."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

from budget_graph._internal import observe

ROOT = Path(__file__).resolve().parents[1]


def test_self_consistency_doc_examples_run() -> None:
    text = (ROOT / "docs" / "self-consistency.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/self-consistency.md", "exec"), namespace)


def test_self_consistency_date_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    before = observe.observers()
    try:
        runpy.run_path(str(ROOT / "examples" / "self_consistency_date.py"), run_name="__main__")
    finally:
        for extra in set(observe.observers()) - set(before):
            observe.remove_observer(extra)
    out = capsys.readouterr().out
    assert "stop_reason=converged" in out and "stop_reason=budget" in out
    assert "stopped sampling: Adaptive-Consistency: P(the leading answer stays ahead)" in out
    assert "stopped sampling: the next chain no longer fits" in out
