"""benchmarks/fallback_sweep.py: the fold split, the pre-stated selection rule, the policy seam."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sweep() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fallback_sweep", ROOT / "benchmarks" / "fallback_sweep.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_split_halves_is_a_fixed_disjoint_cover(sweep: ModuleType) -> None:
    ids = [str(i) for i in range(900, 1000)]
    a, b = sweep.split_halves(ids)
    assert len(a) == len(b) == 50
    assert set(a) | set(b) == set(ids) and not set(a) & set(b)
    assert (a, b) == sweep.split_halves(reversed(ids))  # input order does not matter
    assert a != tuple(ids[:50])  # shuffled, not the first half
    assert sweep.split_halves(ids, seed=sweep.SEED + 1) != (a, b)


def test_choose_takes_the_cheapest_cell_matching_the_baseline(sweep: ModuleType) -> None:
    cell = sweep.Cell
    cells = [
        cell(None, 100, 30, 900),
        cell(None, 200, 34, 1500),
        cell(0.25, 100, 34, 1200),
        cell(0.5, 100, 34, 1200),  # same tokens: the smaller share wins
        cell(0.5, 200, 40, 1100),  # cheapest that reaches 34
    ]
    assert sweep.choose(cells, 34) == cells[4]
    assert sweep.choose(cells[:4], 34) == cells[2]
    assert sweep.choose([cell(0.25, 100, 34, 1200), cell(None, 300, 34, 1200)], 34).share is None
    # nothing reaches the baseline: the most solved, then the fewest tokens
    assert sweep.choose(cells, 41) == cells[4]
    assert sweep.choose(cells[:3], 35) == cells[2]
    with pytest.raises(ValueError, match=re.escape("No cells to choose from")):
        sweep.choose([], 1)


def test_cells_restrict_records_to_the_puzzles(sweep: ModuleType) -> None:
    from budget_graph.efficiency import RunRecord

    def rec(item: str, budget: int, ok: bool, tokens: int) -> RunRecord:
        return RunRecord(
            task="game24",
            item=item,
            method="budget-search",
            budget=budget,
            correct=ok,
            prompt_tokens=tokens,
        )

    runs = {0.5: [rec("a", 10, True, 5), rec("b", 10, True, 7), rec("a", 20, False, 9)]}
    assert sweep.cells(runs, ["a"]) == [sweep.Cell(0.5, 10, 1, 5), sweep.Cell(0.5, 20, 0, 9)]
    assert sweep.cells(runs, ["a", "b"])[0] == sweep.Cell(0.5, 10, 2, 12)


def test_run_job_uses_the_policy_it_is_given() -> None:
    from budget_graph.bench.game24_methods import POLICY, run_job
    from budget_graph.bench.game24_replay import RECORDINGS
    from budget_graph.tasks.game24 import Game24Task

    # 981: the judge calls its correct first step "impossible"; only the fallback finds it
    # (alone, it exhausts the floors after 10,713 tokens: under a third of 60,000)
    items = tuple(i for i in Game24Task().items() if i.id == "981")
    sources = tuple(str(s) for s in RECORDINGS)
    given = run_job("budget-search", 60_000, items, sources, None)
    without = dataclasses.replace(POLICY, fallback_share=None)
    plain = run_job("budget-search", 60_000, items, sources, None, without)
    assert [r.correct for r in given] == [True]
    assert [r.correct for r in plain] == [False]
