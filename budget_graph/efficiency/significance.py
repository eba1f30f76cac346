"""Significance: bootstrap CIs, and paired tests between two methods run on the same items.

A mark that one row of a report is better or worse than another, or that the accuracy
and E rankings place two rows in opposite orders, stands on these tests: runs are
paired by item, accuracy differences are tested with McNemar's exact test, and E
differences with a bootstrap that resamples items (both runs of an item together).
Rows that share no item are never compared.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from budget_graph.efficiency.records import RunRecord

__all__ = [
    "Divergence",
    "bootstrap_ci",
    "divergent_pairs",
    "mcnemar_p",
    "paired_by_item",
    "paired_efficiency_ci",
]


@functools.lru_cache(maxsize=8)
def _resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """How often each of n items is drawn in each bootstrap resample (resamples x n).

    The same draws as indexing with ``rng.integers(0, n, (resamples, n))``, as counts, so
    every pair of rows of a report reuses one matrix and a resample's sum is one product.
    """
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    flat = (np.arange(resamples)[:, None] * n + idx).ravel()
    counts = np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(float)
    counts.setflags(write=False)
    return counts


def bootstrap_ci(
    records: Sequence[RunRecord],
    statistic: Literal["accuracy", "efficiency"] | Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    kind: str = "visible",
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
    n = len(records)
    if statistic == "accuracy":
        values = _resample_counts(n, resamples, seed) @ s / n
    elif statistic == "efficiency":
        weights = _resample_counts(n, resamples, seed)
        tot = weights @ t
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(tot > 0, (weights @ s) / tot, np.nan) * (1000 if per_1k else 1)
    elif callable(statistic):
        idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
        values = np.asarray(statistic(s[idx], t[idx]), dtype=float)
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


def paired_by_item(
    a: Sequence[RunRecord], b: Sequence[RunRecord]
) -> list[tuple[RunRecord, RunRecord]]:
    """The runs of ``a`` and ``b`` on the items both ran, in ``a``'s order.

    Raises:
        ValueError: A group has two runs of one item (pairing would be ambiguous).

    """
    for name, group in (("a", a), ("b", b)):
        items = [r.item for r in group]
        if len(set(items)) != len(items):
            dup = next(i for i in items if items.count(i) > 1)
            raise ValueError(f"group {name} has more than one run of item {dup!r}")
    other = {r.item: r for r in b}
    return [(r, other[r.item]) for r in a if r.item in other]


def mcnemar_p(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Exact two-sided McNemar p-value for paired correct/incorrect outcomes.

    Only discordant pairs count: with n01 items right in ``b`` only and n10 right in
    ``a`` only, p = min(1, 2 · P(Binomial(n01 + n10, 1/2) <= min(n01, n10))).
    No discordant pair gives 1.0.

    Example:
        >>> mcnemar_p([True] * 6 + [False] * 4, [False] * 6 + [False] * 4)  # 6 vs 0
        0.03125

    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes must have equal lengths (got {len(a)} and {len(b)})")
    n10 = sum(x and not y for x, y in zip(a, b, strict=True))
    n01 = sum(y and not x for x, y in zip(a, b, strict=True))
    n = n01 + n10
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(n01, n10) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_efficiency_ci(
    pairs: Sequence[tuple[RunRecord, RunRecord]],
    kind: str = "visible",
    *,
    per_1k: bool = True,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of E(b) − E(a) over items, resampling item pairs.

    E = ΣS / ΣT of each side on the resampled items (per 1k tokens with ``per_1k``);
    resamples where either side spent nothing are skipped. ``None`` for no pairs.
    """
    if not pairs:
        return None
    s = np.array([[float(x.correct), float(y.correct)] for x, y in pairs])
    t = np.array([[float(x.tokens(kind)), float(y.tokens(kind))] for x, y in pairs])
    weights = _resample_counts(len(pairs), resamples, seed)
    ss, ts = weights @ s, weights @ t  # (resamples, 2): sums over each resample's items
    ok = (ts > 0).all(axis=1)
    if not ok.any():
        return None
    e = ss[ok] / ts[ok] * (1000 if per_1k else 1)
    diff = e[:, 1] - e[:, 0]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diff, [alpha, 1 - alpha])
    return float(low), float(high)


def _more_efficient(pairs: Sequence[tuple[RunRecord, RunRecord]], kind: str) -> bool:
    """Whether E of the second runs exceeds E of the first on these pairs."""
    s_a, s_b = sum(a.correct for a, _ in pairs), sum(b.correct for _, b in pairs)
    t_a, t_b = sum(a.tokens(kind) for a, _ in pairs), sum(b.tokens(kind) for _, b in pairs)
    return t_b > 0 and (t_a == 0 or s_b * t_a > s_a * t_b)


@dataclass(frozen=True, slots=True)
class Divergence:
    """Two rows the accuracy and E rankings order oppositely, both differences significant."""

    more_accurate: str
    """The row with significantly higher accuracy."""
    more_efficient: str
    """The row with significantly higher E."""
    p_accuracy: float
    """McNemar's exact p-value of the accuracy difference."""
    e_diff_ci: tuple[float, float]
    """Bootstrap CI of E(more_efficient) − E(more_accurate), per 1k tokens."""
    items: int
    """Items both rows ran."""


def divergent_pairs(
    groups: Mapping[str, Sequence[RunRecord]],
    kind: str = "visible",
    *,
    alpha: float = 0.05,
    resamples: int = 2000,
    seed: int = 0,
) -> list[Divergence]:
    """Pairs of rows where one is significantly more accurate and the other more efficient.

    For each pair of groups sharing items: McNemar's exact test on the paired outcomes
    (p < ``alpha``) and a paired bootstrap CI of the E difference at confidence
    1 − ``alpha`` that excludes 0 in the opposite direction. No mark otherwise; groups
    with two runs of one item cannot be paired and are never marked.

    Raises:
        ValueError: ``alpha`` is not in (0, 1).

    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1) (got {alpha})")
    labels = list(groups)
    out: list[Divergence] = []
    for i, x in enumerate(labels):
        for y in labels[i + 1 :]:
            try:
                pairs = paired_by_item(groups[x], groups[y])
            except ValueError:
                continue
            if not pairs:
                continue
            p = mcnemar_p([a.correct for a, _ in pairs], [b.correct for _, b in pairs])
            if p >= alpha:
                continue
            acc_x = sum(a.correct for a, _ in pairs)
            acc_y = sum(b.correct for _, b in pairs)
            hi, lo = (x, y) if acc_x > acc_y else (y, x)
            oriented = pairs if hi == x else [(b, a) for a, b in pairs]
            if not _more_efficient(oriented, kind):
                continue  # the less accurate row is not even more efficient on these items
            ci = paired_efficiency_ci(
                oriented, kind, confidence=1 - alpha, resamples=resamples, seed=seed
            )
            if ci is not None and ci[0] > 0:
                out.append(Divergence(hi, lo, p, ci, len(pairs)))
    return out
