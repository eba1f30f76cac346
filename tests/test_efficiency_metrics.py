import math

import pytest

from budget_graph.efficiency import RunRecord
from budget_graph.efficiency.metrics import (
    ParetoPoint,
    accuracy,
    anytime_curve,
    anytime_index,
    bootstrap_ci,
    budget_grid,
    competition_rank,
    current_answer_curve,
    efficiency,
    mean_tokens,
    pareto_front,
    rankings,
)


def rec(
    correct: bool,
    gen: int = 100,
    prompt: int = 0,
    item: str = "i",
    method: str = "m",
    budget: int | None = None,
    anytime=(),
) -> RunRecord:
    return RunRecord(
        task="t",
        item=item,
        method=method,
        budget=budget,
        correct=correct,
        prompt_tokens=prompt,
        generated_tokens=gen,
        anytime=list(anytime),
    )


# ---------------------------------------------------------------- accuracy, tokens, E


def test_accuracy_and_mean_tokens_hand_computed():
    rs = [rec(True, 100, 10), rec(False, 300, 30), rec(True, 200, 20), rec(True, 400, 40)]
    assert accuracy(rs) == 0.75
    assert mean_tokens(rs) == 250
    assert mean_tokens(rs, "prompt") == 25
    assert mean_tokens(rs, "total") == 275


def test_empty_records_are_none():
    assert accuracy([]) is None
    assert mean_tokens([]) is None
    assert efficiency([]) is None
    assert bootstrap_ci([], "accuracy") is None


def test_efficiency_hand_computed():
    # 3 correct out of 4, 1000 generated tokens in all -> 0.003 per token, 3 per 1k.
    rs = [rec(True, 100, 900), rec(False, 300), rec(True, 200), rec(True, 400)]
    assert efficiency(rs) == pytest.approx(0.003)
    assert efficiency(rs, per_1k=True) == pytest.approx(3.0)
    # Total tokens: 1000 generated + 900 prompt.
    assert efficiency(rs, "total", per_1k=True) == pytest.approx(3 / 1.9)


def test_efficiency_zero_correct_is_zero_and_zero_tokens_is_none():
    assert efficiency([rec(False, 100), rec(False, 50)]) == 0.0
    assert efficiency([rec(False, 100)], per_1k=True) == 0.0
    assert efficiency([rec(True, 0), rec(False, 0)]) is None


# ---------------------------------------------------------------- anytime


def test_anytime_curve_is_the_best_answer_so_far_current_answer_curve_the_last():
    a = rec(True, anytime=[(10, 0.0), (20, 1.0), (40, 1.0)])
    b = rec(False, anytime=[(30, 1.0), (50, 0.0)])  # leader switched to a wrong answer
    curve = anytime_curve([a, b], [5, 10, 20, 30, 50])
    assert curve == [(5, 0.0), (10, 0.0), (20, 0.5), (30, 1.0), (50, 1.0)]
    current = current_answer_curve([a, b], [5, 10, 20, 30, 50])
    assert current == [(5, 0.0), (10, 0.0), (20, 0.5), (30, 1.0), (50, 0.5)]


def test_anytime_curve_without_trace_uses_final_spend():
    r = rec(True, gen=100, prompt=50)
    assert anytime_curve([r], [99, 100]) == [(99, 0.0), (100, 1.0)]
    assert anytime_curve([r], [149, 150], "total") == [(149, 0.0), (150, 1.0)]
    assert anytime_curve([], [10]) == [(10, 0.0)]


def test_anytime_index_hand_computed():
    # slopes from (0,0): 0.4/100, 0.2/100, 0.0/200 -> mean = (0.004 + 0.002 + 0) / 3
    ai = anytime_index([(100, 0.4), (200, 0.6), (400, 0.6)])
    assert ai == pytest.approx(0.002)


def test_anytime_index_single_budget_point_is_q_over_b():
    assert anytime_index([(250, 0.5)]) == pytest.approx(0.002)
    assert anytime_index([(250, 0.0)]) == 0.0
    assert anytime_index([]) is None


def test_anytime_index_rejects_bad_grid():
    with pytest.raises(ValueError, match=r"strictly increasing \(got 100 after 200\)"):
        anytime_index([(200, 0.5), (100, 0.6)])
    with pytest.raises(ValueError, match=r"positive"):
        anytime_index([(0, 0.5)])


def test_anytime_index_falling_quality_is_negative_slope():
    assert anytime_index([(100, 1.0), (200, 0.0)]) == pytest.approx((0.01 - 0.01) / 2)


def test_budget_grid():
    rs = [rec(True, gen=50, anytime=[(10, 0.0), (40, 1.0)]), rec(False, gen=80, budget=100)]
    assert budget_grid(rs, points=4, spacing="linear") == [20.0, 40.0, 60.0, 80.0]
    assert budget_grid(rs, points=4) == [10.0, 20.0, 40.0, 80.0]
    assert budget_grid(rs, points=1) == [80.0]
    assert budget_grid(rs, "total", points=2, spacing="linear") == [40.0, 80.0]
    assert budget_grid([rec(False, gen=0)]) == []
    with pytest.raises(ValueError, match=r"points must be >= 1 \(got 0\)"):
        budget_grid(rs, points=0)
    with pytest.raises(ValueError, match="Invalid spacing: 'cubic'"):
        budget_grid(rs, spacing="cubic")  # type: ignore[arg-type]


