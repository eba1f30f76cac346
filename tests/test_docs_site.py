import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import budget_graph

ROOT = Path(__file__).resolve().parents[1]


def _public_modules() -> list[str]:
    names = ["budget_graph"]
    for mod in pkgutil.walk_packages(budget_graph.__path__, "budget_graph."):
        parts = mod.name.split(".")
        if any(p.startswith("_") for p in parts) or "data" in parts:
            continue
        names.append(mod.name)
    return names


def test_site_builds_strict_with_a_page_per_public_module(tmp_path):
    pytest.importorskip("mkdocs_gen_files", reason="needs the [docs] extra")
    env = {**os.environ, "DISABLE_MKDOCS_2_WARNING": "true", "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    missing = []
    for name in _public_modules():
        page = tmp_path / "site" / "reference" / Path(*name.split(".")) / "index.html"
        if not page.exists():
            missing.append(name)
    assert missing == []
