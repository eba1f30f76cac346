"""Efficiency metrics over run records: accuracy, E, anytime curves, Pareto fronts, ranks.

Definitions (S = 1 if a run's answer is correct, else 0; T = the run's tokens of the
chosen kind, generated tokens by default):

* **accuracy** = ΣS / n.
* **E** (efficiency) = ΣS / ΣT, correct answers per token; ``per_1k`` multiplies by
  1000. No tokens at all gives ``None`` (undefined); tokens but no correct answer
  give ``0.0``.
* **Anytime curve** Q(b): over runs, the mean quality of the best answer a run held
  once it had spent ``b`` tokens (the last anytime-trace point at or below ``b``;
  0 before the first point).
* **Anytime Index** AI = (1/|B|) Σᵢ (Q(bᵢ) − Q(bᵢ₋₁)) / (bᵢ − bᵢ₋₁) over a strictly
  increasing grid B = (b₁ < … < bₖ), with b₀ = 0 and Q(b₀) = 0 (no tokens, no
  answer). It is the mean slope of Q: how fast quality is bought. With a single
  budget point it is Q(b₁) / b₁. On an evenly spaced grid it telescopes to
  Q(bₖ) / bₖ, so reports use a log-spaced grid (:func:`budget_grid`), on which
  quality gained early weighs more.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

from budget_graph.efficiency.records import RunRecord

__all__ = [
    "ParetoPoint",
    "RankRow",
    "TokenKind",
    "accuracy",
    "anytime_curve",
    "anytime_index",
    "bootstrap_ci",
    "budget_grid",
    "competition_rank",
    "efficiency",
    "mean_tokens",
    "pareto_front",
    "rankings",
]

TokenKind = Literal["generated", "prompt", "total"]
"""Which tokens T counts."""

K = TypeVar("K", bound=Hashable)


def accuracy(records: Sequence[RunRecord]) -> float | None:
    """Fraction of correct runs; ``None`` for no runs."""
    if not records:
        return None
    return sum(r.correct for r in records) / len(records)


def mean_tokens(records: Sequence[RunRecord], kind: TokenKind = "generated") -> float | None:
    """Mean tokens per run of one kind; ``None`` for no runs."""
    if not records:
        return None
    return sum(r.tokens(kind) for r in records) / len(records)


def efficiency(
    records: Sequence[RunRecord], kind: TokenKind = "generated", *, per_1k: bool = False
) -> float | None:
    """E = ΣS / ΣT: correct answers per token (per 1000 tokens with ``per_1k``).

    Returns ``None`` when no tokens were spent (E is undefined), ``0.0`` when tokens
    were spent but nothing was correct.

    Example:
        >>> from budget_graph.efficiency.records import RunRecord
        >>> rs = [RunRecord(task="t", item=str(i), method="m", correct=i < 1,
        ...                 generated_tokens=500) for i in range(2)]
        >>> efficiency(rs, per_1k=True)
        1.0

    """
    tokens = sum(r.tokens(kind) for r in records)
    if tokens == 0:
        return None
    solved = sum(r.correct for r in records)
    return solved / tokens * (1000 if per_1k else 1)


# ---------------------------------------------------------------- anytime


def _trace(record: RunRecord, kind: TokenKind) -> list[tuple[int, float]]:
    # A run with no trace is one point: its final answer at its final spend.
    return record.anytime or [(record.tokens(kind), float(record.correct))]


def _quality_at(trace: Sequence[tuple[int, float]], budget: float) -> float:
    quality = 0.0
    for tokens, q in trace:
        if tokens > budget:
            break
        quality = q
    return quality


def anytime_curve(
    records: Sequence[RunRecord], budgets: Iterable[float], kind: TokenKind = "generated"
) -> list[tuple[float, float]]:
    """Q(b) for each budget b: the mean over runs of the best answer's quality at b.

    Runs without an anytime trace count as one point ``(T, 1.0 if correct else 0.0)``,
    with T of ``kind``.

    Returns:
        ``[(b, Q(b)), ...]`` in the order of ``budgets``; Q is 0.0 for no runs.

    """
    traces = [_trace(r, kind) for r in records]
    return [
        (b, sum(_quality_at(t, b) for t in traces) / len(traces) if traces else 0.0)
        for b in budgets
    ]


def anytime_index(curve: Sequence[tuple[float, float]]) -> float | None:
    """AI = (1/|B|) Σ ΔQ(b)/Δb over a curve from :func:`anytime_curve`.

    The curve starts from the implicit point (0, 0). A single point (b, q) gives q / b.

    Returns:
        Quality gained per token, on average over the grid; ``None`` for an empty curve.

    Raises:
        ValueError: Budgets are not positive and strictly increasing.

    Example:
        >>> round(anytime_index([(100, 0.5), (200, 0.7)]), 6)  # (0.5/100 + 0.2/100) / 2
        0.0035

    """
    if not curve:
        return None
    slopes = []
    prev_b, prev_q = 0.0, 0.0
    for b, q in curve:
        if b <= prev_b:
            raise ValueError(
                f"Anytime budgets must be positive and strictly increasing (got {b} after {prev_b})"
            )
        slopes.append((q - prev_q) / (b - prev_b))
        prev_b, prev_q = b, q
    return sum(slopes) / len(slopes)


def budget_grid(
    records: Sequence[RunRecord],
    kind: TokenKind = "generated",
    *,
    points: int = 6,
    spacing: Literal["log", "linear"] = "log",
) -> list[float]:
    """Return a default budget grid for anytime curves, up to the largest spend.

    The grid ends at the largest token spend seen in any run's trace (or final
    spend), so every method's whole curve is covered. ``"log"`` spacing halves the
    budget from the top (``top/2**(points-1), ..., top/2, top``); ``"linear"`` spaces
    ``points`` budgets evenly. Use log spacing for the Anytime Index: on an evenly
    spaced grid from 0 the sum of slopes telescopes and AI reduces to
    Q(top) / top, whereas on a log grid early gains weigh more, which is what
    anytime behaviour means. Empty if nothing was spent.

    Raises:
        ValueError: ``points`` < 1 or an unknown ``spacing``.

    """
    if points < 1:
        raise ValueError(f"points must be >= 1 (got {points})")
    if spacing not in ("log", "linear"):
        raise ValueError(f"Invalid spacing: {spacing!r}. Must be 'log' or 'linear'")
    top = max((t for r in records for t, _ in _trace(r, kind)), default=0)
    if top <= 0:
        return []
    if spacing == "log":
        return [top / 2 ** (points - 1 - i) for i in range(points)]
    return [top * (i + 1) / points for i in range(points)]


# ---------------------------------------------------------------- Pareto and ranks


@dataclass(frozen=True, slots=True)
class ParetoPoint:
    """One (method, budget) configuration as a point: mean tokens vs accuracy."""

    label: str
    tokens: float
    accuracy: float


def pareto_front(points: Iterable[ParetoPoint]) -> list[ParetoPoint]:
    """Return the points no other point dominates, sorted by tokens.

    A point dominates another with fewer or equal tokens and higher or equal accuracy,
    strictly better in one. Exact duplicates are all kept.
    """
    pts = list(points)
    front = [
        p
        for p in pts
        if not any(
            q.tokens <= p.tokens
            and q.accuracy >= p.accuracy
            and (q.tokens < p.tokens or q.accuracy > p.accuracy)
            for q in pts
        )
    ]
    return sorted(front, key=lambda p: (p.tokens, -p.accuracy, p.label))


def competition_rank(
    values: Mapping[K, float | None], *, higher_is_better: bool = True, places: int = 12
) -> dict[K, int]:
    """Rank by standard competition ranking ("1224"): ties share a rank, the next rank skips.

    Values are compared after rounding to ``places`` decimals so float noise does not
    break ties; ``None`` ranks after every number (all ``None`` tie).

    Example:
        >>> competition_rank({"a": 0.9, "b": 0.8, "c": 0.8, "d": 0.5})
        {'a': 1, 'b': 2, 'c': 2, 'd': 4}

    """

    def score(v: float | None) -> float:
        if v is None:
            return float("inf")
        r = round(v, places)
        return -r if higher_is_better else r

    scores = {k: score(v) for k, v in values.items()}
    return {k: 1 + sum(other < s for other in scores.values()) for k, s in scores.items()}


@dataclass(frozen=True, slots=True)
class RankRow:
    """A configuration's accuracy and E with their ranks side by side."""

    label: str
    accuracy: float | None
    accuracy_rank: int
    efficiency: float | None
    efficiency_rank: int

    @property
    def diverges(self) -> bool:
        """Whether the two rankings place this configuration differently."""
        return self.accuracy_rank != self.efficiency_rank


