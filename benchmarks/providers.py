"""Provider clients under a hard cap, checked on the provider's side (issue #20).

Real LangChain clients (``ChatOpenAI`` incl. a reasoning model, ``AzureChatOpenAI``,
``ChatAnthropic``, ``ChatGroq``, ``ChatOllama``, each if its package is installed) talk
to the local replay server, which speaks the OpenAI, Anthropic, Groq and Ollama wire
protocols (Azure's requests are forwarded to it in process) and keeps a ledger of every request: the
output cap it carried and the field it came in, and the tokens it billed. Each client
runs sync, async, streamed (sync and async) calls until the budget refuses one, and
``Send`` fan-outs (5 branches) under a roomy budget and near the cap.

Per scenario, from the server's ledger:

- overshoot: tokens billed beyond the budget;
- miscounts: the meter's spend differs from what the server billed;
- wrong_param: a request whose cap was missing, in the wrong field for the client
  (reasoning models and Azure need ``max_completion_tokens``, Ollama
  ``options.num_predict``), or above the model's maximum output (its profile);
- lost branches: a roomy fan-out whose branches did not all answer.

A scenario whose client raises (e.g. it rejects the cap's keyword) counts as one
wrong parameter, with the error printed.

Last line: ``clients=<n> overshoot=<o> miscounts=<m> wrong_param=<w>``.
"""

from __future__ import annotations

import asyncio
import operator
import sys
from collections.abc import Callable
from typing import Annotated, Any

import httpx
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from typing_extensions import TypedDict

from budget_graph import Budget, Meter, budgeted
from budget_graph.errors import BudgetExceededError
from budget_graph.providers import profile_max_output, unwrap_chat_model
from budget_graph.replay.server import ReplayServer
from budget_graph.tasks.game24 import Game24Task

TASK = Game24Task()
PROMPTS = [TASK.cot_prompt(item) for item in TASK.items()[:40]]
RUNNER = asyncio.Runner()
NEAR_CAP = 2_600  # about five calls of a 437-token prompt and its answer
ROOMY = 100_000


def _forwarding(server: ReplayServer) -> tuple[httpx.Client, httpx.AsyncClient]:
    """HTTP clients that send Azure's URLs to the replay server's chat completions."""
    target = f"{server.base_url}/chat/completions"

    def forward(request: httpx.Request) -> httpx.Response:
        r = httpx.post(
            target,
            content=request.content,
            headers={"content-type": "application/json"},
            timeout=60,
        )
        return httpx.Response(
            r.status_code, content=r.content, headers={"content-type": r.headers["content-type"]}
        )

    async def aforward(request: httpx.Request) -> httpx.Response:
        async with httpx.AsyncClient(timeout=60) as client:
            r = await client.post(
                target, content=request.content, headers={"content-type": "application/json"}
            )
        return httpx.Response(
            r.status_code, content=r.content, headers={"content-type": r.headers["content-type"]}
        )

    return (
        httpx.Client(transport=httpx.MockTransport(forward)),
        httpx.AsyncClient(transport=httpx.MockTransport(aforward)),
    )


def clients(server: ReplayServer) -> dict[str, tuple[Callable[[], Any], str]]:
    """Client factories and the field their cap must arrive in."""
    out: dict[str, tuple[Callable[[], Any], str]] = {}
    try:
        from langchain_openai import AzureChatOpenAI, ChatOpenAI
    except ImportError:
        pass
    else:
        out["ChatOpenAI(gpt-4)"] = (
            lambda: ChatOpenAI(
                base_url=server.base_url, api_key="replay", model="gpt-4", max_retries=0
            ),
            "max_completion_tokens",
        )
        out["ChatOpenAI(o3-mini)"] = (
            lambda: ChatOpenAI(
                base_url=server.base_url, api_key="replay", model="o3-mini", max_retries=0
            ),
            "max_completion_tokens",
        )
        sync_http, async_http = _forwarding(server)
        out["AzureChatOpenAI(gpt-4o)"] = (
            lambda: AzureChatOpenAI(
                azure_endpoint="http://azure.invalid",
                azure_deployment="gpt-4o",
                model="gpt-4o",
                api_version="2024-10-21",
                api_key="replay",
                max_retries=0,
                http_client=sync_http,
                http_async_client=async_http,
            ),
            "max_completion_tokens",
        )
    try:
        from langchain_anthropic import ChatAnthropic
    except ImportError:
        pass
    else:
        out["ChatAnthropic(claude-sonnet-4-5)"] = (
            lambda: ChatAnthropic(
                base_url=server.root_url, api_key="replay", model="claude-sonnet-4-5", max_retries=0
            ),
            "max_tokens",
        )
    try:
        from langchain_groq import ChatGroq
    except ImportError:
        pass
    else:
        out["ChatGroq(llama-3.3-70b-versatile)"] = (
            lambda: ChatGroq(
                base_url=server.root_url,
                api_key="replay",
                model="llama-3.3-70b-versatile",
                max_retries=0,
            ),
            "max_tokens",
        )
    try:
        from langchain_ollama import ChatOllama
    except ImportError:
        pass
    else:
        out["ChatOllama(llama3)"] = (
            lambda: ChatOllama(base_url=server.root_url, model="llama3"),
            "options.num_predict",
        )
    return out


