"""Anytime grids fixed per task, and the per-row E³ and Anytime Index a report shows.

A row's Anytime Index is computed on its task's grid (:data:`ANYTIME_GRIDS`), never on a
grid derived from the rows being reported, so it does not change when other methods are
added to or removed from a report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from budget_graph.efficiency import metrics as m
from budget_graph.efficiency.records import RunRecord
from budget_graph.efficiency.tables import Group

__all__ = ["ANYTIME_GRIDS", "grid_for", "log_twin", "row_metrics"]


ANYTIME_GRIDS: dict[str, m.BudgetGrid] = {
    # 40 recorded chains per question at the 256-token chain cap: the most a method can
    # generate on one question of the shipped date recording.
    "date": m.BudgetGrid(top=40 * 256, points=10, tokens="visible"),
    # About the recorded ToT BFS run's mean spend per puzzle (19,357 prompt + completion
    # tokens), rounded up.
    "game24": m.BudgetGrid(top=20_000, points=10, tokens="total"),
}
"""Task name -> the fixed budget grid of its anytime curves and Anytime Index."""


def grid_for(
    task: str,
    records: Sequence[RunRecord],
    grids: Mapping[str, m.BudgetGrid] | None = None,
    kind: m.TokenKind = "visible",
) -> tuple[m.BudgetGrid, bool]:
    """The anytime grid of ``task`` and whether it is fixed for the task.

    From ``grids``, else :data:`ANYTIME_GRIDS`; a task with neither gets an even grid of
    10 budgets up to the largest spend of ``records`` in ``kind`` (which depends on the
    runs reported, so the report says so).
    """
    fixed = {**ANYTIME_GRIDS, **(grids or {})}.get(task)
    if fixed is not None:
        return fixed, True
    top = max((b for b in m.budget_grid(records, kind, points=1)), default=1.0)
    return m.BudgetGrid(top=top, points=10, tokens=kind), False


def log_twin(grid: m.BudgetGrid) -> m.BudgetGrid:
    """The log-spaced grid with the same top, points and token kind."""
    return m.BudgetGrid(top=grid.top, points=grid.points, spacing="log", tokens=grid.tokens)


def row_metrics(g: Group, grid: m.BudgetGrid, kind: m.TokenKind) -> dict[str, Any]:
    """A row's raw E³, Anytime Index (even and log grids), curve and token split."""
    curve = grid.curve(g.records)
    return {
        "visible_tokens": g.tokens("visible"),
        "hidden_tokens": g.tokens("reasoning"),
        "generated_tokens": g.tokens("generated"),
        "e_1k": m.efficiency(g.records, kind, per_1k=True),
        "e_visible_1k": m.efficiency(g.records, "visible", per_1k=True),
        "e3": m.e3(g.records, kind),
        "e3_1k": m.e3(g.records, kind, per_1k=True),
        "anytime_index": m.anytime_index(curve),
        "anytime_index_log": log_twin(grid).index(g.records),
        "anytime_curve": [[b, q] for b, q in curve],
    }
