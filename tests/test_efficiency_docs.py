import doctest
import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "efficiency.md"


def test_docs_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/efficiency.md has no python example"
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {"__name__": "docs_example"})
    assert "## date" in capsys.readouterr().out


@pytest.mark.parametrize(
    "module", ["grids", "metrics", "records", "report", "significance", "spans", "tables", "plots"]
)
def test_module_doctests(module):
    mod = importlib.import_module(f"budget_graph.efficiency.{module}")
    assert hasattr(mod, "__all__") and all(hasattr(mod, name) for name in mod.__all__)
    failed, _ = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failed == 0


def test_package_exports_import():
    import budget_graph.efficiency as eff

    assert all(hasattr(eff, name) for name in eff.__all__)
