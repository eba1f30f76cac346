"""Report tables: runs grouped by (task, method, budget), columns and per-task specs.

Which columns a task's table shows, and which tokens its E counts, is a
:class:`TableSpec`; :data:`TABLE_SPECS` maps task names to specs and can be extended.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from budget_graph.efficiency import metrics as m
from budget_graph.efficiency.records import TOKEN_KINDS, RunRecord

__all__ = [
    "COLUMNS",
    "DEFAULT_TABLE",
    "PLANNER_TABLE",
    "SELF_CONSISTENCY_TABLE",
    "TABLE_SPECS",
    "Column",
    "Group",
    "TableSpec",
    "aggregate",
    "by_task",
    "extra_max",
    "extra_sum",
    "spec_for",
    "token_share",
]


@dataclass(frozen=True)
class Group:
    """The runs of one (task, method, budget) configuration, with their aggregates."""

    task: str
    method: str
    budget: int | None
    records: tuple[RunRecord, ...]

    @property
    def label(self) -> str:
        """``method`` or ``method @ budget``."""
        return self.method if self.budget is None else f"{self.method} @ {self.budget}"

    @property
    def n(self) -> int:
        """Number of runs."""
        return len(self.records)

    @property
    def solved(self) -> int:
        """Correct runs."""
        return sum(r.correct for r in self.records)

    def tokens(self, kind: m.TokenKind) -> int:
        """Sum tokens of one kind over the runs."""
        return sum(r.tokens(kind) for r in self.records)

    @property
    def reasoning_tokens(self) -> int:
        """Summed reasoning tokens."""
        return sum(r.reasoning_tokens for r in self.records)

    @property
    def calls(self) -> int:
        """Summed LLM calls."""
        return sum(r.calls for r in self.records)

    @property
    def mean_samples(self) -> float:
        """Mean samples per item: ``extra["samples"]`` where recorded, else calls."""
        return sum(int(r.extra.get("samples", r.calls)) for r in self.records) / self.n

    def efficiency_1k(self, kind: m.TokenKind) -> float | None:
        """Correct answers per 1000 tokens of ``kind``."""
        return m.efficiency(self.records, kind, per_1k=True)

    @cached_property
    def _cis(self) -> dict[str, tuple[float, float] | None]:
        return {
            "accuracy": m.bootstrap_ci(self.records, "accuracy"),
            "generated": m.bootstrap_ci(self.records, "efficiency", kind="generated", per_1k=True),
            "total": m.bootstrap_ci(self.records, "efficiency", kind="total", per_1k=True),
        }

    def accuracy_ci(self) -> tuple[float, float] | None:
        """95% bootstrap CI of accuracy (2000 resamples, seed 0)."""
        return self._cis["accuracy"]

    def efficiency_ci(self, kind: m.TokenKind) -> tuple[float, float] | None:
        """95% bootstrap CI of E per 1k tokens of ``kind`` (2000 resamples, seed 0)."""
        return (
            self._cis[kind]
            if kind in self._cis
            else m.bootstrap_ci(self.records, "efficiency", kind=kind, per_1k=True)
        )


def aggregate(records: Sequence[RunRecord]) -> list[Group]:
    """Group records by (task, method, budget), in order of first appearance."""
    groups: dict[tuple[str, str, int | None], list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.task, r.method, r.budget), []).append(r)
    return [Group(t, meth, b, tuple(rs)) for (t, meth, b), rs in groups.items()]


# ---------------------------------------------------------------- formatting


def _num(v: float | None, digits: int = 4) -> str:
    """``digits`` significant figures, fixed-point."""
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    return f"{v:.{decimals}f}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _int(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def _ci(ci: tuple[float, float] | None, fmt: Callable[[float | None], str]) -> str:
    return "n/a" if ci is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


@dataclass(frozen=True, slots=True)
class Column:
    """One table column: its name (JSON key), header, raw value and markdown text.

    ``value`` gets the row's group and every group of the table (for columns relative
    to another row, such as :func:`token_share`).
    """

    name: str
    header: str
    value: Callable[[Group, Sequence[Group]], Any]
    text: Callable[[Any], str] = str


def _col(
    name: str, header: str, value: Callable[[Group], Any], text: Callable[[Any], str] = str
) -> Column:
    return Column(name, header, lambda g, _groups: value(g), text)


def extra_sum(key: str, header: str | None = None) -> Column:
    """Sum of ``extra[key]`` over a row's runs (missing counts as 0)."""
    return _col(
        f"{key}_sum",
        header or key,
        lambda g: sum(int(r.extra.get(key, 0)) for r in g.records),
        _int,
    )


