"""Stop rules for self-consistency: decide when the vote over sampled answers has converged.

Each rule is a small callable object, like tenacity's stop strategies: call it with the
:class:`Votes` so far and it returns a :class:`StopDecision` (truthy when the rule
fires) carrying the statistic it decided on, for events and traces. Combine rules with
``|`` (stop when any fires) and ``&`` (stop when all fire)::

    stop = AdaptiveConsistency(0.95) | FixedSamples(40)

Unparsable samples (answer ``None``) never vote: they count as drawn samples (they
cost tokens) but not towards any answer. Ties between answers go to the answer seen
first.

Every rule also says how many more samples it needs at least before it could fire
(:meth:`StopRule.needed`), assuming they all agree with the current leader. The
self-consistency graph sizes its next batch with it, so a batch never draws samples
the rule could not use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from budget_graph.votes import (
    BetaPosterior,
    DirichletPosterior,
    Posterior,
    Votes,
    leader_probability,
)

__all__ = [
    "AdaptiveConsistency",
    "AllOf",
    "AnyOf",
    "BetaPosterior",
    "DirichletPosterior",
    "FixedSamples",
    "MarginalGain",
    "Posterior",
    "RelativeGain",
    "StopDecision",
    "StopRule",
    "Votes",
    "WindowAgreement",
    "leader_probability",
    "relative_gain",
]

_NEVER = 1_000_000
"""``needed`` of a rule that cannot fire however many samples agree."""


@dataclass(frozen=True, slots=True)
class StopDecision:
    """What a stop rule decided, and on what statistic.

    Truthy when the rule fires. Combined rules keep their parts' decisions in ``parts``.
    """

    stop: bool
    """Whether to stop sampling."""
    rule: str
    """The rule that decided (for a combination: the one that fired, else the combination)."""
    statistic: float | None = None
    """The number the rule compared (posterior, agreeing window, relative gain...)."""
    reason: str = "converged"
    """The ``stop_reason`` a run ends with when this decision stops it."""
    parts: tuple[StopDecision, ...] = field(default=())

    def __bool__(self) -> bool:
        return self.stop


class StopRule:
    """Base of the stop rules: ``rule(votes) -> StopDecision``, composable with ``|``/``&``."""

    def __call__(self, votes: Votes) -> StopDecision:
        """Decide on the votes so far."""
        raise NotImplementedError

    def needed(self, votes: Votes) -> int:
        """Fewest further samples after which the rule could fire (0 if it fires now)."""
        return 0 if self(votes) else 1

    def __or__(self, other: StopRule) -> AnyOf:
        return AnyOf((*_flat(self, AnyOf), *_flat(other, AnyOf)))

    def __and__(self, other: StopRule) -> AllOf:
        return AllOf((*_flat(self, AllOf), *_flat(other, AllOf)))


def _flat(rule: StopRule, kind: type) -> tuple[StopRule, ...]:
    return rule.rules if isinstance(rule, kind) else (rule,)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class AnyOf(StopRule):
    """Stop when any of the rules fires (``a | b``)."""

    rules: tuple[StopRule, ...]

    def __call__(self, votes: Votes) -> StopDecision:
        """The first firing part's decision, else a non-stop holding every part."""
        parts = tuple(rule(votes) for rule in self.rules)
        fired = next((p for p in parts if p.stop), None)
        if fired is not None:
            return StopDecision(True, fired.rule, fired.statistic, fired.reason, parts)
        return StopDecision(False, str(self), None, "converged", parts)

    def needed(self, votes: Votes) -> int:
        """The soonest any part could fire."""
        return min(rule.needed(votes) for rule in self.rules)

    def __str__(self) -> str:
        return " | ".join(map(str, self.rules))


@dataclass(frozen=True, slots=True)
class AllOf(StopRule):
    """Stop when all of the rules fire (``a & b``)."""

    rules: tuple[StopRule, ...]

    def __call__(self, votes: Votes) -> StopDecision:
        """Stops when every part does; reports the last part's statistic."""
        parts = tuple(rule(votes) for rule in self.rules)
        stop = all(parts)
        last = parts[-1]
        return StopDecision(stop, str(self), last.statistic, last.reason, parts)

    def needed(self, votes: Votes) -> int:
        """The latest part's need (a lower bound on when all could fire)."""
        return max(rule.needed(votes) for rule in self.rules)

    def __str__(self) -> str:
        return " & ".join(f"({r})" if isinstance(r, AnyOf) else str(r) for r in self.rules)


