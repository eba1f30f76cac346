"""Self-consistency on the recorded date samples: in-process replay and ChatOpenAI over HTTP."""

from __future__ import annotations

import asyncio

import pytest

from budget_graph.budget import Budget
from budget_graph.consistency import build_self_consistency
from budget_graph.replay import ReplayChatModel
from budget_graph.replay.server import ReplayServer
from budget_graph.stopping import AdaptiveConsistency, FixedSamples
from budget_graph.tasks.date import DateTask

TASK = DateTask()
ITEMS = {i.id: i for i in TASK.items()}


def test_fixed_40_reproduces_the_recorded_majority(replay_chat_model: ReplayChatModel) -> None:
    item = ITEMS["12"]  # the recorded vote split 22-18 for a wrong answer
    out = build_self_consistency(
        replay_chat_model, task=TASK, stop=FixedSamples(40), batch_size=10, max_samples=40
    ).invoke({"item": item})
    assert out["answer"] == "04/29/2021" != item.gold
    assert votes_counts(out) == (22, 18)
    assert out["spend"].calls == 4 and out["stop_reason"] == "samples"


def votes_counts(out: dict) -> tuple[int, ...]:
    from budget_graph.consistency import votes_of

    return votes_of(out["samples"]).counts


@pytest.mark.integration
def test_budget_aware_run_over_http_is_billed_exactly(
    replay_chat_openai, replay_server_clean: ReplayServer, replay_chat_model: ReplayChatModel
) -> None:
    item = ITEMS["12"]
    kwargs = {
        "task": TASK,
        "budget": Budget(max_tokens=2_400),
        "stop": AdaptiveConsistency(0.95),
        "batch_size": 8,
        "max_tokens": 256,
    }
    app = build_self_consistency(replay_chat_openai(model="code-davinci-002"), **kwargs)
    out = app.invoke({"item": item})
    billed = replay_server_clean.usage()
    assert (out["spend"].input_tokens, out["spend"].output_tokens) == (
        billed["prompt_tokens"],
        billed["completion_tokens"],
    )
    assert billed["billed_requests"] == out["spend"].calls == 1
    assert len(out["samples"]) == 3  # one request with n=3: all the budget pays for
    assert out["stop_reason"] == "budget" and app.last_meter.spent <= 2_400
    # The in-process replay model counts the same tokens and serves the same chains.
    local = build_self_consistency(replay_chat_model, **kwargs).invoke({"item": item})
    assert local["samples"] == out["samples"] and local["spend"].units == out["spend"].units


@pytest.mark.integration
def test_async_over_http(replay_chat_openai, replay_server_clean: ReplayServer) -> None:
    app = build_self_consistency(
        replay_chat_openai(model="code-davinci-002"),
        task=TASK,
        stop=AdaptiveConsistency(0.8),
        batch_size=1,
    )
    out = asyncio.run(app.ainvoke({"item": ITEMS["0"]}))
    assert out["answer"] == ITEMS["0"].gold and out["stop_reason"] == "converged"
    assert replay_server_clean.usage()["billed_requests"] == len(out["samples"]) == 2
