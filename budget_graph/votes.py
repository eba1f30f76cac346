"""Votes over sampled answers, and the posteriors that judge whether their leader will stay.

:class:`Votes` is what every stop rule in :mod:`budget_graph.stopping` reads; the
posteriors (:class:`BetaPosterior`, :class:`DirichletPosterior`) are the strategy family
:class:`~budget_graph.stopping.AdaptiveConsistency` compares against its threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["BetaPosterior", "DirichletPosterior", "Posterior", "Votes", "leader_probability"]


@dataclass(frozen=True, slots=True)
class Votes:
    """The answers sampled so far, in sampling order, and where each batch ended.

    Example:
        >>> v = Votes().add(["a", None, "b"]).add(["b"])
        >>> v.leader, v.counts, v.n, v.valid, v.batches
        ('b', (2, 1), 4, 3, (3, 4))

    """

    answers: tuple[str | None, ...] = ()
    """Every sample's extracted answer; ``None`` for an unparsable sample."""
    batches: tuple[int, ...] = ()
    """Cumulative sample counts at the end of each batch."""

    def add(self, batch: Sequence[str | None]) -> Votes:
        """These votes plus one batch of answers."""
        answers = (*self.answers, *batch)
        return Votes(answers, (*self.batches, len(answers)))

    def upto(self, n: int) -> Votes:
        """The votes as they were after the first ``n`` samples."""
        return Votes(self.answers[:n], tuple(b for b in self.batches if b <= n))

    @property
    def n(self) -> int:
        """Samples drawn (parsable or not)."""
        return len(self.answers)

    @property
    def valid(self) -> int:
        """Parsable samples."""
        return sum(a is not None for a in self.answers)

    @property
    def unparsable(self) -> int:
        """Samples whose answer could not be extracted."""
        return self.n - self.valid

    @property
    def ranking(self) -> tuple[tuple[str, int], ...]:
        """``(answer, count)`` by count, ties in order of first appearance."""
        counts: dict[str, int] = {}
        for a in self.answers:
            if a is not None:
                counts[a] = counts.get(a, 0) + 1
        # dicts keep insertion order and sorted() is stable: ties stay first-seen first.
        return tuple(sorted(counts.items(), key=lambda kv: -kv[1]))

    @property
    def counts(self) -> tuple[int, ...]:
        """Vote counts of the distinct answers, largest first."""
        return tuple(c for _, c in self.ranking)

    @property
    def leader(self) -> str | None:
        """The answer with most votes (first seen wins a tie); ``None`` without votes."""
        ranking = self.ranking
        return ranking[0][0] if ranking else None

    @property
    def share(self) -> float:
        """The leader's share of the parsable votes (0.0 without votes)."""
        counts = self.counts
        return counts[0] / self.valid if counts else 0.0


class Posterior(Protocol):
    """Probability that the leading answer is the most likely one, from vote counts."""

    def __call__(self, counts: Sequence[int]) -> float:
        """``counts`` are the distinct answers' votes, largest first."""


@dataclass(frozen=True, slots=True)
class BetaPosterior:
    """Adaptive-Consistency's Beta criterion (Aggarwal et al., 2023).

    With the top two answers' votes v1 >= v2 and a uniform prior, the leader's share of
    the two, p1 / (p1 + p2), is Beta(v1 + 1, v2 + 1); the criterion is
    P(p1 > p2) = 1 - I_0.5(v1 + 1, v2 + 1) = P(Binomial(v1 + v2 + 1, 1/2) <= v1),
    computed exactly. No votes give 0.0; a tie gives 0.5.
    """

    def __call__(self, counts: Sequence[int]) -> float:
        """P(leader beats runner-up)."""
        if not counts or counts[0] == 0:
            return 0.0
        v1 = counts[0]
        v2 = counts[1] if len(counts) > 1 else 0
        m = v1 + v2 + 1
        return sum(math.comb(m, i) for i in range(v1 + 1)) / 2**m


@dataclass(frozen=True, slots=True)
class DirichletPosterior:
    """Adaptive-Consistency's Dirichlet criterion (Aggarwal et al., 2023).

    The answer probabilities are Dirichlet(counts + 1) over the answers seen so far; the
    criterion is P(the leader's probability is the largest), estimated from ``draws``
    Monte Carlo draws of a generator seeded with ``seed`` (deterministic).
    """

    draws: int = 4000
    seed: int = 0

    def __call__(self, counts: Sequence[int]) -> float:
        """Fraction of posterior draws in which the leader is the mode."""
        if not counts or counts[0] == 0:
            return 0.0
        if len(counts) == 1:
            return 1.0
        import numpy as np

        rng = np.random.default_rng(self.seed)
        sample = rng.dirichlet(np.asarray(counts, dtype=float) + 1.0, size=self.draws)
        return float(np.mean(np.argmax(sample, axis=1) == 0))


def leader_probability(votes: Votes, posterior: Posterior | None = None) -> float:
    """The posterior probability that ``votes.leader`` is the most likely answer."""
    return (posterior or BetaPosterior())(votes.counts)