@dataclass(frozen=True, slots=True)
class FixedSamples(StopRule):
    """Stop after ``n`` samples (parsable or not): plain fixed-N majority voting."""

    n: int

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"FixedSamples: n must be >= 1 (got {self.n})")

    def __call__(self, votes: Votes) -> StopDecision:
        """Fires once ``n`` samples were drawn; statistic: samples drawn."""
        return StopDecision(votes.n >= self.n, str(self), float(votes.n), "samples")

    def needed(self, votes: Votes) -> int:
        """Samples still to draw."""
        return max(self.n - votes.n, 0)

    def __str__(self) -> str:
        return f"fixed_samples({self.n})"


@dataclass(frozen=True, slots=True)
class WindowAgreement(StopRule):
    """Early-stopping self-consistency (Li et al., 2024): stop when a window agrees.

    The rule fires when the last ``window`` samples all give the same parsable answer.
    Sampled in batches of ``window`` this is ESC's non-overlapping window; with smaller
    batches the window slides. An unparsable sample breaks the agreement.
    """

    window: int

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"WindowAgreement: window must be >= 1 (got {self.window})")

    def _run(self, votes: Votes) -> int:
        """Length of the trailing run of one parsable answer."""
        answers = votes.answers
        if not answers or answers[-1] is None:
            return 0
        run = 0
        for a in reversed(answers):
            if a != answers[-1]:
                break
            run += 1
        return run

    def __call__(self, votes: Votes) -> StopDecision:
        """Fires on ``window`` trailing agreeing samples; statistic: that run's length."""
        run = self._run(votes)
        return StopDecision(run >= self.window, str(self), float(run))

    def needed(self, votes: Votes) -> int:
        """Agreeing samples the window still lacks."""
        return max(self.window - self._run(votes), 0)

    def __str__(self) -> str:
        return f"window_agreement({self.window})"


@dataclass(frozen=True, slots=True)
class AdaptiveConsistency(StopRule):
    """Adaptive-Consistency (Aggarwal et al., 2023): stop when the leader will likely stay.

    From "Let's Sample Step by Step: Adaptive-Consistency for Efficient Reasoning and
    Coding with LLMs" (EMNLP 2023): the rule fires when the posterior probability that
    the current leader stays the leader exceeds ``threshold``. The default
    :class:`BetaPosterior` needs 4 unanimous samples for 0.95, 3 for 0.9 and 2 for 0.8;
    :class:`DirichletPosterior` is the paper's multi-answer variant.
    """

    threshold: float = 0.95
    posterior: Posterior = field(default_factory=BetaPosterior)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(
                f"AdaptiveConsistency: threshold must be in (0, 1) (got {self.threshold})"
            )

    def __call__(self, votes: Votes) -> StopDecision:
        """Fires when P(leader stays leader) > threshold; statistic: that probability."""
        p = self.posterior(votes.counts)
        return StopDecision(p > self.threshold, str(self), p)

    def needed(self, votes: Votes) -> int:
        """Leader votes still needed for the posterior to exceed the threshold."""
        counts = list(votes.counts) or [0]
        for k in range(0, 1000):
            if self.posterior([counts[0] + k, *counts[1:]]) > self.threshold:
                return k
        return _NEVER

    def __str__(self) -> str:
        return f"adaptive_consistency({self.threshold:g})"


def relative_gain(before: float, after: float) -> float | None:
    """(Q(b + Δb) − Q(b)) / Q(b), signed; ``None`` where the rule is undefined (Q(b) <= 0).

    Example:
        >>> round(relative_gain(0.969, 0.5), 2)
        -0.48

    """
    if before <= 0.0:
        return None
    return (after - before) / before


