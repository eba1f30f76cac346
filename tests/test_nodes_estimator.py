"""Tests for the estimator strategies and the estimate node."""

from __future__ import annotations

from typing import Any

import pytest

from budget_graph import Budget, Meter
from budget_graph._internal import observe
from budget_graph.budget import Spend
from budget_graph.context import use_meter
from budget_graph.nodes import (
    FixedEstimator,
    HeuristicEstimator,
    LearnedEstimator,
    TaleEstimator,
    make_estimator_node,
    parse_token_budget,
)
from budget_graph.tasks.base import Item
from budget_graph.testing import BillingFakeChat

ITEM = Item(id="q", input="How many days are in a leap year?")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("150", 150),
        ("I need about 1,200 tokens.", 1200),
        ("Step 2: roughly 1.5k tokens", 1500),
        ("2 thousand tokens", 2000),
        ("3 steps, 400 tokens each", 400),
        ("no idea", None),
        ("0 tokens", None),
    ],
)
def test_parse_token_budget(text: str, expected: int | None) -> None:
    assert parse_token_budget(text) == expected


def test_fixed_clamp_and_fallback_compose() -> None:
    learned = LearnedEstimator(min_samples=1)
    est = (learned | FixedEstimator(5_000)).clamp(100, 2_000)
    assert est(ITEM) == 2_000
    learned.observe(ITEM, 50, solved=True)
    assert est(ITEM) == 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tokens": 0}, r"tokens must be >= 1 \(got 0\)"),
    ],
)
def test_fixed_validates(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FixedEstimator(**kwargs)


def test_clamp_validates_bounds() -> None:
    with pytest.raises(ValueError, match=r"max_tokens \(5\) must be >= min_tokens \(10\)"):
        FixedEstimator(1).clamp(10, 5)


def test_heuristic_grows_with_the_input() -> None:
    est = HeuristicEstimator(base=100, per_input_token=10.0, features=lambda i: 7.0)
    short, long = Item(id="a", input="x"), Item(id="b", input="x " * 50)
    assert est(short) is not None and est(long) is not None
    assert est(long) > est(short) >= 117  # type: ignore[operator]


def test_tale_asks_parses_clamps_and_is_budgeted() -> None:
    model = BillingFakeChat(texts=["You would need about 80,000 tokens"])
    meter = Meter(Budget(max_tokens=10_000))
    est = TaleEstimator(model, min_tokens=200, max_tokens=4_000)
    with use_meter(meter):
        assert est(ITEM) == 4_000
    assert meter.spent == model.billed[0] > 0


def test_tale_unparsable_answer_emits_an_event_and_falls_back() -> None:
    seen: list[str] = []

    class Obs:
        def event(self, name: str, attributes: dict[str, Any]) -> None:
            seen.append(name)

    obs = Obs()
    observe.add_observer(obs)
    try:
        est = TaleEstimator(BillingFakeChat(texts=["it depends"])) | FixedEstimator(900)
        assert est(ITEM) == 900
    finally:
        observe.remove_observer(obs)
    assert seen == ["budget.estimator_unparsable"]


def test_learned_quantile_per_class() -> None:
    est = LearnedEstimator(quantile=0.5, key=lambda i: i.id[0], min_samples=3)
    for units in (100, 300, 200, 999):
        est.observe(Item(id="a1", input=""), units, solved=units != 999)
    est.observe(Item(id="b1", input=""), 5, solved=True)
    assert est(Item(id="a9", input="")) == 200
    assert est(Item(id="b9", input="")) is None


def test_estimator_node_writes_budget_tokens_and_degrades_on_budget() -> None:
    node = make_estimator_node(FixedEstimator(700))
    assert node({"item": ITEM}) == {"budget_tokens": 700, "budget_tokens_base": 0}
    spent = {"item": ITEM, "spend": Spend(input_tokens=900, output_tokens=40)}
    assert node(spent) == {"budget_tokens": 700, "budget_tokens_base": 40}
    starved = make_estimator_node(TaleEstimator(BillingFakeChat(texts=["100"])), default=50)
    with use_meter(Meter(Budget(max_tokens=3))):
        assert starved({"item": ITEM}) == {"budget_tokens": 50, "budget_tokens_base": 0}