def extra_max(key: str, header: str | None = None) -> Column:
    """Largest ``extra[key]`` over a row's runs (missing counts as 0)."""
    return _col(
        f"{key}_max",
        header or f"max {key}",
        lambda g: max((int(r.extra.get(key, 0)) for r in g.records), default=0),
        _int,
    )


def token_share(reference: str, kind: m.TokenKind = "total", header: str | None = None) -> Column:
    """Column of a row's tokens as a fraction of the ``reference`` method's.

    The reference row is that method's unbudgeted row, else its first row; the value is
    ``None`` without one.
    """

    def value(g: Group, groups: Sequence[Group]) -> float | None:
        refs = [x for x in groups if x.method == reference and x.task == g.task]
        ref = next((x for x in refs if x.budget is None), refs[0] if refs else None)
        if ref is None or ref.tokens(kind) == 0:
            return None
        return g.tokens(kind) / ref.tokens(kind)

    return Column(f"{kind}_share_of_{reference}", header or f"% of {reference} tokens", value, _pct)


COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        _col("method", "method", lambda g: g.method),
        _col("config", "method", lambda g: g.label),
        _col("budget", "budget", lambda g: g.budget, _int),
        _col("runs", "runs", lambda g: g.n, _int),
        _col("solved", "solved", lambda g: g.solved, _int),
        _col("solved_of", "solved", lambda g: (g.solved, g.n), lambda v: f"{v[0]}/{v[1]}"),
        _col("accuracy", "accuracy", lambda g: m.accuracy(g.records), _pct),
        _col("accuracy_ci", "accuracy 95% CI", lambda g: g.accuracy_ci(), lambda v: _ci(v, _pct)),
        _col(
            "samples", "mean samples per question", lambda g: g.mean_samples, lambda v: f"{v:.2f}"
        ),
        _col("calls", "calls", lambda g: g.calls, _int),
        _col("prompt_tokens", "prompt tokens", lambda g: g.tokens("prompt"), _int),
        _col("generated_tokens", "generated tokens", lambda g: g.tokens("generated"), _int),
        _col("visible_tokens", "visible generated tokens", lambda g: g.tokens("visible"), _int),
        _col("completion_tokens", "completion tokens", lambda g: g.tokens("generated"), _int),
        _col("total_tokens", "total tokens", lambda g: g.tokens("total"), _int),
        _col("reasoning_tokens", "reasoning tokens", lambda g: g.reasoning_tokens, _int),
        _col(
            "mean_generated_tokens",
            "mean generated tokens",
            lambda g: m.mean_tokens(g.records, "generated"),
            _num,
        ),
        _col(
            "mean_total_tokens",
            "mean total tokens",
            lambda g: m.mean_tokens(g.records, "total"),
            _num,
        ),
        _col(
            "e_generated_1k",
            "correct per 1k generated tokens",
            lambda g: g.efficiency_1k("generated"),
            _num,
        ),
        _col("e_total_1k", "correct per 1k total tokens", lambda g: g.efficiency_1k("total"), _num),
        _col(
            "e_visible_1k",
            "correct per 1k visible tokens",
            lambda g: g.efficiency_1k("visible"),
            _num,
        ),
        _col(
            "e_generated_1k_ci",
            "E (generated) 95% CI",
            lambda g: g.efficiency_ci("generated"),
            lambda v: _ci(v, _num),
        ),
        _col(
            "e_total_1k_ci",
            "E (total) 95% CI",
            lambda g: g.efficiency_ci("total"),
            lambda v: _ci(v, _num),
        ),
        extra_max("overshoot", "max overshoot"),
        extra_sum("unrecorded", "unrecorded"),
        _col(
            "unbilled_total_tokens",
            "unbilled",
            lambda g: (
                g.tokens("total") - sum(int(r.extra.get("estimated_tokens", 0)) for r in g.records)
            ),
            _int,
        ),
        Column(
            "estimated_requests",
            "estimated",
            lambda g, _groups: sum(int(r.extra.get("unrecorded", 0)) for r in g.records),
            _int,
        ),
    )
}
r"""Every named column a :class:`TableSpec` may list (it may also list :class:`Column`\ s)."""


