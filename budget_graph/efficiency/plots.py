"""PNG plots of run records (matplotlib, the ``[plot]`` extra, imported only when used).

Per task: accuracy vs tokens with each method's curve and the Pareto front, anytime
curves Q(b), and a histogram of tokens per solved item. :func:`write_plots` writes
all three for every task.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from budget_graph.efficiency import metrics as m
from budget_graph.efficiency.records import RunRecord

__all__ = ["plot_anytime", "plot_pareto", "plot_tokens_per_solved", "write_plots"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Plots need matplotlib: pip install 'budget_graph[plot]'") from exc
    matplotlib.use("Agg")  # no display needed; safe in servers and CI
    import matplotlib.pyplot as plt

    return plt


def _by(records: Sequence[RunRecord], *keys: str) -> dict[tuple[Any, ...], list[RunRecord]]:
    groups: dict[tuple[Any, ...], list[RunRecord]] = {}
    for r in records:
        groups.setdefault(tuple(getattr(r, k) for k in keys), []).append(r)
    return groups


def _label(method: str, budget: int | None) -> str:
    return method if budget is None else f"{method} @ {budget}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "task"


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    os.replace(tmp, target)
    return target


def plot_pareto(
    records: Sequence[RunRecord],
    path: str | os.PathLike[str],
    *,
    kind: m.TokenKind = "generated",
    title: str | None = None,
) -> Path:
    """Plot accuracy vs mean tokens per item, one line per method through its budgets.

    The Pareto front across all (method, budget) points is a dashed step line.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = []
    for (method,), runs in _by(records, "method").items():
        xy = sorted(
            (m.mean_tokens(rs, kind) or 0.0, m.accuracy(rs) or 0.0)
            for rs in _by(runs, "budget").values()
        )
        ax.plot([x for x, _ in xy], [100 * y for _, y in xy], marker="o", label=method)
        for budget_key, rs in _by(runs, "budget").items():
            points.append(
                m.ParetoPoint(
                    _label(method, budget_key[0]),
                    m.mean_tokens(rs, kind) or 0.0,
                    m.accuracy(rs) or 0.0,
                )
            )
    front = m.pareto_front(points)
    if front:
        ax.step(
            [p.tokens for p in front],
            [100 * p.accuracy for p in front],
            where="post",
            linestyle="--",
            color="black",
            alpha=0.6,
            label="Pareto front",
        )
    ax.set_xlabel(f"mean {kind} tokens per item")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Accuracy vs tokens")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_anytime(
    records: Sequence[RunRecord],
    path: str | os.PathLike[str],
    *,
    kind: m.TokenKind = "generated",
    budgets: Sequence[float] | None = None,
    title: str | None = None,
) -> Path:
    """Anytime curves Q(b) per (method, budget) on a shared budget grid.

    The grid defaults to 20 evenly spaced budgets up to the largest spend seen.
    """
    plt = _pyplot()
    grid = (
        list(budgets)
        if budgets is not None
        else m.budget_grid(records, kind, points=20, spacing="linear")
    )
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (method, budget), rs in _by(records, "method", "budget").items():
        curve = m.anytime_curve(rs, grid, kind)
        ax.plot(
            [0, *(b for b, _ in curve)], [0, *(q for _, q in curve)], label=_label(method, budget)
        )
    ax.set_xlabel(f"{kind} tokens spent (b)")
    ax.set_ylabel("Q(b): mean best-answer quality")
    ax.set_title(title or "Anytime curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_tokens_per_solved(
    records: Sequence[RunRecord],
    path: str | os.PathLike[str],
    *,
    kind: m.TokenKind = "generated",
    bins: int = 20,
    title: str | None = None,
) -> Path:
    """Histogram of tokens spent on each solved item, one outline per (method, budget)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    solved = {
        key: [r.tokens(kind) for r in rs if r.correct]
        for key, rs in _by(records, "method", "budget").items()
    }
    every = [t for ts in solved.values() for t in ts]
    if every:
        lo, hi = min(every), max(every)
        edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)] if hi > lo else bins
        for (method, budget), ts in solved.items():
            if ts:
                ax.hist(
                    ts, bins=edges, histtype="step", linewidth=1.5, label=_label(method, budget)
                )
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no solved items", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"{kind} tokens per solved item")
    ax.set_ylabel("solved items")
    ax.set_title(title or "Tokens per solved item")
    ax.grid(alpha=0.3)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def write_plots(
    out_dir: str | os.PathLike[str],
    records: Sequence[RunRecord],
    *,
    tokens_for: Mapping[str, m.TokenKind] | None = None,
) -> list[Path]:
    """Write the three plots of every task in ``records``.

    Files: ``<task>_pareto.png``, ``<task>_anytime.png``, ``<task>_tokens_per_solved.png``.

    Args:
        out_dir: Directory to write into (created if missing).
        records: The runs.
        tokens_for: Task -> which tokens the plots count (default ``"generated"``).

    Returns:
        The paths written.

    """
    out = Path(out_dir)
    paths = []
    for (task,), rs in _by(records, "task").items():
        kind = (tokens_for or {}).get(task, "generated")
        stem = _slug(task)
        paths.append(
            plot_pareto(
                rs,
                out / f"{stem}_pareto.png",
                kind=kind,
                title=f"{task}: accuracy vs {kind} tokens",
            )
        )
        paths.append(
            plot_anytime(
                rs, out / f"{stem}_anytime.png", kind=kind, title=f"{task}: anytime curves Q(b)"
            )
        )
        paths.append(
            plot_tokens_per_solved(
                rs,
                out / f"{stem}_tokens_per_solved.png",
                kind=kind,
                title=f"{task}: {kind} tokens per solved item",
            )
        )
    return paths
