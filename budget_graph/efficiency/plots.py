"""PNG plots of run records (matplotlib, the ``[plot]`` extra, imported only when used).

Per task: accuracy vs tokens (bootstrap CIs, the Pareto front, budget points labelled),
anytime curves Q(b), and tokens per solved item. Every plot gives a method one colour
(the same in every plot of a report) and its budgets lighter to darker shades of it;
legends sit outside the data. :func:`write_plots` writes all three for every task and
:func:`embed_plots` links them from ``report.md``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from budget_graph.efficiency import metrics as m
from budget_graph.efficiency.records import RunRecord

__all__ = [
    "PALETTE",
    "Palette",
    "embed_plots",
    "family",
    "plot_anytime",
    "plot_pareto",
    "plot_tokens_per_solved",
    "write_plots",
]

PALETTE: tuple[str, ...] = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#393b79",
    "#637939",
    "#843c39",
    "#7b4173",
    "#e7ba52",
    "#5254a3",
    "#31a354",
    "#756bb1",
    "#636363",
    "#fd8d3c",
)
"""Base colours, one per method family, assigned in order of the sorted family names."""

_LEVEL = re.compile(r"^(.*\D)-(\d+)$")


def family(method: str) -> tuple[str, int | None]:
    """A method's family and level: ``"tot-bfs-3"`` -> ``("tot-bfs-k", 3)``; else itself."""
    m = _LEVEL.match(method)
    return (f"{m.group(1)}-k", int(m.group(2))) if m else (method, None)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Plots need matplotlib: pip install 'budget_graph[plot]'") from exc
    matplotlib.use("Agg")  # no display needed; safe in servers and CI
    import matplotlib.pyplot as plt

    return plt


class Palette:
    """Colours of (method, budget): one hue per method, lighter for smaller budgets.

    Built once from all the records of a report, so every plot uses the same colours.
    """

    def __init__(self, records: Sequence[RunRecord]) -> None:
        """Assign colours to the method families and budgets (or levels) in ``records``."""
        families = sorted({family(r.method)[0] for r in records})
        self.base = {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(families)}
        levels: dict[str, set[int]] = {}
        for r in records:
            fam, level = family(r.method)
            if level is not None:  # a family's members (tot-bfs-1..5): shades by level
                levels.setdefault(fam, set()).add(level)
            elif r.budget is not None:
                levels.setdefault(r.method, set()).add(r.budget)
        self.levels = {k: sorted(v) for k, v in levels.items()}

    def color(self, method: str, budget: int | None) -> tuple[float, float, float]:
        """The family's hue, mixed with white for smaller budgets (or family levels)."""
        from matplotlib.colors import to_rgb

        fam, level = family(method)
        rgb = to_rgb(self.base.get(fam, "#333333"))
        key, value = (fam, level) if level is not None else (method, budget)
        levels = self.levels.get(key, [])
        if value is None or len(levels) < 2 or value not in levels:
            return rgb
        light = 0.6 * (1 - levels.index(value) / (len(levels) - 1))
        return (
            rgb[0] + (1 - rgb[0]) * light,
            rgb[1] + (1 - rgb[1]) * light,
            rgb[2] + (1 - rgb[2]) * light,
        )


def _by(records: Sequence[RunRecord], *keys: str) -> dict[tuple[Any, ...], list[RunRecord]]:
    groups: dict[tuple[Any, ...], list[RunRecord]] = {}
    for r in records:
        groups.setdefault(tuple(getattr(r, k) for k in keys), []).append(r)
    return groups


def _label(method: str, budget: int | None) -> str:
    return method if budget is None else f"{method} @ {budget:,}"


def _short(budget: int) -> str:
    return f"{budget / 1000:.1f}k" if budget >= 1000 else str(budget)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "task"


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    os.replace(tmp, target)
    return target


def _legend(ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            handles,
            labels,
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
            frameon=False,
        )


