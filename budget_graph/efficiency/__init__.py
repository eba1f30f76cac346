"""Efficiency accounting: per-run records, metrics (S, T, E, E³, anytime, Pareto), reports, plots.

Plots live in :mod:`budget_graph.efficiency.plots` and import matplotlib only when used.
"""

from budget_graph.efficiency.metrics import (
    BudgetGrid,
    ParetoPoint,
    RankRow,
    TokenKind,
    accuracy,
    anytime_curve,
    anytime_index,
    bootstrap_ci,
    budget_grid,
    competition_rank,
    current_answer_curve,
    e3,
    efficiency,
    mean_tokens,
    pareto_front,
    rankings,
)
from budget_graph.efficiency.records import (
    TOKEN_KINDS,
    RecordsError,
    RunRecord,
    from_state,
    read_jsonl,
    write_jsonl,
)
from budget_graph.efficiency.report import (
    ANYTIME_GRIDS,
    render_report,
    render_table,
    report_main,
    write_report,
)
from budget_graph.efficiency.run_record import ScopeRecord
from budget_graph.efficiency.significance import divergent_pairs, mcnemar_p
from budget_graph.efficiency.spans import from_spans
from budget_graph.efficiency.tables import TABLE_SPECS, TableSpec, aggregate

__all__ = [
    "ANYTIME_GRIDS",
    "TABLE_SPECS",
    "TOKEN_KINDS",
    "BudgetGrid",
    "ParetoPoint",
    "RankRow",
    "RecordsError",
    "RunRecord",
    "ScopeRecord",
    "TableSpec",
    "TokenKind",
    "accuracy",
    "aggregate",
    "anytime_curve",
    "anytime_index",
    "bootstrap_ci",
    "budget_grid",
    "competition_rank",
    "current_answer_curve",
    "divergent_pairs",
    "e3",
    "efficiency",
    "from_spans",
    "from_state",
    "mcnemar_p",
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
