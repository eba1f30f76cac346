"""Efficiency metrics over run records: accuracy, E, E³, anytime curves, Pareto fronts, ranks.

Definitions (S = 1 if a run's answer is correct, else 0; T = the run's tokens of the
chosen kind, by default the *visible* generated tokens: output minus hidden reasoning):

* **accuracy** A = ΣS / n.
* **E** (efficiency) = ΣS / ΣT, correct answers per token, pooled over items; ``per_1k``
  multiplies by 1000. No tokens at all gives ``None`` (undefined); tokens but no correct
  answer give ``0.0``.
* **E³** = A² / T̄ with T̄ = ΣT / n, the mean tokens per item: the efficiency-aware
  effectiveness score of Plan-and-Budget (Lin et al., 2025, arXiv:2505.16122). It is
  A · (A / T̄): accuracy weighted by accuracy per token, so a method cannot score well by
  spending almost nothing on mostly wrong answers.
* **Anytime curve** Q(b): over runs, the mean quality of the *best* answer a run had
  produced once it had spent ``b`` tokens (a running maximum over its anytime trace; 0
  before the first point). :func:`current_answer_curve` is the same with the run's
  current answer (the last trace point at or below ``b``), which may go down.
* **Anytime Index** AI = (1/|B|) Σᵢ (Q(bᵢ) − Q(bᵢ₋₁)) / (bᵢ − bᵢ₋₁) over a strictly
  increasing grid B = (b₁ < … < bₖ), with b₀ = 0 and Q(b₀) = 0 (no tokens, no answer):
  the mean slope of Q. The grid is fixed per task (:class:`BudgetGrid`), never derived
  from the runs being compared, so a method's index does not depend on which other
  methods are reported. On the definition's even grid the sum telescopes to
  Q(bₖ) / bₖ; a log grid (``spacing="log"``) weighs quality bought early more.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from budget_graph.efficiency.records import TOKEN_KINDS, RunRecord
from budget_graph.efficiency.significance import Divergence, bootstrap_ci, divergent_pairs

__all__ = [
    "BudgetGrid",
    "ParetoPoint",
    "RankRow",
    "TokenKind",
    "accuracy",
    "anytime_curve",
    "anytime_index",
    "bootstrap_ci",
    "budget_grid",
    "competition_rank",
    "current_answer_curve",
    "e3",
    "efficiency",
    "mean_tokens",
    "pareto_front",
    "rankings",
]

TokenKind = Literal["visible", "generated", "reasoning", "prompt", "total"]
"""Which tokens T counts (see :data:`~budget_graph.efficiency.records.TOKEN_KINDS`)."""

K = TypeVar("K", bound=Hashable)


def accuracy(records: Sequence[RunRecord]) -> float | None:
    """Fraction of correct runs; ``None`` for no runs."""
    if not records:
        return None
    return sum(r.correct for r in records) / len(records)


def mean_tokens(records: Sequence[RunRecord], kind: TokenKind = "visible") -> float | None:
    """Mean tokens per run of one kind; ``None`` for no runs."""
    if not records:
        return None
    return sum(r.tokens(kind) for r in records) / len(records)


def efficiency(
    records: Sequence[RunRecord], kind: TokenKind = "visible", *, per_1k: bool = False
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


def e3(
    records: Sequence[RunRecord], kind: TokenKind = "visible", *, per_1k: bool = False
) -> float | None:
    """E³ = A² / T̄ (Plan-and-Budget, arXiv:2505.16122): accuracy squared over mean tokens.

    A is the accuracy as a fraction, T̄ the mean tokens of ``kind`` per item; ``per_1k``
    multiplies by 1000. ``None`` for no runs or no tokens.

    Example:
        >>> from budget_graph.efficiency.records import RunRecord
        >>> rs = [RunRecord(task="t", item=str(i), method="m", correct=i < 3,
        ...                 generated_tokens=250) for i in range(4)]
        >>> e3(rs, per_1k=True)  # 0.75² / 250 * 1000
        2.25

    """
    acc, mean = accuracy(records), mean_tokens(records, kind)
    if acc is None or not mean:
        return None
    return acc * acc / mean * (1000 if per_1k else 1)


# ---------------------------------------------------------------- anytime


def _points(record: RunRecord, kind: TokenKind) -> list[tuple[int, float]]:
    trace = record.trace(kind)
    if trace:
        return trace
    # No trace, or one that cannot be read in this kind: the run is one point, its best
    # answer at its final spend (never earlier than it was paid for).
    best = max((q for _, q in record.anytime), default=float(record.correct))
    return [(record.tokens(kind), best)]


def _quality_at(trace: Sequence[tuple[int, float]], budget: float, best: bool) -> float:
    quality = 0.0
    for tokens, q in trace:
        if tokens > budget:
            break
        quality = max(quality, q) if best else q
    return quality


def _curve(
    records: Sequence[RunRecord], budgets: Iterable[float], kind: TokenKind, best: bool
) -> list[tuple[float, float]]:
    traces = [_points(r, kind) for r in records]
    return [
        (b, sum(_quality_at(t, b, best) for t in traces) / len(traces) if traces else 0.0)
        for b in budgets
    ]


def anytime_curve(
    records: Sequence[RunRecord], budgets: Iterable[float], kind: TokenKind = "visible"
) -> list[tuple[float, float]]:
    """Q(b) for each budget b: the mean over runs of the best answer's quality by b.

    Each run's quality is the running maximum of its anytime trace read in tokens of
    ``kind`` (:meth:`RunRecord.trace`). A run without a trace, or whose trace cannot be
    read in ``kind`` (no ``anytime_usage``), counts as one point: its best quality at
    its final spend of ``kind``. Traced and untraced runs are thus measured alike.

    Returns:
        ``[(b, Q(b)), ...]`` in the order of ``budgets``; Q is 0.0 for no runs.

    """
    return _curve(records, budgets, kind, best=True)


def current_answer_curve(
    records: Sequence[RunRecord], budgets: Iterable[float], kind: TokenKind = "visible"
) -> list[tuple[float, float]]:
    """Like :func:`anytime_curve`, with each run's *current* answer at b (may go down)."""
    return _curve(records, budgets, kind, best=False)


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