def _mean_ci(rs: Sequence[RunRecord], kind: m.TokenKind) -> tuple[float, float] | None:
    return m.bootstrap_ci(rs, lambda _s, t: t.mean(axis=1), kind=kind)


def plot_pareto(
    records: Sequence[RunRecord],
    path: str | os.PathLike[str],
    *,
    kind: m.TokenKind = "generated",
    title: str | None = None,
    palette: Palette | None = None,
) -> Path:
    """Accuracy vs mean tokens per item: a line per method through its budgets.

    Each point has 95% bootstrap CIs on both axes and its budget written beside it; the
    Pareto front across all points is a black step line. Axes span the data's real spread.
    """
    plt = _pyplot()
    pal = palette or Palette(records)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    points, ys = [], []
    for (method,), runs in sorted(_by(records, "method").items()):
        groups = sorted(_by(runs, "budget").items(), key=lambda kv: kv[0][0] or 0)
        xy = [(m.mean_tokens(rs, kind) or 0.0, 100 * (m.accuracy(rs) or 0.0)) for _, rs in groups]
        if len(xy) > 1:
            line = sorted(xy)
            ax.plot(
                [x for x, _ in line],
                [y for _, y in line],
                color=pal.color(method, None),
                linewidth=1,
                alpha=0.5,
                zorder=1,
            )
        for ((budget,), rs), (x, y) in zip(groups, xy, strict=True):
            acc_ci = m.bootstrap_ci(rs, "accuracy")
            x_ci = _mean_ci(rs, kind)
            yerr = [[y - 100 * acc_ci[0]], [100 * acc_ci[1] - y]] if acc_ci else None
            xerr = [[x - x_ci[0]], [x_ci[1] - x]] if x_ci else None
            ax.errorbar(
                [x],
                [y],
                yerr=yerr,
                xerr=xerr,
                fmt="o",
                markersize=5,
                color=pal.color(method, budget),
                ecolor=pal.color(method, budget),
                elinewidth=0.8,
                capsize=2,
                zorder=3,
                label=_label(method, budget),
            )
            if budget is not None:
                ax.annotate(
                    _short(budget),
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, 3),
                    fontsize=6,
                    color="#333333",
                )
            ys += [y] + ([100 * acc_ci[0], 100 * acc_ci[1]] if acc_ci else [])
            points.append(m.ParetoPoint(_label(method, budget), x, y / 100))
    front = m.pareto_front(points)
    if front:
        xs = [p.tokens for p in front]
        ax.step(
            xs,
            [100 * p.accuracy for p in front],
            where="post",
            color="black",
            linewidth=1.4,
            linestyle="--",
            zorder=2,
            label="Pareto front",
        )
    if ys:
        lo, hi = min(ys), max(ys)
        pad = max((hi - lo) * 0.08, 0.5)
        ax.set_ylim(max(lo - pad, 0.0), min(hi + pad, 100.0))
    ax.set_xlabel(f"mean {kind} tokens per item (95% bootstrap CI)")
    ax.set_ylabel("accuracy, % (95% bootstrap CI)")
    ax.set_title(title or "Accuracy vs tokens")
    ax.grid(alpha=0.3)
    _legend(ax)
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
    palette: Palette | None = None,
) -> Path:
    """Anytime curves Q(b) per (method, budget) on a shared budget grid.

    The grid defaults to 20 evenly spaced budgets up to the largest spend seen.
    """
    plt = _pyplot()
    pal = palette or Palette(records)
    grid = (
        list(budgets)
        if budgets is not None
        else m.budget_grid(records, kind, points=20, spacing="linear")
    )
    fig, ax = plt.subplots(figsize=(8, 4.8))
    qs: list[float] = []
    for (method, budget), rs in sorted(
        _by(records, "method", "budget").items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)
    ):
        curve = m.anytime_curve(rs, grid, kind)
        qs += [q for _, q in curve]
        ax.plot(
            [0, *(b for b, _ in curve)],
            [0, *(q for _, q in curve)],
            color=pal.color(method, budget),
            linewidth=1.3,
            label=_label(method, budget),
        )
    ax.set_xlabel(f"{kind} tokens spent (b)")
    ax.set_ylabel("Q(b): mean best-answer quality")
    if qs:
        ax.set_ylim(0, min(max(qs) * 1.1, 1.0) or 1.0)
    ax.set_title(title or "Anytime curves")
    ax.grid(alpha=0.3)
    _legend(ax)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_tokens_per_solved(
    records: Sequence[RunRecord],
    path: str | os.PathLike[str],
    *,
    kind: m.TokenKind = "generated",
    title: str | None = None,
    palette: Palette | None = None,
) -> Path:
    """Tokens spent on each solved item: one box (and its points) per (method, budget)."""
    plt = _pyplot()
    pal = palette or Palette(records)
    keyed = sorted(
        _by(records, "method", "budget").items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)
    )
    rows = [(k, [r.tokens(kind) for r in rs if r.correct]) for k, rs in keyed]
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.28 * max(len(rows), 1)))
    if any(ts for _, ts in rows):
        for i, ((method, budget), ts) in enumerate(rows):
            if not ts:
                continue
            color = pal.color(method, budget)
            ax.boxplot(
                [ts],
                positions=[i],
                vert=False,
                widths=0.6,
                showfliers=False,
                patch_artist=True,
                boxprops={"facecolor": color, "alpha": 0.5},
                medianprops={"color": "black"},
            )
            ax.scatter(ts, [i] * len(ts), s=5, color=color, zorder=3)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(
            [f"{_label(meth, b)} ({len(ts)} solved)" for (meth, b), ts in rows], fontsize=7
        )
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, "no solved items", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"{kind} tokens per solved item")
    ax.set_title(title or "Tokens per solved item")
    ax.grid(alpha=0.3, axis="x")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def write_plots(
    out_dir: str | os.PathLike[str],
    records: Sequence[RunRecord],
    *,
    tokens_for: Mapping[str, m.TokenKind] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the three plots of every task in ``records``, with one palette for all.

    Files: ``<task>_pareto.png``, ``<task>_anytime.png``, ``<task>_tokens_per_solved.png``.

    Args:
        out_dir: Directory to write into (created if missing).
        records: The runs.
        tokens_for: Task -> which tokens the plots count (default ``"generated"``).
        progress: Called with each file name before it is drawn.

    Returns:
        The paths written.

    """
    from budget_graph.efficiency.tables import spec_for

    out = Path(out_dir)
    pal = Palette(records)
    paths = []
    for (task,), rs in _by(records, "task").items():
        kind = (tokens_for or {}).get(task) or spec_for(task, None).tokens
        stem = _slug(task)
        jobs: list[tuple[str, Callable[..., Path], str]] = [
            ("pareto", plot_pareto, f"{task}: accuracy vs {kind} tokens"),
            ("anytime", plot_anytime, f"{task}: anytime curves Q(b)"),
            ("tokens_per_solved", plot_tokens_per_solved, f"{task}: {kind} tokens per solved"),
        ]
        for name, fn, title in jobs:
            target = out / f"{stem}_{name}.png"
            if progress is not None:
                progress(target.name)
            paths.append(fn(rs, target, kind=kind, title=title, palette=pal))
    return paths


def embed_plots(report: str | os.PathLike[str], plots: Sequence[Path]) -> None:
    """Append (or replace) a ``## Plots`` section of ``report`` that shows every plot."""
    path = Path(report)
    text = path.read_text(encoding="utf-8")
    text = text.split("\n## Plots\n")[0].rstrip() + "\n"
    lines = ["", "## Plots", ""]
    for p in sorted(plots, key=lambda p: p.name):
        lines += [f"![{p.stem.replace('_', ' ')}]({p.name})", ""]
    path.write_text(text + "\n".join(lines), encoding="utf-8")
