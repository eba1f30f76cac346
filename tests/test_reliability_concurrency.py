"""Concurrency: many budgeted graph runs at once (threads, asyncio), one budget over branches,
and 200 concurrent streaming requests with injected faults against the replay server.
"""

from __future__ import annotations

import asyncio
import operator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import httpx
import openai
import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from budget_graph import (
    Budget,
    BudgetExceededError,
    BudgetState,
    Meter,
    budgeted,
    guard,
    with_budget,
)
from tests.reliability_helpers import (
    FAST_RETRY,
    PROMPTS,
    assert_accounted,
    billed_requests,
    billed_tokens,
    openai_chat,
)

pytestmark = pytest.mark.integration


class FanState(BudgetState):
    outs: Annotated[list[str], operator.add]
    run: str


def _fan_graph(llm: Any, width: int) -> Any:
    @guard(name="work")
    def work(state: dict) -> dict:
        text = "".join(str(c.content) for c in llm.stream(PROMPTS[state["i"]], max_tokens=60))
        return {"outs": [f"{state['run']}:{state['i']}:{len(text)}"]}

    async def awork(state: dict) -> dict:
        parts = [str(c.content) async for c in llm.astream(PROMPTS[state["i"]], max_tokens=60)]
        return {"outs": [f"{state['run']}:{state['i']}:{len(''.join(parts))}"]}

    b = StateGraph(FanState)
    b.add_node("work", work)
    b.add_node("awork", guard(awork, name="work"))
    b.add_conditional_edges(
        START,
        lambda s: [Send("awork" if s["run"].startswith("a") else "work",
                        {"i": i, "run": s["run"]}) for i in range(width)],
        ["work", "awork"],
    )
    b.add_edge("work", END)
    b.add_edge("awork", END)
    return b.compile()


def _check_runs(outs: list[dict], limit: int, server: Any) -> None:
    for out in outs:
        run = {o.split(":")[0] for o in out["outs"]}
        assert run == {out["run"]}  # no run saw another run's results
        assert out["spend"].units <= limit
        assert out["spend"].calls == len(out["outs"])
    assert sum(o["spend"].total_tokens for o in outs) == billed_tokens(server)
    assert sum(o["spend"].calls for o in outs) == billed_requests(server)


def test_many_runs_in_threads_share_nothing(replay_server_clean) -> None:
    limit = 1_700  # each run's 6 branches fit 3 calls: every run is capped on its own
    app = with_budget(_fan_graph(budgeted(openai_chat(replay_server_clean)), 6),
                      Budget(max_tokens=limit))
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda r: app.invoke({"outs": [], "run": f"t{r}"}),
                             range(16)))
    _check_runs(outs, limit, replay_server_clean)
    assert all(o["stop_reason"] == "budget" for o in outs)
    assert all(1 <= o["spend"].calls < 6 for o in outs)


async def test_many_runs_in_asyncio_share_nothing(replay_server_clean) -> None:
    limit = 1_700
    llm = budgeted(openai_chat(replay_server_clean, async_client=True))
    app = with_budget(_fan_graph(llm, 6), Budget(max_tokens=limit))
    outs = await asyncio.gather(*(app.ainvoke({"outs": [], "run": f"a{r}"})
                                  for r in range(24)))
    _check_runs(list(outs), limit, replay_server_clean)
    assert all(1 <= o["spend"].calls < 6 for o in outs)


@pytest.mark.parametrize("limit", [20_000, 4_000])
def test_one_budget_over_parallel_branches(limit, replay_server_clean) -> None:
    app = with_budget(_fan_graph(budgeted(openai_chat(replay_server_clean)), 20),
                      Budget(max_tokens=limit))
    out = app.invoke({"outs": [], "run": "one"})
    _check_runs([out], limit, replay_server_clean)
    assert app.last_meter.open_reservations == 0 and app.last_meter.reserved == 0
    assert (out["spend"].calls == 20) == (limit == 20_000)


@pytest.mark.faults
async def test_200_concurrent_streams_with_faults(replay_server_clean) -> None:
    """200 streaming requests at once, a quarter faulted; every reservation settles."""
    limit = 150_000  # room for every call: the counts below are exact
    meter = Meter(Budget(max_tokens=limit))
    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=250, max_keepalive_connections=250), timeout=60)
    specs = ["429;times=1;retry-after=0.01", "500;times=1", "drop=0;times=1",
             "drop=4", "latency=0.05", None, None, None]
    outcomes: dict[str, int] = {}

    async def one(i: int) -> None:
        spec = specs[i % len(specs)]
        chat = openai_chat(replay_server_clean, f"{spec};id=s{i}" if spec else None,
                           http_async_client=client)
        llm = budgeted(chat, meter=meter, retry=FAST_RETRY)
        try:
            parts = [c async for c in llm.astream(PROMPTS[i % 20], max_tokens=80)]
            kind = "ok" if parts else "empty"
        except BudgetExceededError:
            kind = "refused"
        except openai.APIConnectionError:  # drop=4: a deliberate mid-stream failure
            kind = "dropped"
        outcomes[kind] = outcomes.get(kind, 0) + 1

    await asyncio.gather(*(one(i) for i in range(200)))
    await client.aclose()
    assert sum(outcomes.values()) == 200
    assert outcomes == {"ok": 175, "dropped": 25}
    assert billed_requests(replay_server_clean) == 175
    assert_accounted(meter, replay_server_clean, limit=limit)