def _spaced(top: float, points: int, spacing: str) -> list[float]:
    if spacing == "log":
        return [top / 2 ** (points - 1 - i) for i in range(points)]
    return [top * (i + 1) / points for i in range(points)]


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetGrid:
    """A task's anytime budget grid: fixed by the task, not by the runs being compared.

    Example:
        >>> BudgetGrid(top=1000, points=4).budgets()
        [250.0, 500.0, 750.0, 1000.0]

    """

    top: float
    """The largest budget b_k, in tokens of ``tokens``."""
    points: int = 10
    """|B|, the number of budgets."""
    spacing: Literal["even", "log"] = "even"
    """``"even"`` (the definition's grid: top/k, 2·top/k, ..., top) or ``"log"`` (top/2^(k-1),
    ..., top/2, top)."""
    tokens: TokenKind = "visible"
    """Which tokens the budgets count."""

    def __post_init__(self) -> None:
        if not self.top > 0:
            raise ValueError(f"BudgetGrid: top must be > 0 (got {self.top})")
        if self.points < 1:
            raise ValueError(f"BudgetGrid: points must be >= 1 (got {self.points})")
        if self.spacing not in ("even", "log"):
            raise ValueError(f"Invalid spacing: {self.spacing!r}. Must be 'even' or 'log'")
        if self.tokens not in TOKEN_KINDS:
            raise ValueError(
                f"Invalid tokens: {self.tokens!r}. Must be one of {', '.join(TOKEN_KINDS)}"
            )

    def budgets(self) -> list[float]:
        """The budgets b_1 < ... < b_k."""
        return _spaced(self.top, self.points, self.spacing)

    def curve(self, records: Sequence[RunRecord]) -> list[tuple[float, float]]:
        """The best-so-far anytime curve of ``records`` on this grid."""
        return anytime_curve(records, self.budgets(), self.tokens)

    def index(self, records: Sequence[RunRecord]) -> float | None:
        """The Anytime Index of ``records`` on this grid (``None`` for no runs)."""
        return anytime_index(self.curve(records)) if records else None


def budget_grid(
    records: Sequence[RunRecord],
    kind: TokenKind = "visible",
    *,
    points: int = 6,
    spacing: Literal["log", "even", "linear"] = "log",
) -> list[float]:
    """Return a budget grid up to the largest spend of ``records`` (for plots).

    This grid depends on the runs given: for an Anytime Index comparable across reports
    use a task's fixed :class:`BudgetGrid`. ``"log"`` spacing halves the budget from the
    top; ``"even"`` (alias ``"linear"``) spaces ``points`` budgets evenly. Empty if
    nothing was spent.

    Raises:
        ValueError: ``points`` < 1 or an unknown ``spacing``.

    """
    if points < 1:
        raise ValueError(f"points must be >= 1 (got {points})")
    if spacing not in ("log", "even", "linear"):
        raise ValueError(f"Invalid spacing: {spacing!r}. Must be 'log', 'even' or 'linear'")
    top = max((t for r in records for t, _ in _points(r, kind)), default=0)
    if top <= 0:
        return []
    return _spaced(top, points, spacing)


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
    diverges_from: tuple[str, ...] = ()
    """Rows this one diverges from: one of the pair is significantly more accurate
    (McNemar, paired by item), the other significantly more efficient (paired
    bootstrap of E); see :func:`~budget_graph.efficiency.paired.divergent_pairs`."""

    @property
    def diverges(self) -> bool:
        """Whether a paired test shows the two rankings disagree about this row."""
        return bool(self.diverges_from)


def rankings(
    groups: Mapping[str, Sequence[RunRecord]],
    kind: TokenKind = "visible",
    *,
    alpha: float = 0.05,
    divergences: Sequence[Divergence] | None = None,
) -> list[RankRow]:
    """Rank labelled groups of runs by accuracy and by E (per 1k tokens of ``kind``).

    Ranks differing is not by itself a mark: a row ``diverges`` only from rows it is
    paired-significantly ordered against in opposite directions (level ``alpha``;
    pass ``divergences`` already computed by :func:`divergent_pairs` to reuse them).

    Returns:
        One row per group, sorted by accuracy rank then E rank then label.

    """
    acc = {k: accuracy(v) for k, v in groups.items()}
    eff = {k: efficiency(v, kind, per_1k=True) for k, v in groups.items()}
    acc_rank = competition_rank(acc)
    eff_rank = competition_rank(eff)
    partners: dict[str, list[str]] = {k: [] for k in groups}
    found = divergent_pairs(groups, kind, alpha=alpha) if divergences is None else divergences
    for d in found:
        partners[d.more_accurate].append(d.more_efficient)
        partners[d.more_efficient].append(d.more_accurate)
    rows = [
        RankRow(k, acc[k], acc_rank[k], eff[k], eff_rank[k], tuple(partners[k])) for k in groups
    ]
    return sorted(rows, key=lambda r: (r.accuracy_rank, r.efficiency_rank, r.label))
