import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import budget_graph

ROOT = Path(__file__).resolve().parents[1]
DOCS_RUN = ["quickstart.md", "concepts.md"]


def test_every_exported_name_imports():
    for name in budget_graph.__all__:
        assert getattr(budget_graph, name) is not None, name


def test_every_module_declares_all():
    missing = []
    for mod in pkgutil.walk_packages(budget_graph.__path__, "budget_graph."):
        if mod.name.startswith("budget_graph._internal") or ".data" in mod.name:
            continue
        try:
            module = importlib.import_module(mod.name)
        except ImportError as exc:  # optional extras
            pytest.skip(f"{mod.name}: {exc}")
        if not hasattr(module, "__all__"):
            missing.append(mod.name)
        for name in getattr(module, "__all__", ()):
            assert hasattr(module, name), f"{mod.name}.__all__ lists missing {name}"
    assert missing == []


@pytest.mark.parametrize("doc", DOCS_RUN)
def test_doc_examples_run(doc):
    text = (ROOT / "docs" / doc).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, f"no python blocks in {doc}"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, f"docs/{doc}", "exec"), namespace)


def test_cli_rejects_unknown_task_with_the_valid_ones(capsys):
    from budget_graph.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "chess"])
    err = capsys.readouterr().err
    assert "invalid choice: 'chess'" in err and "game24" in err and "date" in err


def test_cli_rejects_bad_budgets():
    from budget_graph.cli import UsageError, parse_budget_fractions, parse_budget_tokens

    with pytest.raises(UsageError, match="invalid --budget-tokens entry 'lots'"):
        parse_budget_tokens("500,lots")
    with pytest.raises(UsageError, match=r"'-5': must be >= 1"):
        parse_budget_tokens("-5")
    assert parse_budget_fractions("25%,0.5") == [0.25, 0.5]


def test_readme_results_come_from_the_committed_bench_report():
    readme = (ROOT / "README.md").read_text()
    report = (ROOT / "docs" / "bench" / "report.md").read_text()
    rows = [ln for ln in readme.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) > 20
    missing = [row for row in rows if row not in report]
    assert missing == []