def rankings(
    groups: Mapping[str, Sequence[RunRecord]], kind: TokenKind = "generated"
) -> list[RankRow]:
    """Rank labelled groups of runs by accuracy and by E (per 1k tokens of ``kind``).

    Returns:
        One row per group, sorted by accuracy rank then E rank then label.

    """
    acc = {k: accuracy(v) for k, v in groups.items()}
    eff = {k: efficiency(v, kind, per_1k=True) for k, v in groups.items()}
    acc_rank = competition_rank(acc)
    eff_rank = competition_rank(eff)
    rows = [RankRow(k, acc[k], acc_rank[k], eff[k], eff_rank[k]) for k in groups]
    return sorted(rows, key=lambda r: (r.accuracy_rank, r.efficiency_rank, r.label))


# ---------------------------------------------------------------- bootstrap


def bootstrap_ci(
    records: Sequence[RunRecord],
    statistic: Literal["accuracy", "efficiency"] | Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    kind: TokenKind = "generated",
    per_1k: bool = False,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap confidence interval, resampling runs with replacement.

    Args:
        records: The runs.
        statistic: ``"accuracy"``, ``"efficiency"`` (E = ΣS/ΣT, per 1k with ``per_1k``),
            or a function of ``(S, T)`` matrices of shape (resamples, n) returning one
            value per resample (``nan`` to skip a resample).
        kind: Which tokens T counts.
        per_1k: Scale E to correct answers per 1000 tokens.
        confidence: Coverage of the interval, in (0, 1).
        resamples: Number of bootstrap resamples.
        seed: Seed of the numpy generator, so intervals are reproducible.

    Returns:
        ``(low, high)``, or ``None`` for no runs or when every resample is undefined.

    Raises:
        ValueError: ``confidence`` is not in (0, 1) or ``resamples`` < 1.

    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1) (got {confidence})")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1 (got {resamples})")
    if not records:
        return None
    s = np.array([float(r.correct) for r in records])
    t = np.array([float(r.tokens(kind)) for r in records])
    idx = np.random.default_rng(seed).integers(0, len(records), size=(resamples, len(records)))
    ss, ts = s[idx], t[idx]
    if statistic == "accuracy":
        values = ss.mean(axis=1)
    elif statistic == "efficiency":
        tot = ts.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(tot > 0, ss.sum(axis=1) / tot, np.nan) * (1000 if per_1k else 1)
    elif callable(statistic):
        values = np.asarray(statistic(ss, ts), dtype=float)
    else:
        raise ValueError(
            f"Invalid statistic: {statistic!r}. Must be 'accuracy', 'efficiency' or a callable"
        )
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)
