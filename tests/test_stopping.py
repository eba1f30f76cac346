"""Stop rules on hand-built vote sequences: decisions, statistics, ties and unparsable answers."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from budget_graph.stopping import (
    AdaptiveConsistency,
    AllOf,
    AnyOf,
    BetaPosterior,
    DirichletPosterior,
    FixedSamples,
    MarginalGain,
    StopDecision,
    Votes,
    WindowAgreement,
    leader_probability,
)


def votes(*batches: list[str | None]) -> Votes:
    v = Votes()
    for batch in batches:
        v = v.add(batch)
    return v


# ---------------------------------------------------------------- Votes


def test_votes_count_only_parsable_answers_and_break_ties_by_first_seen() -> None:
    v = votes(["b", None, "a", "a", "b", None])
    assert v.n == 6 and v.valid == 4 and v.unparsable == 2
    assert v.ranking == (("b", 2), ("a", 2))
    assert v.leader == "b"  # tie: b was seen first
    assert v.counts == (2, 2) and v.share == 0.5


def test_votes_without_a_parsable_answer_have_no_leader() -> None:
    v = votes([None, None])
    assert v.leader is None and v.counts == () and v.share == 0.0
    assert Votes().leader is None and Votes().n == 0


def test_votes_keep_batch_boundaries_and_prefixes() -> None:
    v = votes(["a", "b"], ["b"], ["b", "a", "a"])
    assert v.batches == (2, 3, 6)
    assert v.upto(3) == Votes(("a", "b", "b"), (2, 3))
    assert v.upto(3).leader == "b" and v.leader == "a"  # 3-3 tie, a first


# ---------------------------------------------------------------- FixedSamples


def test_fixed_samples_counts_unparsable_samples_too() -> None:
    rule = FixedSamples(3)
    assert not rule(votes(["a", None]))
    decision = rule(votes(["a", None, None]))
    assert decision.stop and decision.statistic == 3.0 and decision.reason == "samples"
    assert decision.rule == "fixed_samples(3)"
    assert rule.needed(votes(["a"])) == 2 and rule.needed(votes(["a"] * 5)) == 0


def test_fixed_samples_rejects_n_below_one() -> None:
    with pytest.raises(ValueError, match=re.escape("FixedSamples: n must be >= 1 (got 0)")):
        FixedSamples(0)


# ---------------------------------------------------------------- WindowAgreement


@pytest.mark.parametrize(
    ("answers", "fires", "run"),
    [
        (["a", "a", "a"], True, 3),
        (["b", "a", "a", "a"], True, 3),  # the window slides
        (["a", "a", "b"], False, 1),
        (["a", "a", None], False, 0),  # an unparsable sample breaks the agreement
        (["a", None, "a", "a"], False, 2),
        ([None, None, None], False, 0),
        ([], False, 0),
    ],
)
def test_window_agreement(answers: list[str | None], fires: bool, run: int) -> None:
    decision = WindowAgreement(3)(votes(answers))
    assert decision.stop is fires and decision.statistic == float(run)


def test_window_agreement_needs_the_rest_of_the_window() -> None:
    rule = WindowAgreement(5)
    assert rule.needed(Votes()) == 5
    assert rule.needed(votes(["b", "a", "a"])) == 3
    assert rule.needed(votes(["a", "a", None])) == 5
    assert rule.needed(votes(["a"] * 5)) == 0


def test_window_agreement_rejects_an_empty_window() -> None:
    with pytest.raises(ValueError, match=re.escape("window must be >= 1 (got 0)")):
        WindowAgreement(0)


# ---------------------------------------------------------------- Adaptive-Consistency


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((), Fraction(0)),
        ((1,), Fraction(3, 4)),
        ((2,), Fraction(7, 8)),
        ((3,), Fraction(15, 16)),
        ((4,), Fraction(31, 32)),
        ((1, 1), Fraction(1, 2)),  # a tie
        ((2, 2, 1), Fraction(1, 2)),  # a tie at the top; the third answer does not count
        ((3, 1), Fraction(13, 16)),
    ],
)
def test_beta_posterior_exact_values(counts: tuple[int, ...], expected: Fraction) -> None:
    assert BetaPosterior()(counts) == pytest.approx(float(expected), abs=1e-12)


def test_beta_posterior_matches_numeric_integration() -> None:
    import numpy as np

    x = np.linspace(0.0, 1.0, 200_001)
    for v1, v2 in [(3, 1), (5, 2), (7, 6), (10, 0)]:
        density = x**v1 * (1 - x) ** v2
        numeric = density[x > 0.5].sum() / density.sum()
        assert BetaPosterior()((v1, v2)) == pytest.approx(numeric, abs=1e-4)


@given(st.integers(0, 60), st.integers(0, 60))
def test_beta_posterior_is_a_symmetric_probability(v1: int, v2: int) -> None:
    p = BetaPosterior()((v1, v2)) if v1 else 0.0
    assert 0.0 <= p <= 1.0
    if v1 and v2:
        assert p + BetaPosterior()((v2, v1)) == pytest.approx(1.0)
        # One more vote for the leader makes it likelier to win. Checked on the runner-up's
        # side: the leader's probability rounds to 1.0 in a float from about 58 votes to 1.
        assert BetaPosterior()((v2, v1 + 1)) < BetaPosterior()((v2, v1))


@pytest.mark.parametrize(
    ("answers", "threshold", "fires", "statistic"),
    [
        (["a"] * 4, 0.95, True, 31 / 32),
        (["a"] * 3, 0.95, False, 15 / 16),
        (["a", "b", "a", "b"], 0.4, True, 0.5),  # a tie is 1/2 ...
        (["a", "b", "a", "b"] * 5, 0.95, False, 0.5),  # ... however many samples
        (["a", None, "a", None, "a", "a"], 0.95, True, 31 / 32),  # None does not vote
        ([None] * 6, 0.95, False, 0.0),
        (["a", "b", "a", "a", "a", "a"], 0.9, True, 15 / 16),
        (["a", "b", "a", "a", "a", "a"], 0.95, False, 15 / 16),
    ],
)
def test_adaptive_consistency_decisions(
    answers: list[str | None], threshold: float, fires: bool, statistic: float
) -> None:
    decision = AdaptiveConsistency(threshold)(votes(answers))
    assert decision.stop is fires
    assert decision.statistic == pytest.approx(statistic)
    assert decision.rule == f"adaptive_consistency({threshold:g})"


def test_adaptive_consistency_needed_samples() -> None:
    assert AdaptiveConsistency(0.95).needed(Votes()) == 4
    assert AdaptiveConsistency(0.9).needed(Votes()) == 3
    assert AdaptiveConsistency(0.8).needed(Votes()) == 2
    assert AdaptiveConsistency(0.95).needed(votes(["a", "b"])) == 5  # 6 to 1: 0.965 > 0.95
    assert AdaptiveConsistency(0.95).needed(votes(["a"] * 4)) == 0


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.1])
def test_adaptive_consistency_rejects_thresholds_outside_0_1(threshold: float) -> None:
    with pytest.raises(ValueError, match=re.escape(f"must be in (0, 1) (got {threshold})")):
        AdaptiveConsistency(threshold)


def test_dirichlet_posterior_is_deterministic_and_close_to_beta_for_two_answers() -> None:
    post = DirichletPosterior(draws=20_000, seed=1)
    assert post((4, 1)) == post((4, 1))
    assert post((4, 1)) == pytest.approx(BetaPosterior()((4, 1)), abs=0.02)
    assert post((3,)) == 1.0 and post(()) == 0.0
    assert post((3, 3, 3)) == pytest.approx(1 / 3, abs=0.03)  # three-way tie
    rule = AdaptiveConsistency(0.9, posterior=post)
    assert rule(votes(["a"] * 4 + ["b"])).stop is (post((4, 1)) > 0.9)


# ---------------------------------------------------------------- MarginalGain


def test_marginal_gain_needs_two_batches() -> None:
    rule = MarginalGain(0.05)
    decision = rule(votes(["a"] * 10))
    assert not decision and decision.statistic is None


def test_marginal_gain_fires_when_quality_stops_moving() -> None:
    rule = MarginalGain(0.05)
    # Q: 3 agree -> 15/16, 4 agree -> 31/32: gain (31/32 - 15/16) / (15/16) = 1/30
    decision = rule(votes(["a", "a", "a"], ["a"]))
    assert decision.stop and decision.statistic == pytest.approx(1 / 30)
    # 1 -> 2 agreeing: gain (7/8 - 3/4) / (3/4) = 1/6, not yet
    assert not rule(votes(["a"], ["a"]))


def test_marginal_gain_stops_when_a_batch_disagrees_the_gain_is_signed() -> None:
    rule = MarginalGain(0.05)
    decision = rule(votes(["a", "a", "a"], ["b", "b"]))  # Q falls 15/16 -> 21/32
    assert decision.stop and decision.statistic == pytest.approx(-0.3)


def test_marginal_gain_patience_needs_that_many_low_batches_in_a_row() -> None:
    rule = MarginalGain(0.05, patience=2)
    # 3 agree -> 4 agree: +1/30 (low); the batch before (1 -> 3 agree) gained +25%
    assert not rule(votes(["a"], ["a", "a"], ["a"]))
    # two low batches in a row: 3 -> 4 (+1/30), 4 -> 5 (+1/62)
    assert rule(votes(["a", "a", "a"], ["a"], ["a"])).stop
    assert str(rule) == "marginal_gain(0.05, patience=2)"
    with pytest.raises(ValueError, match=re.escape("patience must be >= 1 (got 0)")):
        MarginalGain(0.05, patience=0)


def test_marginal_gain_ignores_batches_without_a_parsable_vote() -> None:
    rule = MarginalGain(0.05)
    assert rule(votes([None, None], ["a"])).statistic is None  # Q(b) = 0: gain undefined
    assert rule(votes(["a"] * 4, [None])).stop  # Q unchanged: gain 0


def test_marginal_gain_accepts_a_quality_function() -> None:
    rule = MarginalGain(0.01, quality=lambda v: v.share)
    assert rule(votes(["a", "b"], ["a", "b"])).stop  # share 1/2 -> 1/2
    assert not rule(votes(["a", "b"], ["a", "a"]))  # 1/2 -> 3/4


def test_marginal_gain_rejects_a_non_positive_epsilon() -> None:
    with pytest.raises(ValueError, match=re.escape("epsilon must be > 0 (got 0.0)")):
        MarginalGain(0.0)


# ---------------------------------------------------------------- composition


def test_or_stops_when_any_rule_fires_and_names_it() -> None:
    rule = AdaptiveConsistency(0.95) | FixedSamples(6)
    assert isinstance(rule, AnyOf) and len(rule.rules) == 2
    early = rule(votes(["a"] * 4))
    assert early.stop and early.rule == "adaptive_consistency(0.95)"
    assert early.reason == "converged" and len(early.parts) == 2
    capped = rule(votes(["a", "b"] * 3))
    assert capped.stop and capped.rule == "fixed_samples(6)" and capped.reason == "samples"
    neither = rule(votes(["a", "b"]))
    assert not neither and neither.rule == "adaptive_consistency(0.95) | fixed_samples(6)"
    assert rule.needed(votes(["a", "b"])) == 4  # the cap comes first


def test_and_stops_only_when_every_rule_fires() -> None:
    rule = WindowAgreement(2) & FixedSamples(4)
    assert isinstance(rule, AllOf)
    assert not rule(votes(["a", "a"]))  # window agrees, too few samples
    assert not rule(votes(["a", "b", "a", "b"]))
    assert rule(votes(["b", "a", "a", "a"])).stop
    assert rule.needed(votes(["a", "a"])) == 2


def test_compositions_flatten_and_nest() -> None:
    a, b, c = FixedSamples(9), WindowAgreement(3), AdaptiveConsistency(0.9)
    assert (a | b | c) == AnyOf((a, b, c))
    assert (a & b & c) == AllOf((a, b, c))
    nested = (a | b) & c
    assert str(nested) == "(fixed_samples(9) | window_agreement(3)) & adaptive_consistency(0.9)"
    assert nested(votes(["a"] * 3)).stop  # window fires, and Q = 15/16 > 0.9


def test_decision_is_truthy_only_when_stopping() -> None:
    assert StopDecision(True, "r") and not StopDecision(False, "r")


def test_leader_probability_defaults_to_beta() -> None:
    v = votes(["a", "a", "b"])
    assert leader_probability(v) == BetaPosterior()((2, 1))
