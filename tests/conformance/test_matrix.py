"""Issue #19's conformance matrix: every cell keeps the cap and the account.

Each cell (entry point x graph pattern x sync/async x checkpointer x model) runs once
under a budget of 60% of what the pattern costs without one (measured once per pattern
and model), so the budget stops every run. A cell passes when the provider billed no
more than the limit, the spend in the final state equals the billing, ``stop_reason`` is
``"budget"`` whenever the meter refused a call, and each invocation was one run.
"""

from __future__ import annotations

import warnings

import pytest

from tests.conformance.matrix import CELLS, Cell, Env, arun_cell, run_cell

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

_FULL: dict[tuple[str, str], int] = {}


def _full_cost(cell: Cell, env: Env) -> int:
    """What the pattern bills with room to spare (sync invoke, in-memory checkpointer)."""
    key = (cell.pattern, cell.model)
    if key not in _FULL:
        saver = "sqlite" if cell.pattern == "resume_in_second_process" else "memory"
        probe = Cell(cell.pattern, "sync", saver, "invoke", cell.model)
        _FULL[key] = run_cell(probe, env, 10**7).billed
    return _FULL[key]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
async def test_cell_keeps_the_cap_and_the_account(cell: Cell, conformance_env: Env) -> None:
    limit = int(_full_cost(cell, conformance_env) * 0.6)
    if cell.mode == "sync":
        import asyncio

        out = await asyncio.to_thread(run_cell, cell, conformance_env, limit)
    else:
        out = await arun_cell(cell, conformance_env, limit)
    assert out.problems() == [], cell.id
    assert out.billed > 0
    if cell.pattern not in ("threads_in_node", "resume_in_second_process"):
        assert out.stop_reason == "budget", cell.id  # 60% of the cost always stops the run
