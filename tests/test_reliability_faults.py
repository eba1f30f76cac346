"""Fault injection: 429 / 5xx / latency / dropped streams through budgeted ChatOpenAI.

Every test drives the replay HTTP server's faults through the real client stack and
then compares the client's meter with the server's billing ledger: the final spend
equals the billed usage, never exceeds the budget, and every reservation was
committed or released.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from budget_graph import Budget, BudgetExceededError, Meter, budgeted
from budget_graph.replay.faults import Fault
from budget_graph.retry import RetryPolicy
from budget_graph.tasks.game24 import Game24Task
from tests.reliability_helpers import (
    FAST_RETRY,
    PROMPTS,
    assert_accounted,
    billed_requests,
    billed_tokens,
    openai_chat,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]

MODES = ["invoke", "ainvoke", "stream", "astream"]
PROMPT = PROMPTS[0]


async def _call(llm: Any, mode: str, prompt: str = PROMPT, **kwargs: Any) -> str:
    if mode == "invoke":
        return str(llm.invoke(prompt, **kwargs).content)
    if mode == "ainvoke":
        return str((await llm.ainvoke(prompt, **kwargs)).content)
    if mode == "stream":
        return "".join(str(c.content) for c in llm.stream(prompt, **kwargs))
    return "".join([str(c.content) async for c in llm.astream(prompt, **kwargs)])


# Each fault is answered by our RetryPolicy; the request after the faulted ones succeeds.
RETRIED_FAULTS = {
    "429": ("429;times=2;retry-after=0.02", [429, 429, 200]),
    "500": ("500;times=2", [500, 500, 200]),
    "503": ("503;times=1", [503, 200]),
    "latency": ("latency=0.05", [200]),
    "drop-before-first-chunk": ("drop=0;times=1", [200, 200]),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", sorted(RETRIED_FAULTS))
async def test_retried_fault_is_counted_once(fault, mode, replay_server_clean) -> None:
    spec, statuses = RETRIED_FAULTS[fault]
    meter = Meter(Budget(max_tokens=5_000))
    llm = budgeted(
        openai_chat(replay_server_clean, spec, async_client=mode.startswith("a")),
        meter=meter,
        retry=FAST_RETRY,
    )
    text = await _call(llm, mode, max_tokens=200)
    assert text.startswith("Steps:")
    entries = replay_server_clean.usage()["entries"]
    assert [e["status"] for e in entries] == statuses
    assert billed_requests(replay_server_clean) == 1
    assert_accounted(meter, replay_server_clean, limit=5_000)


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_stream_dropped_after_text_is_not_retried_and_costs_nothing(
    mode, replay_server_clean
) -> None:
    meter = Meter(Budget(max_tokens=5_000))
    llm = budgeted(
        openai_chat(replay_server_clean, "drop=3", async_client=mode == "astream"),
        meter=meter,
        retry=FAST_RETRY,
    )
    with pytest.raises(openai.APIConnectionError):
        await _call(llm, mode, max_tokens=200)
    # Text already reached the caller: a retry would repeat it, so the error surfaces.
    assert [e["reason"] for e in replay_server_clean.usage()["entries"]] == ["dropped"]
    assert_accounted(meter, replay_server_clean)
    assert meter.spent == 0


@pytest.mark.parametrize("mode", MODES)
async def test_retries_exhausted_release_everything(mode, replay_server_clean) -> None:
    meter = Meter(Budget(max_tokens=5_000))
    policy = RetryPolicy(max_attempts=3, initial_wait_s=0.0, max_wait_s=0.05)
    llm = budgeted(
        openai_chat(replay_server_clean, "429;retry-after=0", async_client=mode.startswith("a")),
        meter=meter,
        retry=policy,
    )
    with pytest.raises(openai.RateLimitError):
        await _call(llm, mode, max_tokens=200)
    assert [e["status"] for e in replay_server_clean.usage()["entries"]] == [429] * 3
    assert_accounted(meter, replay_server_clean)
    assert meter.spent == 0


def test_client_side_retries_without_our_policy(replay_server_clean) -> None:
    """Users who already retry in the client leave ``retry`` unset: still counted once."""
    meter = Meter(Budget(max_tokens=5_000))
    llm = budgeted(
        openai_chat(replay_server_clean, "429;times=2;retry-after=0.01", max_retries=3),
        meter=meter,
    )
    llm.invoke(PROMPT, max_tokens=200)
    assert [e["status"] for e in replay_server_clean.usage()["entries"]] == [429, 429, 200]
    assert_accounted(meter, replay_server_clean)


def test_n_samples_under_rate_limits(replay_server_clean) -> None:
    """A judge-style ``n=3`` request pays its prompt once, retried or not."""
    meter = Meter(Budget(max_tokens=5_000))
    llm = budgeted(
        openai_chat(replay_server_clean, "429;times=1;retry-after=0.01"),
        meter=meter,
        retry=FAST_RETRY,
    )
    result = llm.generate([[HumanMessage(PROMPT)]], n=3, max_tokens=100)
    assert len(result.generations[0]) == 3
    assert_accounted(meter, replay_server_clean)


@pytest.mark.parametrize("mode", MODES)
async def test_cap_holds_under_mixed_faults(mode, replay_server_clean) -> None:
    """Call after call under a mix of faults until the budget refuses: spend == billed <= cap."""
    limit = 2_500
    meter = Meter(Budget(max_tokens=limit))
    faults = ["429;times=1;retry-after=0", "500;times=1", "drop=0;times=1", "latency=0.01", None]
    done = refused = 0
    for i, prompt in enumerate(PROMPTS):
        spec = faults[i % len(faults)]
        llm = budgeted(
            openai_chat(
                replay_server_clean,
                f"{spec};id={i}" if spec else None,
                async_client=mode.startswith("a"),
            ),
            meter=meter,
            retry=FAST_RETRY,
        )
        try:
            await _call(llm, mode, prompt, max_tokens=150)
            done += 1
        except BudgetExceededError:
            refused += 1
            break
    assert done >= 3 and refused == 1
    assert_accounted(meter, replay_server_clean, limit=limit)


async def test_concurrent_calls_under_faults_share_one_meter(replay_server_clean) -> None:
    """40 concurrent async calls, a third of them faulted, on one tight budget."""
    limit = 8_000
    meter = Meter(Budget(max_tokens=limit))
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=100), timeout=60)
    faults = ["429;times=1;retry-after=0.01", "500;times=1", "drop=0;times=1"]

    async def one(i: int) -> str:
        spec = f"{faults[i % 3]};id=c{i}" if i % 3 == 0 else None
        chat = openai_chat(replay_server_clean, spec, http_async_client=client)
        llm = budgeted(chat, meter=meter, retry=FAST_RETRY)
        try:
            return await _call(llm, "astream" if i % 2 else "ainvoke", PROMPTS[i % 20],
                               max_tokens=100)
        except BudgetExceededError:
            return "refused"

    outs = await asyncio.gather(*(one(i) for i in range(40)))
    assert "refused" in outs and any(o.startswith("Steps:") for o in outs)
    assert_accounted(meter, replay_server_clean, limit=limit)


class _UsageThenDrop(BaseChatModel):
    """Streams text and its usage, then the connection drops (the provider billed it)."""

    @property
    def _llm_type(self) -> str:
        return "usage-then-drop"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        raise NotImplementedError

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        yield ChatGenerationChunk(message=AIMessageChunk(content="partial"))
        usage = {"input_tokens": 8, "output_tokens": 5, "total_tokens": 13}
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=usage))
        raise ConnectionError("connection dropped after the usage chunk")


def test_failed_attempt_the_provider_billed_is_counted() -> None:
    meter = Meter(Budget(max_tokens=1_000))
    llm = budgeted(_UsageThenDrop(), meter=meter, retry=FAST_RETRY)
    with pytest.raises(ConnectionError):
        list(llm.stream("hi", max_tokens=10))
    assert meter.spent == 13 and meter.spend.calls == 1
    assert meter.reserved == 0 and meter.open_reservations == 0


def test_timed_out_attempt_is_not_lost(replay_server_clean) -> None:
    meter = Meter(Budget(max_tokens=5_000))
    llm = budgeted(
        openai_chat(replay_server_clean, "latency=0.4;times=1", timeout=0.15),
        meter=meter,
        retry=FAST_RETRY,
    )
    llm.invoke(PROMPT, max_tokens=200)
    deadline = time.monotonic() + 10
    while billed_requests(replay_server_clean) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the server finishes (and bills) the abandoned request late
    assert billed_requests(replay_server_clean) == 2
    assert meter.spent >= billed_tokens(replay_server_clean)


# -- the planner ----------------------------------------------------------------------------

PLANNER_FAULTS = {
    "429": Fault(status=429, retry_after_s=0.01),
    "500": Fault(status=500),
    "latency": Fault(latency_s=0.01),
    "drop": Fault(drop_after_chunks=0),
}


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
@pytest.mark.parametrize("fault", sorted(PLANNER_FAULTS))
async def test_planner_under_faults(fault, mode, replay_server_clean) -> None:
    from budget_graph.planner import build_planner

    task = Game24Task()
    limit = 6_000
    # The planner wraps its model with budgeted(); the client's own retries (max_retries)
    # answer the faults, the first 2 requests of the run each get one.
    replay_server_clean.faults.inject(PLANNER_FAULTS[fault], 2)
    llm = openai_chat(replay_server_clean, max_retries=3, async_client=mode == "ainvoke")
    app = build_planner(llm, task=task, budget=Budget(max_tokens=limit), breadth=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "invoke":
            out = app.invoke({"item": task.items()[0]})
        else:
            out = await app.ainvoke({"item": task.items()[0]})
    assert out["stop_reason"] in ("budget", "solved", "depth", "converged")
    assert out["spend"].units == app.last_meter.spent
    assert out["spend"].total_tokens == billed_tokens(replay_server_clean)
    assert out["spend"].calls == billed_requests(replay_server_clean) >= 2
    assert_accounted(app.last_meter, replay_server_clean, limit=limit)


# -- self-consistency -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
@pytest.mark.parametrize("fault", ["429", "500", "drop"])
async def test_self_consistency_under_faults(fault, mode, replay_server_clean) -> None:
    from budget_graph.consistency import build_self_consistency

    task = Game24Task()
    limit = 4_000
    replay_server_clean.faults.inject(PLANNER_FAULTS[fault], 2)
    llm = openai_chat(replay_server_clean, max_retries=3, async_client=mode == "ainvoke")
    app = build_self_consistency(llm, task=task, budget=Budget(max_tokens=limit),
                                 batch_size=3, parallel=mode == "ainvoke")
    if mode == "invoke":
        out = app.invoke({"item": task.items()[0]})
    else:
        out = await app.ainvoke({"item": task.items()[0]})
    assert out["stop_reason"] == "budget" and out["answer"]
    assert out["spend"].total_tokens == billed_tokens(replay_server_clean)
    assert out["spend"].calls == billed_requests(replay_server_clean)
    assert_accounted(app.last_meter, replay_server_clean, limit=limit)


# -- the agent middleware -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
@pytest.mark.parametrize("fault", ["429", "500", "latency", "drop"])
async def test_agent_middleware_under_faults(fault, mode, replay_server_clean) -> None:
    from langchain.agents import create_agent
    from langgraph.checkpoint.memory import InMemorySaver

    from budget_graph.middleware import TokenBudgetMiddleware

    replay_server_clean.faults.inject(PLANNER_FAULTS[fault], 2)
    llm = openai_chat(replay_server_clean, max_retries=3, async_client=mode == "ainvoke")
    mw = TokenBudgetMiddleware(run_limit=1_000, thread_limit=1_500, count="total")
    agent = create_agent(llm, tools=[], middleware=[mw], checkpointer=InMemorySaver())
    spent = []
    for i in range(3):  # fresh threads: the replay only knows single-turn prompts
        cfg = {"configurable": {"thread_id": f"{fault}-{i}"}}
        payload = {"messages": [HumanMessage(PROMPTS[i])]}
        out = agent.invoke(payload, cfg) if mode == "invoke" else await agent.ainvoke(
            payload, cfg)
        assert str(out["messages"][-1].content).startswith("Steps:")
        values = agent.get_state(cfg).values
        assert values["run_token_spend"] == values["thread_token_spend"] <= 1_000
        spent.append(values["thread_token_spend"])
    assert sum(spent) == billed_tokens(replay_server_clean)
    assert billed_requests(replay_server_clean) == 3


async def test_agent_middleware_refuses_before_sending(replay_server_clean) -> None:
    from langchain.agents import create_agent
    from langgraph.checkpoint.memory import InMemorySaver

    from budget_graph.middleware import TokenBudgetMiddleware

    mw = TokenBudgetMiddleware(run_limit=300, count="total")  # less than the prompt
    agent = create_agent(openai_chat(replay_server_clean), tools=[], middleware=[mw],
                         checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "tiny"}}
    out = agent.invoke({"messages": [HumanMessage(PROMPT)]}, cfg)
    assert "300" in str(out["messages"][-1].content)
    assert replay_server_clean.usage()["requests"] == 0  # nothing was sent
    assert agent.get_state(cfg).values.get("run_token_spend", 0) == 0


def test_nested_budgeted_counts_once() -> None:
    from budget_graph.context import use_meter
    from budget_graph.testing import BillingFakeChat

    fake = BillingFakeChat(texts=["alpha beta gamma"])
    meter = Meter(Budget(max_tokens=1_000))
    with use_meter(meter):
        budgeted(budgeted(fake, retry=FAST_RETRY)).invoke("hi", max_tokens=20)
    assert meter.spent == sum(fake.billed)