def test_anytime_index_linear_grid_telescopes_log_grid_rewards_early_quality():
    early = [rec(True, anytime=[(100, 1.0)])]  # right after 100 tokens
    late = [rec(True, anytime=[(800, 1.0)])]  # right only at the end
    linear = [200.0, 400.0, 600.0, 800.0]
    assert anytime_index(anytime_curve(early, linear)) == pytest.approx(1 / 800)
    assert anytime_index(anytime_curve(late, linear)) == pytest.approx(1 / 800)
    log = [100.0, 200.0, 400.0, 800.0]
    assert anytime_index(anytime_curve(early, log)) == pytest.approx(1 / 400)  # (1/100)/4
    assert anytime_index(anytime_curve(late, log)) == pytest.approx(1 / 1600)  # (1/400)/4


# ---------------------------------------------------------------- Pareto


def test_pareto_front_hand_computed():
    pts = [
        ParetoPoint("cheap", 100, 0.5),
        ParetoPoint("mid", 200, 0.7),
        ParetoPoint("dominated", 250, 0.6),  # mid is cheaper and better
        ParetoPoint("same-acc-more-tokens", 300, 0.7),  # mid dominates (tie on accuracy)
        ParetoPoint("best", 500, 0.9),
        ParetoPoint("best-twin", 500, 0.9),  # exact duplicate: kept
    ]
    labels = [p.label for p in pareto_front(pts)]
    assert labels == ["cheap", "mid", "best", "best-twin"]
    assert pareto_front([]) == []


# ---------------------------------------------------------------- rankings


def test_competition_rank_ties_1224():
    assert competition_rank({"a": 0.9, "b": 0.8, "c": 0.8, "d": 0.5}) == {
        "a": 1,
        "b": 2,
        "c": 2,
        "d": 4,
    }
    # float noise does not break a tie; None ranks last
    assert competition_rank({"x": 0.1 + 0.2, "y": 0.3, "z": None}) == {"x": 1, "y": 1, "z": 3}
    assert competition_rank({"a": 3, "b": 1, "c": 1}, higher_is_better=False) == {
        "a": 3,
        "b": 1,
        "c": 1,
    }


def test_rankings_diverge_and_ties():
    def runs(*cells: tuple[bool, int]) -> list[RunRecord]:
        return [rec(c, t, item=str(i)) for i, (c, t) in enumerate(cells)]

    groups = {
        # accurate but expensive
        "big": runs((True, 1000), (True, 1000), (True, 1000), (False, 1000)),
        # less accurate, cheap
        "small": runs((True, 100), (False, 100), (False, 100), (True, 100)),
        # same accuracy as small, same tokens -> tie on both
        "small2": runs((False, 100), (True, 100), (True, 100), (False, 100)),
    }
    rows = {r.label: r for r in rankings(groups)}
    assert (rows["big"].accuracy_rank, rows["big"].efficiency_rank) == (1, 3)
    assert (rows["small"].accuracy_rank, rows["small"].efficiency_rank) == (2, 1)
    assert (rows["small2"].accuracy_rank, rows["small2"].efficiency_rank) == (2, 1)
    # The ranks differ, but 4 items cannot show it: no paired test passes, no mark.
    assert not rows["big"].diverges and not rows["small"].diverges
    assert rows["small"].efficiency == pytest.approx(5.0)  # 2 correct / 400 tokens * 1000
    assert [r.label for r in rankings(groups)] == ["big", "small", "small2"]


def test_rankings_zero_tokens_rank_last_by_e():
    groups = {"free": [rec(True, 0)], "paid": [rec(False, 10)]}
    rows = {r.label: r for r in rankings(groups)}
    assert rows["free"].efficiency is None and rows["free"].efficiency_rank == 2
    assert rows["paid"].efficiency == 0.0 and rows["paid"].efficiency_rank == 1


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    rs = [rec(i % 3 != 0, 100 + 10 * i, item=str(i)) for i in range(60)]
    a1 = bootstrap_ci(rs, "accuracy", seed=1)
    a2 = bootstrap_ci(rs, "accuracy", seed=1)
    assert a1 == a2
    assert a1 is not None and a1[0] < accuracy(rs) < a1[1]
    e = bootstrap_ci(rs, "efficiency", per_1k=True)
    assert e is not None and e[0] < efficiency(rs, per_1k=True) < e[1]
    assert bootstrap_ci(rs, "accuracy", seed=2) != a1


def test_bootstrap_ci_degenerate_cases():
    assert bootstrap_ci([rec(True)] * 5, "accuracy") == (1.0, 1.0)
    assert bootstrap_ci([rec(False)] * 5, "efficiency") == (0.0, 0.0)
    assert bootstrap_ci([rec(True, 0)] * 5, "efficiency") is None  # E undefined everywhere


def test_bootstrap_ci_custom_statistic_and_validation():
    rs = [rec(True, 100), rec(False, 300)]
    lo, hi = bootstrap_ci(rs, lambda s, t: t.mean(axis=1), resamples=500)
    assert 100 <= lo <= hi <= 300 and not math.isnan(lo)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\) \(got 1.5\)"):
        bootstrap_ci(rs, "accuracy", confidence=1.5)
    with pytest.raises(ValueError, match=r"resamples must be >= 1 \(got 0\)"):
        bootstrap_ci(rs, "accuracy", resamples=0)
    with pytest.raises(ValueError, match="Invalid statistic: 'median'"):
        bootstrap_ci(rs, "median")  # type: ignore[arg-type]
