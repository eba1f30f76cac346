"""The efficiency report as JSON: raw numbers per task, row, ranking, divergence and Pareto point.

:func:`render_json` is the machine-readable twin of
:func:`budget_graph.efficiency.report.render_markdown`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from budget_graph.efficiency import metrics as m
from budget_graph.efficiency.grids import grid_for, row_metrics
from budget_graph.efficiency.records import RunRecord
from budget_graph.efficiency.significance import divergent_pairs
from budget_graph.efficiency.tables import COLUMNS, Group, TableSpec, by_task, spec_for

__all__ = ["pareto_points", "render_json", "scope_rows"]


def scope_rows(group: Group, kind: m.TokenKind) -> list[dict[str, Any]]:
    """The nested budget levels of a group's runs: one row per level, outermost first.

    Each row: ``path`` (level names from the outermost down), ``runs`` that had the
    level, ``mean_tokens`` of ``kind`` and ``mean_calls`` within it over those runs,
    the smallest and largest ``limit`` seen, and ``stopped``: runs in which the level
    stopped for its own budget. Empty when no run recorded levels.
    """
    by_path: dict[tuple[str, ...], list[Any]] = {}
    for record in group.records:
        for level in record.scopes:
            by_path.setdefault(tuple(level.path), []).append(level)
    rows = []
    for path, levels in sorted(by_path.items()):
        limits = [lv.budget for lv in levels if lv.budget is not None]
        rows.append(
            {
                "path": list(path),
                "runs": len(levels),
                "mean_tokens": sum(lv.tokens(kind) for lv in levels) / len(levels),
                "mean_calls": sum(lv.calls for lv in levels) / len(levels),
                "limit_min": min(limits) if limits else None,
                "limit_max": max(limits) if limits else None,
                "stopped": sum(lv.stop_reason == "budget" for lv in levels),
            }
        )
    return rows


def pareto_points(groups: Sequence[Group], kind: m.TokenKind) -> list[m.ParetoPoint]:
    """Each group as a Pareto point: mean tokens of ``kind`` and accuracy."""
    return [
        m.ParetoPoint(g.label, m.mean_tokens(g.records, kind) or 0.0, m.accuracy(g.records) or 0.0)
        for g in groups
    ]


def render_json(
    records: Sequence[RunRecord],
    *,
    specs: Mapping[str, TableSpec] | None = None,
    grids: Mapping[str, m.BudgetGrid] | None = None,
) -> dict[str, Any]:
    """Return the report as a JSON-ready dict (raw numbers, no formatting).

    Each row carries its table's columns plus ``e3`` (A²/T̄ in the task's token kind),
    ``anytime_index`` (per token, on the task's fixed grid), the curve, visible and
    hidden token totals and E on visible tokens.
    """
    result: dict[str, Any] = {"runs": len(records), "tasks": []}
    for task, groups in by_task(records).items():
        spec = spec_for(task, specs)
        kind = spec.tokens
        grid, fixed = grid_for(task, records, grids, kind)
        rows = []
        for g in groups:
            cols = {c.name: c for c in (*COLUMNS.values(), *spec.resolved())}
            row = {name: c.value(g, groups) for name, c in cols.items() if name != "config"}
            row.update(row_metrics(g, grid, kind))
            row["label"] = g.label
            scopes = scope_rows(g, kind)
            if scopes:
                row["scopes"] = scopes
            rows.append(row)
        divergences = divergent_pairs({g.label: g.records for g in groups}, kind)
        ranks = m.rankings({g.label: g.records for g in groups}, kind, divergences=divergences)
        front = m.pareto_front(pareto_points(groups, kind))
        result["tasks"].append(
            {
                "task": task,
                "tokens": kind,
                "columns": [c.name for c in spec.resolved()],
                "anytime_grid": {
                    "budgets": grid.budgets(),
                    "tokens": grid.tokens,
                    "spacing": grid.spacing,
                    "fixed_for_task": fixed,
                },
                "rows": rows,
                "rankings": [
                    {
                        "label": r.label,
                        "accuracy": r.accuracy,
                        "accuracy_rank": r.accuracy_rank,
                        "efficiency_1k": r.efficiency,
                        "efficiency_rank": r.efficiency_rank,
                        "diverges": r.diverges,
                        "diverges_from": list(r.diverges_from),
                    }
                    for r in ranks
                ],
                "divergences": [
                    {
                        "more_accurate": d.more_accurate,
                        "more_efficient": d.more_efficient,
                        "p_accuracy": d.p_accuracy,
                        "e_diff_1k_ci": list(d.e_diff_ci),
                        "items": d.items,
                    }
                    for d in divergences
                ],
                "pareto": [
                    {"label": p.label, "tokens": p.tokens, "accuracy": p.accuracy} for p in front
                ],
            }
        )
    return result
