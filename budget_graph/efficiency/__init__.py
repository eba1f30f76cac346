"""Efficiency accounting: per-run records, metrics (S, T, E, anytime, Pareto), reports, plots.

Plots live in :mod:`budget_graph.efficiency.plots` and import matplotlib only when used.
"""

from budget_graph.efficiency.metrics import (
    ParetoPoint,
    RankRow,
    TokenKind,
    accuracy,
    anytime_curve,
    anytime_index,
    bootstrap_ci,
    budget_grid,
    competition_rank,
    efficiency,
    mean_tokens,
    pareto_front,
    rankings,
)
from budget_graph.efficiency.records import (
    RecordsError,
    RunRecord,
    from_state,
    read_jsonl,
    write_jsonl,
)
from budget_graph.efficiency.report import (
    render_report,
    render_table,
    report_main,
    write_report,
)
from budget_graph.efficiency.spans import from_spans
from budget_graph.efficiency.tables import TABLE_SPECS, TableSpec, aggregate

__all__ = [
    "TABLE_SPECS",
    "ParetoPoint",
    "RankRow",
    "RecordsError",
    "RunRecord",
    "TableSpec",
    "TokenKind",
    "accuracy",
    "aggregate",
    "anytime_curve",
    "anytime_index",
    "bootstrap_ci",
    "budget_grid",
    "competition_rank",
    "efficiency",
    "from_spans",
    "from_state",
    "mean_tokens",
    "pareto_front",
    "rankings",
    "read_jsonl",
    "render_report",
    "render_table",
    "report_main",
    "write_jsonl",
    "write_report",
]