@dataclass(frozen=True, slots=True)
class RelativeGain:
    """The relative-gain stop: stop at the first step whose gain falls below ``epsilon``.

    Given Q at successive budgets b₀ < b₁ < ..., the step from bᵢ₋₁ to bᵢ has gain
    (Q(bᵢ) − Q(bᵢ₋₁)) / Q(bᵢ₋₁), *signed* (a drop is a gain below ε) and checked only
    while Q(bᵢ₋₁) > 0 (undefined otherwise: such a step never stops and breaks a run of
    low steps). The rule fires when the last ``patience`` steps all have a defined gain
    below ``epsilon`` (``patience=1``: the first low step stops). Self-consistency's
    :class:`MarginalGain` and the planner's budget edge both use it.

    Example:
        >>> RelativeGain(0.05)([0.5, 0.9, 0.92]).stop  # +80%, then +2.2% < 5%
        True
        >>> RelativeGain(0.05)([0.0, 0.0, 0.0]).stop  # undefined at Q = 0: never stops
        False

    """

    epsilon: float = 0.05
    """ε: the smallest relative gain worth another step."""
    patience: int = 1
    """Consecutive low steps needed to stop."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.epsilon):
            raise ValueError(f"RelativeGain: epsilon must be finite (got {self.epsilon})")
        if self.patience < 1:
            raise ValueError(f"RelativeGain: patience must be >= 1 (got {self.patience})")

    def gains(self, quality: Sequence[float]) -> list[float | None]:
        """The signed gain of each step (``None`` where undefined)."""
        return [relative_gain(a, b) for a, b in zip(quality, quality[1:], strict=False)]

    def __call__(self, quality: Sequence[float]) -> StopDecision:
        """Decide on Q after each step so far; statistic: the last step's gain."""
        gains = self.gains(quality)
        last = gains[-1] if gains else None
        recent = gains[-self.patience :]
        stop = len(recent) == self.patience and all(
            g is not None and g < self.epsilon for g in recent
        )
        return StopDecision(stop, str(self), last, "converged")

    def __str__(self) -> str:
        extra = f", patience={self.patience}" if self.patience != 1 else ""
        return f"relative_gain({self.epsilon:g}{extra})"


@dataclass(frozen=True, slots=True)
class MarginalGain(StopRule):
    """The anytime rule on a vote: stop when a batch's relative gain of Q falls below ε.

    Q is measured at batch boundaries (default: the leader's :class:`BetaPosterior`
    probability) and the stop is :class:`RelativeGain`: the signed gain
    (Q(b + Δb) − Q(b)) / Q(b), checked while Q(b) > 0, stops at the first batch below
    ``epsilon`` (``patience`` batches in a row, default 1). A batch that disagrees with
    the leader lowers Q, a negative gain: by the definition that stops too.
    """

    epsilon: float = 0.05
    quality: Callable[[Votes], float] = leader_probability
    patience: int = 1

    def __post_init__(self) -> None:
        if not self.epsilon > 0.0:
            raise ValueError(f"MarginalGain: epsilon must be > 0 (got {self.epsilon})")
        if self.patience < 1:
            raise ValueError(f"MarginalGain: patience must be >= 1 (got {self.patience})")

    def _rule(self) -> RelativeGain:
        return RelativeGain(self.epsilon, self.patience)

    def qualities(self, votes: Votes) -> list[float]:
        """Q after each batch (the batches needed by the rule, most recent last)."""
        ends = votes.batches[-(self.patience + 1) :]
        return [self.quality(votes.upto(n)) for n in ends]

    def gain(self, votes: Votes) -> float | None:
        """Signed relative change of Q over the last batch; ``None`` before it is defined."""
        if len(votes.batches) < 2:
            return None
        q = self.qualities(votes)
        return relative_gain(q[-2], q[-1])

    def __call__(self, votes: Votes) -> StopDecision:
        """Fires when the last ``patience`` batch gains are below epsilon; statistic: the gain."""
        decision = self._rule()(self.qualities(votes))
        return StopDecision(decision.stop, str(self), decision.statistic)

    def needed(self, votes: Votes) -> int:
        """One more batch (at least one sample) unless it fires now."""
        return 0 if self(votes) else 1

    def __str__(self) -> str:
        extra = f", patience={self.patience}" if self.patience != 1 else ""
        return f"marginal_gain({self.epsilon:g}{extra})"
