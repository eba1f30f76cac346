"""Reports: aggregate run records by (task, method, budget) and render markdown / JSON.

Entry points:

* :func:`render_report` — the markdown (or JSON) report of a list of records.
* :func:`write_report` — ``report.md``, ``report.json``, ``results.jsonl`` and PNG
  plots into a directory.
* :func:`report_main` — ``budget-graph report runs.jsonl``: read a JSONL file, return
  (and print) the same report the benchmark writes.

Which columns a task's table shows, and which tokens its E counts, is a
:class:`~budget_graph.efficiency.tables.TableSpec`; ``TABLE_SPECS`` maps task names
to specs and can be extended (see :mod:`budget_graph.efficiency.tables`). The budget
grid of a task's anytime curves is fixed per task in :data:`ANYTIME_GRIDS`, so a row's
Anytime Index does not depend on the other rows of the report.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from budget_graph.efficiency import metrics as m
from budget_graph.efficiency.grids import ANYTIME_GRIDS, grid_for, log_twin
from budget_graph.efficiency.records import RunRecord, read_jsonl, write_jsonl
from budget_graph.efficiency.report_json import pareto_points, render_json, scope_rows
from budget_graph.efficiency.significance import divergent_pairs
from budget_graph.efficiency.tables import (
    COLUMNS,
    DEFAULT_TABLE,
    PLANNER_TABLE,
    SELF_CONSISTENCY_TABLE,
    TABLE_SPECS,
    Column,
    Group,
    TableSpec,
    _ci,
    _num,
    _pct,
    aggregate,
    by_task,
    spec_for,
)

__all__ = [
    "ANYTIME_GRIDS",
    # Re-exported from tables, so one import gives a caller everything a report needs.
    "COLUMNS",
    "DEFAULT_TABLE",
    "PLANNER_TABLE",
    "SELF_CONSISTENCY_TABLE",
    "TABLE_SPECS",
    "Column",
    "Group",
    "TableSpec",
    "aggregate",
    "grid_for",
    "render_json",
    "render_markdown",
    "render_report",
    "render_table",
    "report_main",
    "write_report",
]


# ---------------------------------------------------------------- markdown


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    right = ["---:" if i else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(right) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _table_lines(groups: Sequence[Group], spec: TableSpec) -> list[str]:
    cols = spec.resolved()
    return _md_table(
        [c.header for c in cols], [[c.text(c.value(g, groups)) for c in cols] for g in groups]
    )


def render_table(records: Sequence[RunRecord], spec: TableSpec | None = None) -> str:
    """Render the results table alone (markdown), one row per (task, method, budget).

    This is the table at the top of each task's section of :func:`render_markdown`, so
    a benchmark that prints it shows exactly the numbers the report has.

    Args:
        records: Runs of one task (several tasks get one table each, separated by a
            blank line).
        spec: The table's spec; by default the task's entry of ``TABLE_SPECS``.

    Returns:
        The markdown table, without a trailing newline.

    """
    tables = [
        "\n".join(_table_lines(groups, spec or spec_for(task, None)))
        for task, groups in by_task(records).items()
    ]
    return "\n\n".join(tables)


def _scope_lines(groups: Sequence[Group], kind: m.TokenKind) -> list[str]:
    """The nested budget levels of each row (none when no run recorded levels)."""
    rows = []
    for g in groups:
        for row in scope_rows(g, kind):
            low, high = row["limit_min"], row["limit_max"]
            limit = "-" if low is None else f"{low:,}" if low == high else f"{low:,}-{high:,}"
            rows.append(
                [
                    g.label,
                    " / ".join(row["path"]),
                    str(row["runs"]),
                    _num(row["mean_tokens"]),
                    _num(row["mean_calls"]),
                    limit,
                    f"{row['stopped']}/{row['runs']}",
                ]
            )
    if not rows:
        return []
    intro = (
        "Each level of nested budgets (outermost first, then each level inside it), over "
        f"the runs that had it: mean {kind} tokens and calls made within the level (its "
        "inner levels' included), its limit, and the runs in which it stopped for its own "
        "budget."
    )
    headers = ["method", "level", "runs", f"mean {kind} tokens", "mean calls", "limit"]
    return ["", "### Budget levels", "", intro, "", *_md_table([*headers, "stopped"], rows)]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _task_markdown(
    task: str,
    groups: list[Group],
    spec: TableSpec,
    grids: Mapping[str, m.BudgetGrid] | None = None,
) -> list[str]:
    kind = spec.tokens
    out = [f"## {task}", "", *_table_lines(groups, spec), *_scope_lines(groups, kind)]
    by_label = {g.label: g for g in groups}
    divergences = divergent_pairs({g.label: g.records for g in groups}, kind)
    ranks = m.rankings({g.label: g.records for g in groups}, kind, divergences=divergences)
    out += [
        "",
        f"### Rankings: accuracy vs E (correct per 1k {kind} tokens)",
        "",
        "Competition ranking (ties share a rank); 95% bootstrap CIs "
        "(2000 resamples of the runs, seed 0).",
        "",
    ]
    rows = []
    for r in ranks:
        g = by_label[r.label]
        rows.append(
            [
                r.label,
                _pct(r.accuracy),
                _ci(g.accuracy_ci(), _pct),
                str(r.accuracy_rank),
                _num(r.efficiency),
                _ci(g.efficiency_ci(kind), _num),
                str(r.efficiency_rank),
                ", ".join(r.diverges_from),
            ]
        )
    out += _md_table(
        [
            "method",
            "accuracy",
            "95% CI",
            "accuracy rank",
            "E per 1k",
            "95% CI",
            "E rank",
            "diverges from (paired tests)",
        ],
        rows,
    )
    out.append("")
    if divergences:
        out.append(
            "Where the rankings diverge (paired by item: McNemar's exact test on accuracy, "
            "a paired bootstrap of the E difference; both at the 5% level):"
        )
        out += [
            f"- {d.more_accurate} is more accurate (p = {d.p_accuracy:.3g}) and "
            f"{d.more_efficient} more efficient (E difference per 1k, 95% CI "
            f"{_ci(d.e_diff_ci, _num)}) on {d.items} shared items"
            for d in divergences
        ]
    elif all(r.accuracy_rank == r.efficiency_rank for r in ranks):
        out.append("The accuracy and E rankings agree.")
    else:
        out.append(
            "No pair of rows is ordered oppositely by accuracy and E with both differences "
            "significant (paired tests at the 5% level), so no row is marked."
        )

    front = m.pareto_front(pareto_points(groups, kind))
    out += ["", f"### Pareto front: accuracy vs mean {kind} tokens per item", ""]
    out += _md_table(
        ["method", f"mean {kind} tokens", "accuracy"],
        [[p.label, _num(p.tokens), _pct(p.accuracy)] for p in front],
    )

    grid, fixed = grid_for(task, [r for g in groups for r in g.records], grids, kind)
    budgets, log_grid = grid.budgets(), log_twin(grid)
    where = (
        "fixed for this task"
        if fixed
        else "up to the largest spend in this report, so it depends on the rows reported"
    )
    out += [
        "",
        f"### E³ and the Anytime Index ({grid.tokens} tokens)",
        "",
        f"E³ = A² / T̄ (Plan-and-Budget, arXiv:2505.16122), T̄ the mean {kind} tokens per item, "
        "per 1k tokens. Q(b): share of items whose best answer so far is correct once b "
        f"tokens were spent. AI = (1/|B|) Σ ΔQ(b)/Δb from (0, 0) on the {grid.spacing} grid "
        f"of {len(budgets)} budgets {where}; per 1k tokens. The {grid.spacing} grid is the "
        "definition's; the last column is the same index on the log grid with the same top "
        "(top/2^(k-1), ..., top), which weighs quality bought early more.",
        "",
    ]
    rows = []
    for g in groups:
        curve = grid.curve(g.records)
        ai = m.anytime_index(curve)
        ai_log = log_grid.index(g.records)
        e3 = m.e3(g.records, kind, per_1k=True)
        rows.append(
            [
                g.label,
                _num(e3),
                *(f"{q:.3f}" for _, q in curve),
                _num(None if ai is None else ai * 1000),
                _num(None if ai_log is None else ai_log * 1000),
            ]
        )
    headers = ["method", "E³ per 1k", *(f"Q({b:,.0f})" for b in budgets), "AI per 1k"]
    out += _md_table([*headers, "AI per 1k (log grid)"], rows)
    return out + [""]


def render_markdown(
    records: Sequence[RunRecord],
    *,
    specs: Mapping[str, TableSpec] | None = None,
    grids: Mapping[str, m.BudgetGrid] | None = None,
    title: str = "Efficiency report",
) -> str:
    """Render markdown: per task, the table, rankings, Pareto front, E³ and anytime view."""
    tasks = by_task(records)
    lines = [f"# {title}", "", f"{len(records)} runs over {len(tasks)} task(s).", ""]
    for task, groups in tasks.items():
        lines += _task_markdown(task, groups, spec_for(task, specs), grids)
    return "\n".join(lines).rstrip() + "\n"


def render_report(
    records: Sequence[RunRecord],
    *,
    fmt: str = "markdown",
    specs: Mapping[str, TableSpec] | None = None,
    grids: Mapping[str, m.BudgetGrid] | None = None,
) -> str:
    """Render records as a ``"markdown"`` or ``"json"`` report.

    Args:
        records: The runs.
        fmt: ``"markdown"`` or ``"json"``.
        specs: Per-task table specs overriding :data:`TABLE_SPECS`.
        grids: Per-task anytime grids overriding :data:`ANYTIME_GRIDS`.

    Returns:
        The report text.

    Example:
        >>> from budget_graph.efficiency import RunRecord
        >>> rs = [RunRecord(task="date", item="1", method="sc", correct=True,
        ...                 prompt_tokens=100, generated_tokens=50, calls=5)]
        >>> print(render_report(rs).splitlines()[8])
        | sc | 100.0% | 1/1 | 5.00 | 50 | 0 | 100 | 20.00 | n/a | 0 |

    """
    if fmt == "markdown":
        return render_markdown(records, specs=specs, grids=grids)
    if fmt == "json":
        return json.dumps(render_json(records, specs=specs, grids=grids), indent=2) + "\n"
    raise ValueError(f"Invalid fmt: {fmt!r}. Must be 'markdown' or 'json'")


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(
    out_dir: str | os.PathLike[str],
    records: Sequence[RunRecord],
    *,
    specs: Mapping[str, TableSpec] | None = None,
    plots: bool = True,
    jsonl: str | None = "results.jsonl",
) -> dict[str, Path]:
    """Write ``report.md``, ``report.json``, the records as JSONL and PNG plots.

    Every file is written atomically (temp file then rename).

    Args:
        out_dir: Directory to write into (created if missing).
        records: The runs.
        specs: Per-task table specs overriding :data:`TABLE_SPECS`.
        plots: Also write the PNG plots (needs matplotlib, the ``[plot]`` extra).
        jsonl: File name for the records, or ``None`` not to write them.

    Returns:
        Name -> path of every file written (``"report.md"``, ``"report.json"``,
        ``"results.jsonl"``, and one entry per plot).

    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    _write_text(out / "report.md", render_markdown(records, specs=specs))
    paths["report.md"] = out / "report.md"
    _write_text(out / "report.json", render_report(records, fmt="json", specs=specs))
    paths["report.json"] = out / "report.json"
    if jsonl is not None:
        paths[jsonl] = write_jsonl(out / jsonl, records)
    if plots:
        from budget_graph.efficiency.plots import write_plots

        tokens_for = {t: spec_for(t, specs).tokens for t in {r.task for r in records}}
        for path in write_plots(out, records, tokens_for=tokens_for):
            paths[path.name] = path
    return paths


def report_main(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    echo: bool = True,
) -> str:
    """``budget-graph report runs.jsonl``: the same report the benchmark writes.

    Args:
        path: A JSONL file of :class:`~budget_graph.efficiency.RunRecord`.
        out: If given, also write the report files and plots there
            (see :func:`write_report`; the records are not rewritten).
        echo: Print the markdown report.

    Returns:
        The markdown report.

    Raises:
        RecordsError: A line of the file is not a valid record.

    """
    records = read_jsonl(path)
    text = render_markdown(records)
    if out is not None:
        write_report(out, records, jsonl=None)
    if echo:
        print(text, end="")
    return text
