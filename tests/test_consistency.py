"""build_self_consistency on a toy task replayed from hand-built recordings."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import HumanMessage

from budget_graph._internal import observe
from budget_graph.accounting import count_messages
from budget_graph.budget import Budget
from budget_graph.consistency import BUDGET_PROMPT, build_self_consistency, votes_of
from budget_graph.context import budget_config
from budget_graph.meter import Meter
from budget_graph.nodes.estimator import FixedEstimator
from budget_graph.replay import ReplayChatModel, ReplayRecord, ReplayStore
from budget_graph.stopping import AdaptiveConsistency, FixedSamples, WindowAgreement
from budget_graph.tasks.base import Item


class ToyTask:
    """Questions whose chains end in "So the answer is N."."""

    name = "toy"

    def items(self) -> Sequence[Item]:
        return [Item(id=f"q{i}", input=f"What is {i} + {i}?", gold=str(2 * i)) for i in (1, 2)]

    def cot_prompt(self, item: Item) -> str:
        return f"Think step by step, then say 'So the answer is N.'\nQ: {item.input}\nA:"

    def extract_answer(self, item: Item, completion: str) -> str | None:
        m = re.search(r"answer is (\d+)\.", completion)
        return m.group(1) if m else None

    def is_correct(self, item: Item, answer: str | None) -> bool:
        return answer == item.gold


TASK = ToyTask()
Q1 = TASK.items()[0]


def chain(answer: str | None) -> str:
    """A recorded chain (about 20 tokens) ending in ``answer``; unparsable for None."""
    body = "We add the two numbers together carefully, one digit at a time."
    return f"{body} So the answer is {answer}." if answer else f"{body} I am not sure."


def model_for(answers: Sequence[str | None], *, prompt: str | None = None) -> ReplayChatModel:
    record = ReplayRecord(
        dataset="toy",
        task="toy",
        item_id=Q1.id,
        kind="cot",
        request={"messages": [{"role": "user", "content": prompt or TASK.cot_prompt(Q1)}]},
        completions=tuple(chain(a) for a in answers),
    )
    return ReplayChatModel(store=ReplayStore([], records=[record], on_exhausted="error"))


PROMPT_TOKENS = count_messages([HumanMessage(TASK.cot_prompt(Q1))], model="replay")


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def event(self, name: str, attributes: dict[str, Any]) -> None:
            seen.append((name, attributes))

    recorder = Recorder()
    observe.add_observer(recorder)
    try:
        yield seen
    finally:
        observe.remove_observer(recorder)


def test_fixed_samples_draw_batches_through_n() -> None:
    app = build_self_consistency(
        model_for(["2", "3", "2", "2"]), task=TASK, stop=FixedSamples(4), batch_size=2
    )
    out = app.invoke({"item": Q1})
    assert [s.answer for s in out["samples"]] == ["2", "3", "2", "2"]
    assert [s.batch for s in out["samples"]] == [1, 1, 2, 2]
    assert out["answer"] == "2" and out["stop_reason"] == "samples"
    assert out["stop_rule"] == "fixed_samples(4)"
    assert out["spend"].calls == 2  # the prompt is paid once per batch of n=2
    assert out["spend"].input_tokens == 2 * PROMPT_TOKENS
    assert out["spend"].output_tokens == sum(s.output_tokens for s in out["samples"])


def test_parallel_branches_pay_the_prompt_per_sample() -> None:
    app = build_self_consistency(
        model_for(["2", "2", "3"]), task=TASK, stop=FixedSamples(3), batch_size=3, parallel=True
    )
    out = app.invoke({"item": Q1})
    assert sorted(s.answer or "" for s in out["samples"]) == ["2", "2", "3"]
    assert {s.batch for s in out["samples"]} == {1}
    assert out["spend"].calls == 3 and out["spend"].input_tokens == 3 * PROMPT_TOKENS
    assert out["answer"] == "2"


def test_window_agreement_stops_early_and_emits_the_rule_and_statistic(
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    app = build_self_consistency(
        model_for(["3", "2", "2", "2", "9", "9"]),
        task=TASK,
        stop=WindowAgreement(3) | FixedSamples(6),
        batch_size=1,
    )
    out = app.invoke({"item": Q1})
    assert len(out["samples"]) == 4 and out["answer"] == "2"
    assert out["stop_reason"] == "converged" and out["stop_rule"] == "window_agreement(3)"
    assert out["stop_statistic"] == 3.0
    stops = [a for name, a in events if name == "budget.early_stop"]
    assert stops == [
        {
            "rule": "window_agreement(3)",
            "statistic": 3.0,
            "reason": "converged",
            "samples": 4,
            "answer": "2",
            "confidence": out["confidence"],
            "item": "q1",
        }
    ]


def test_batches_ask_only_for_what_the_rule_still_needs() -> None:
    # Adaptive 0.95 needs 4 unanimous votes: one batch of 4, although batch_size is 8.
    app = build_self_consistency(
        model_for(["2"] * 8), task=TASK, stop=AdaptiveConsistency(0.95), batch_size=8
    )
    out = app.invoke({"item": Q1})
    assert len(out["samples"]) == 4 and out["spend"].calls == 1
    assert out["confidence"] == pytest.approx(31 / 32) and out["stop_reason"] == "converged"


def test_a_tie_goes_to_the_answer_seen_first() -> None:
    out = build_self_consistency(
        model_for(["4", "2"]), task=TASK, stop=FixedSamples(2), batch_size=2
    ).invoke({"item": Q1})
    assert out["answer"] == "4" and out["confidence"] == 0.5


def test_unparsable_samples_are_drawn_but_do_not_vote() -> None:
    out = build_self_consistency(
        model_for([None, "3", None, "2", "3"]), task=TASK, stop=FixedSamples(5), batch_size=5
    ).invoke({"item": Q1})
    assert [s.answer for s in out["samples"]] == [None, "3", None, "2", "3"]
    assert out["answer"] == "3"
    assert votes_of(out["samples"]).unparsable == 2


def test_no_parsable_sample_gives_no_answer() -> None:
    out = build_self_consistency(
        model_for([None, None]), task=TASK, stop=FixedSamples(2), batch_size=1
    ).invoke({"item": Q1})
    assert out["answer"] is None and out["confidence"] == 0.0
    assert out["stop_reason"] == "samples"


def test_trace_holds_the_anytime_answer_after_each_batch() -> None:
    out = build_self_consistency(
        model_for(["5", "2", "2", "2", "2", "2"]), task=TASK, stop=FixedSamples(6), batch_size=2
    ).invoke({"item": Q1})
    trace = out["trace"]
    assert [p.samples for p in trace] == [2, 4, 6]
    assert [p.answer for p in trace] == ["5", "2", "2"]
    tokens = [p.output_tokens for p in trace]
    assert tokens == sorted(tokens) and tokens[-1] == out["spend"].output_tokens
    assert trace[-1].confidence == out["confidence"]


def test_max_samples_caps_a_run_without_a_stop_rule() -> None:
    out = build_self_consistency(
        model_for(["2"] * 5), task=TASK, batch_size=2, max_samples=3
    ).invoke({"item": Q1})
    assert [s.batch for s in out["samples"]] == [1, 1, 2]
    assert out["stop_reason"] == "samples" and out["stop_rule"] == "max_samples"


# ---------------------------------------------------------------- budget


def _reserved_prompt() -> int:
    return PROMPT_TOKENS + math.ceil(PROMPT_TOKENS * 0.05)


def test_budget_sizes_the_batch_and_ends_with_the_anytime_answer(
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    limit = _reserved_prompt() + 2 * 30 + 5  # one request, two chains of <= 30 tokens
    app = build_self_consistency(
        model_for(["2", "3", "2", "2", "2"]),
        task=TASK,
        budget=Budget(max_tokens=limit),
        stop=AdaptiveConsistency(0.95),
        batch_size=5,
        max_tokens=30,
    )
    out = app.invoke({"item": Q1})
    assert [s.answer for s in out["samples"]] == ["2", "3"]
    assert out["stop_reason"] == "budget" and out["stop_rule"] == "budget"
    assert out["answer"] == "2" and out["confidence"] == 0.5
    assert out["spend"].calls == 1
    assert app.last_meter.spent <= limit
    assert out["stop_statistic"] == app.last_meter.available()
    assert [a["reason"] for n, a in events if n == "budget.early_stop"] == ["budget"]


def test_a_budget_below_one_chain_makes_no_call() -> None:
    app = build_self_consistency(
        model_for(["2"]), task=TASK, budget=Budget(max_tokens=PROMPT_TOKENS), max_tokens=30
    )
    out = app.invoke({"item": Q1})
    assert out["samples"] == [] and out["answer"] is None
    assert out["stop_reason"] == "budget" and not out.get("spend")


def test_output_only_budget_ignores_the_prompt() -> None:
    app = build_self_consistency(
        model_for(["2"] * 6),
        task=TASK,
        budget=Budget(max_tokens=70, count="output"),
        stop=FixedSamples(6),
        batch_size=6,
        sample_tokens=30,
    )
    out = app.invoke({"item": Q1})
    # Two chains of the expected 30 fit first; the chains cost 21, so a third one fits.
    assert [s.batch for s in out["samples"]] == [1, 1, 2] and out["stop_reason"] == "budget"
    assert out["spend"].output_tokens <= 70


class _LyingMeter(Meter):
    """Claims more room than it has, so the batch is sized but the reservation is refused."""

    def available(self, *, final: bool = False) -> int:
        return super().available(final=final) + 10_000


def test_a_refused_reservation_ends_the_run_gracefully() -> None:
    app = build_self_consistency(model_for(["2"] * 3), task=TASK, batch_size=3)
    meter = _LyingMeter(Budget(max_tokens=PROMPT_TOKENS))
    out = app.invoke({"item": Q1}, budget_config(meter))
    assert out["stop_reason"] == "budget" and out["stop_rule"] == "budget"
    assert out["samples"] == [] and meter.spent == 0


# ---------------------------------------------------------------- TALE budget in the prompt


def test_budget_in_prompt_states_the_budget_and_clamps_max_tokens() -> None:
    tale = BUDGET_PROMPT.format(prompt=TASK.cot_prompt(Q1), budget=5)
    app = build_self_consistency(
        model_for(["2", "2"], prompt=tale),
        task=TASK,
        stop=FixedSamples(2),
        batch_size=2,
        max_tokens=100,
        budget_in_prompt=True,
        estimator=FixedEstimator(5),
        keep_texts=True,
    )
    out = app.invoke({"item": Q1})
    assert out["sample_budget"] == 5
    assert all(s.finish_reason == "length" and s.output_tokens <= 5 for s in out["samples"])
    assert out["answer"] is None  # the cut chains never reached their answer


def test_budget_in_prompt_defaults_to_max_tokens() -> None:
    tale = BUDGET_PROMPT.format(prompt=TASK.cot_prompt(Q1), budget=60)
    out = build_self_consistency(
        model_for(["2"], prompt=tale),
        task=TASK,
        stop=FixedSamples(1),
        max_tokens=60,
        budget_in_prompt=True,
    ).invoke({"item": Q1})
    assert out["sample_budget"] == 60 and out["answer"] == "2"


# ---------------------------------------------------------------- errors and async


def test_an_unrecorded_request_ends_with_error_not_a_made_up_answer() -> None:
    other = TASK.items()[1]
    out = build_self_consistency(model_for(["2"]), task=TASK, item=other).invoke({})
    assert out["stop_reason"] == "error" and out["answer"] is None
    assert out["error"].startswith("NotRecordedError: Request not recorded")


def test_other_model_errors_propagate() -> None:
    class Broken(FakeListChatModel):
        def _call(self, *args: Any, **kwargs: Any) -> str:
            raise RuntimeError("provider down")

    app = build_self_consistency(Broken(responses=["x"]), task=TASK, item=Q1)
    with pytest.raises(RuntimeError, match="provider down"):
        app.invoke({})


def test_async_run_matches_sync() -> None:
    answers = ["2", "3", "2", "2", "2", "2"]
    kwargs: dict[str, Any] = {"task": TASK, "stop": AdaptiveConsistency(0.9), "batch_size": 2}
    sync = build_self_consistency(model_for(answers), **kwargs).invoke({"item": Q1})
    out = asyncio.run(build_self_consistency(model_for(answers), **kwargs).ainvoke({"item": Q1}))
    assert out["samples"] == sync["samples"] and out["answer"] == sync["answer"] == "2"
    assert out["spend"] == sync["spend"] and out["stop_reason"] == "converged"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1 (got 0)"),
        ({"max_samples": 0}, "max_samples must be >= 1 (got 0)"),
        ({"max_tokens": 0}, "max_tokens must be >= 1 (got 0)"),
        ({"sample_tokens": -1}, "sample_tokens must be >= 1 (got -1)"),
        ({"budget_in_prompt": True}, "budget_in_prompt=True needs an estimator or max_tokens"),
        (
            {"budget_in_prompt": True, "max_tokens": 9, "budget_prompt": "{prompt}"},
            "budget_prompt must contain {prompt} and {budget} (got '{prompt}')",
        ),
    ],
)
def test_invalid_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_self_consistency(model_for([]), task=TASK, **kwargs)


def test_an_item_is_required() -> None:
    with pytest.raises(ValueError, match="needs an item"):
        build_self_consistency(model_for([]), task=TASK).invoke({})


# ---------------------------------------------------------------- per-chain cap (issue #20)


@pytest.mark.parametrize("parallel", [False, True], ids=["n", "parallel"])
def test_a_tight_budget_still_draws_samples_issue20_item8(parallel: bool) -> None:
    # A 1,000-token chain cap, but chains cost about 21 tokens and the budget pays the
    # prompt plus 300: sizing every chain at the cap drew nothing.
    limit = _reserved_prompt() * (3 if parallel else 1) + 300
    app = build_self_consistency(
        model_for(["2"] * 12),
        task=TASK,
        budget=Budget(max_tokens=limit),
        stop=FixedSamples(12),
        batch_size=3,
        parallel=parallel,
        max_tokens=1_000,
    )
    out = app.invoke({"item": Q1})
    assert len(out["samples"]) >= 2 and out["answer"] == "2"
    assert all(s.finish_reason == "stop" for s in out["samples"])
    assert app.last_meter.spent <= limit


def test_chain_estimate_is_a_high_quantile_of_the_chains_seen() -> None:
    from budget_graph.consistency import chain_estimate

    assert chain_estimate([], 1_000) == 1_000
    assert chain_estimate([10] * 9 + [500], 1_000) == 10  # one outlier does not size all
    assert chain_estimate([10] * 8 + [500, 600], 1_000) == 500