@dataclass(frozen=True, kw_only=True)
class TableSpec:
    """Which columns a task's table shows and which tokens its E counts."""

    columns: tuple[str | Column, ...]
    """Keys of :data:`COLUMNS` or :class:`Column` objects, in display order."""
    tokens: m.TokenKind = "generated"
    """Tokens T counts for E in rankings, the Pareto front and anytime curves."""

    def __post_init__(self) -> None:
        unknown = [c for c in self.columns if isinstance(c, str) and c not in COLUMNS]
        if unknown:
            raise ValueError(f"Unknown columns: {unknown}. Must be among {sorted(COLUMNS)}")
        if self.tokens not in TOKEN_KINDS:
            raise ValueError(
                f"Invalid tokens: {self.tokens!r}. Must be one of {', '.join(TOKEN_KINDS)}"
            )

    def resolved(self) -> list[Column]:
        """The columns as :class:`Column` objects."""
        return [COLUMNS[c] if isinstance(c, str) else c for c in self.columns]


PLANNER_TABLE = TableSpec(
    columns=(
        "method",
        "budget",
        "solved_of",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "unbilled_total_tokens",
        "estimated_requests",
        "e_visible_1k",
        "e_total_1k",
        token_share("tot-bfs", "total", "% of ToT tokens"),
        "overshoot_max",
    ),
    tokens="total",
)
"""The planner benchmark's table (Game of 24): tokens billed (requests the recording never
saw included, at an estimate), the unbilled lower bound beside them and the count of
estimated requests, E on visible generated tokens and on total tokens, tokens as a share of
the ToT BFS run and the largest overshoot."""
SELF_CONSISTENCY_TABLE = TableSpec(
    columns=(
        "config",
        "accuracy",
        "solved_of",
        "samples",
        "visible_tokens",
        "reasoning_tokens",
        "prompt_tokens",
        "e_visible_1k",
        token_share("sc-fixed40", "generated", "% of fixed-40 generated"),
        "overshoot_max",
    ),
    tokens="visible",
)
"""The self-consistency benchmark's table (date understanding): accuracy, the exact count
correct, samples, visible and hidden (reasoning) generated tokens, prompt tokens, E on
visible tokens, generated tokens as a share of the fixed-40 vote, and the largest per-run
overshoot."""
DEFAULT_TABLE = TableSpec(
    columns=(
        "config",
        "runs",
        "accuracy",
        "mean_generated_tokens",
        "prompt_tokens",
        "generated_tokens",
        "e_visible_1k",
    ),
    tokens="visible",
)
"""Table for a task without a spec of its own."""
TABLE_SPECS: dict[str, TableSpec] = {"game24": PLANNER_TABLE, "date": SELF_CONSISTENCY_TABLE}
"""Task name -> table spec; tasks not listed use :data:`DEFAULT_TABLE`."""


def spec_for(task: str, specs: Mapping[str, TableSpec] | None) -> TableSpec:
    """The spec of ``task``: from ``specs``, else :data:`TABLE_SPECS`, else the default."""
    return {**TABLE_SPECS, **(specs or {})}.get(task, DEFAULT_TABLE)


def by_task(records: Sequence[RunRecord]) -> dict[str, list[Group]]:
    """Groups of :func:`aggregate`, by task, in order of first appearance."""
    tasks: dict[str, list[Group]] = {}
    for g in aggregate(records):
        tasks.setdefault(g.task, []).append(g)
    return tasks