def _calls(llm: Any, mode: str) -> int:
    """Call until the budget refuses; returns how many calls were answered."""
    if mode in ("async", "astream"):
        # One event loop for the whole benchmark: clients cache their async HTTP pools.
        return RUNNER.run(_acalls(llm, mode))
    answered = 0
    for prompt in PROMPTS:
        try:
            if mode == "sync":
                llm.invoke(prompt)
            else:
                for _ in llm.stream(prompt):
                    pass
        except BudgetExceededError:
            return answered
        answered += 1
    return answered


async def _acalls(llm: Any, mode: str) -> int:
    answered = 0
    for prompt in PROMPTS:
        try:
            if mode == "async":
                await llm.ainvoke(prompt)
            else:
                async for _ in llm.astream(prompt):
                    pass
        except BudgetExceededError:
            return answered
        answered += 1
    return answered


class FanOut(TypedDict):
    answers: Annotated[list[str], operator.add]
    refused: Annotated[int, operator.add]


def _fan_out(llm: Any, branches: int = 5) -> tuple[int, int]:
    def work(state: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"answers": [llm.invoke(PROMPTS[state["i"]]).text]}
        except BudgetExceededError:
            return {"refused": 1}

    b: StateGraph[Any, Any, Any, Any] = StateGraph(FanOut)
    b.add_node("work", work)
    b.add_conditional_edges(
        START, lambda s: [Send("work", {"i": i}) for i in range(branches)], ["work"]
    )
    b.add_edge("work", END)
    out = b.compile().invoke({"answers": [], "refused": 0})
    return len(out["answers"]), out["refused"]


def run_scenario(
    server: ReplayServer, make: Callable[[], Any], field: str, scenario: str
) -> dict[str, Any]:
    """One scenario of one client, checked against the server's ledger."""
    server.reset()
    limit = ROOMY if scenario == "fanout-roomy" else NEAR_CAP
    meter = Meter(Budget(max_tokens=limit))
    model = make()
    llm = budgeted(model, meter=meter)
    lost, error = 0, ""
    try:
        if scenario.startswith("fanout"):
            answered, refused = _fan_out(llm)
            if scenario == "fanout-roomy":
                lost = 5 - answered
        else:
            answered, refused = _calls(llm, scenario), 1
    except Exception as exc:  # noqa: BLE001 - a client rejecting its arguments is a finding
        answered, refused, error = 0, 0, f"{type(exc).__name__}: {exc}"[:100]
    ledger = server.usage()
    billed = ledger["prompt_tokens"] + ledger["completion_tokens"]
    top = profile_max_output(unwrap_chat_model(model)[0])
    wrong = sum(
        1
        for e in ledger["entries"]
        if e["cap_param"] != field
        or e["max_tokens"] is None
        or (top is not None and e["max_tokens"] > top)
    )
    return {
        "scenario": scenario,
        "answered": answered,
        "refused": refused,
        "limit": limit,
        "billed": billed,
        "spent": meter.spent,
        "overshoot": max(billed - limit, 0),
        "miscount": int(meter.spent != billed),
        "wrong_param": wrong + bool(error),
        "lost": lost,
        "requests": ledger["requests"],
        "error": error,
    }


SCENARIOS = ("sync", "async", "stream", "astream", "fanout-roomy", "fanout-near-cap")


def main() -> int:
    with ReplayServer() as server:
        found = clients(server)
        totals = {"overshoot": 0, "miscount": 0, "wrong_param": 0, "lost": 0}
        print(
            f"{'client':34} {'scenario':16} {'answered':>8} {'limit':>7} {'billed':>7} "
            f"{'spent':>7} {'over':>5} {'miscount':>8} {'wrong':>5} {'lost':>4}"
        )
        for name, (make, field) in found.items():
            for scenario in SCENARIOS:
                row = run_scenario(server, make, field, scenario)
                for key in totals:
                    totals[key] += row[key]
                print(
                    f"{name:34} {scenario:16} {row['answered']:>8} {row['limit']:>7} "
                    f"{row['billed']:>7} {row['spent']:>7} {row['overshoot']:>5} "
                    f"{row['miscount']:>8} {row['wrong_param']:>5} {row['lost']:>4}"
                )
                if row["error"]:
                    print(f"    error (counted as a wrong parameter): {row['error']}")
    print(f"lost_branches={totals['lost']}")
    print(
        f"clients={len(found)} overshoot={totals['overshoot']} "
        f"miscounts={totals['miscount']} wrong_param={totals['wrong_param']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
