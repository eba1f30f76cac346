"""Tests for value functions and the value node."""

from __future__ import annotations

from typing import Any

import pytest

from budget_graph import Budget, Meter
from budget_graph._internal import observe
from budget_graph.context import use_meter
from budget_graph.nodes import (
    JudgeValue,
    RewardValue,
    Score,
    TreeNode,
    ValueCache,
    VerifierValue,
    make_value_node,
)
from budget_graph.tasks.base import Item
from budget_graph.testing import BillingFakeChat

LABELS = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}
ITEM = Item(id="1", input="toy")


class ToyTask:
    """States are lines; ``goal`` on the last line is a verified solution."""

    name = "toy"
    max_depth = 3

    def items(self) -> list[Item]:
        return [ITEM]

    def cot_prompt(self, item: Item) -> str:
        return "cot"

    def extract_answer(self, item: Item, completion: str) -> str | None:
        return completion.strip().split("\n")[-1] or None

    def is_correct(self, item: Item, answer: str | None) -> bool:
        return answer == "goal"

    def propose_prompt(self, item: Item, state: str) -> str:
        return f"PROPOSE[{state}]"

    def parse_proposals(self, item: Item, state: str, completion: str) -> list[str]:
        return [state + line + "\n" for line in completion.split("\n")]

    def value_prompt(self, item: Item, state: str) -> str:
        return f"VALUE[{state}]"

    def parse_value(self, item: Item, state: str, completion: str) -> float | None:
        return LABELS.get(completion.strip().split("\n")[-1])

    def verify(self, item: Item, state: str) -> bool:
        return state.strip().split("\n")[-1] == "goal"

    def answer(self, item: Item, state: str) -> str | None:
        return "goal" if self.verify(item, state) else None


class Events:
    """Observer collecting budget events."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def event(self, name: str, attributes: dict[str, Any]) -> None:
        self.seen.append((name, attributes))


@pytest.fixture
def events() -> Any:
    obs = Events()
    observe.add_observer(obs)
    yield obs
    observe.remove_observer(obs)


def _node(text: str, node_id: str = "0.0", **kw: Any) -> TreeNode:
    return TreeNode(id=node_id, parent="0", depth=1, text=text, **kw)


def test_judge_sums_sample_labels_and_bills_the_meter() -> None:
    model = BillingFakeChat(answers={"VALUE[a": "thinking\nsure", "VALUE[b": "likely"})
    meter = Meter(Budget(max_tokens=10_000))
    judge = JudgeValue(model, ToyTask(), samples=2, batched=False)
    with use_meter(meter):
        score = judge(ITEM, _node("a\n"))
    assert score is not None and score.value == 40.0
    assert score.calls == 2 and score.units == meter.spent == sum(model.billed)
    assert score.note == "judge"


def test_unparsable_judge_output_is_a_low_value_and_an_event(events: Events) -> None:
    model = BillingFakeChat(texts=["I am not sure what to say"])
    judge = JudgeValue(model, ToyTask(), samples=1, unparsable_value=0.0)
    score = judge(ITEM, _node("x\n"))
    assert score is not None and score.value == 0.0 and score.note == "unparsable"
    assert [a["unparsable"] for n, a in events.seen if n == "budget.judge_unparsable"] == [1]


def test_cache_answers_a_repeated_prompt_without_a_call() -> None:
    model = BillingFakeChat(texts=["sure"])
    cache = ValueCache()
    judge = JudgeValue(model, ToyTask(), samples=1, cache=cache)
    first = judge(ITEM, _node("a\n"))
    second = judge(ITEM, _node("a\n", node_id="0.7"))
    assert first is not None and second is not None
    assert (first.value, second.value) == (20.0, 20.0)
    assert second.note == "cached" and second.units == 0
    assert len(model.billed) == 1 and cache.hits == 1


def test_judge_rejects_zero_samples() -> None:
    with pytest.raises(ValueError, match=r"samples must be >= 1 \(got 0\)"):
        JudgeValue(BillingFakeChat(), ToyTask(), samples=0)


def test_chain_verifier_then_reward_then_judge() -> None:
    model = BillingFakeChat(texts=["likely"])
    task = ToyTask()

    def reward(item: Item, text: str) -> float | None:
        return 0.0 if "dead" in text else None

    value = VerifierValue(task) | RewardValue(reward) | JudgeValue(model, task, samples=1)
    solved = value(ITEM, _node("goal\n"))
    dead = value(ITEM, _node("dead\n"))
    judged = value(ITEM, _node("c\n"))
    assert solved is not None and solved.solved and solved.units == 0
    assert dead is not None and dead.dead and dead.value == 0.0
    assert judged is not None and judged.value == 1.0 and judged.calls == 1
    assert len(model.billed) == 1


def test_value_node_scores_dedupes_and_marks_statuses() -> None:
    calls: list[str] = []

    def fn(item: Item, node: TreeNode) -> Score | None:
        calls.append(node.text)
        if node.text == "dead\n":
            return Score(0.0, dead=True)
        return Score(5.0, units=10, calls=1, note="judge")

    node = make_value_node(fn)
    out = node({"item": ITEM, "nodes": [
        _node("a\n", "0.0"), _node("a\n", "0.1"), _node("dead\n", "0.2"),
        _node("goal\n", "0.3", verified=True),
    ]})
    got = {n.id: n for n in out["tree"]}
    assert calls == ["a\n", "dead\n", "goal\n"]  # the duplicate got 0 without a call
    assert got["0.1"].value == 0.0 and got["0.1"].note == "duplicate"
    assert got["0.0"].value == 5.0 and got["0.0"].value_cost == 10
    assert got["0.2"].status == "dead"
    assert got["0.3"].status == "solved"
    assert out["search_stats"].value_calls == 2 and out["search_stats"].value_units == 20


def test_value_node_lazy_stop_leaves_the_rest_unvalued() -> None:
    node = make_value_node(lambda item, n: Score(20.0 if n.text == "b\n" else 1.0), stop_at=20.0)
    out = node({"item": ITEM, "nodes": [_node("a\n", "0.0"), _node("b\n", "0.1"),
                                        _node("c\n", "0.2")]})
    assert [n.id for n in out["tree"]] == ["0.0", "0.1"]


def test_value_node_ends_the_batch_on_a_refused_reservation() -> None:
    model = BillingFakeChat(texts=["sure"])
    meter = Meter(Budget(max_tokens=5))
    node = make_value_node(JudgeValue(model, ToyTask(), samples=1))
    with use_meter(meter):
        out = node({"item": ITEM, "nodes": [_node("a\n")]})
    assert out["stop_reason"] == "budget" and out["tree"] == []
    assert meter.spent == 0 and model.billed == []
