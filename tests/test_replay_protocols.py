"""The replay server's Anthropic, Ollama and Groq protocols, through their real clients."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage

from budget_graph.accounting import count_messages
from budget_graph.replay.faults import Fault
from budget_graph.replay.server import ReplayServer
from budget_graph.tasks.game24 import Game24Task

pytestmark = pytest.mark.integration

anthropic = pytest.importorskip("langchain_anthropic")
ollama = pytest.importorskip("langchain_ollama")

TASK = Game24Task()
PROMPT = TASK.cot_prompt(TASK.items()[0])
PROMPT_TOKENS = count_messages([HumanMessage(PROMPT)])


def _clients(server: ReplayServer) -> dict[str, Any]:
    out = {
        "anthropic": anthropic.ChatAnthropic(
            base_url=server.root_url,
            api_key="replay",
            model="claude-sonnet-4-5",
            max_tokens=40,
            max_retries=2,
        ),
        "ollama": ollama.ChatOllama(base_url=server.root_url, model="llama3", num_predict=40),
    }
    try:
        from langchain_groq import ChatGroq
    except ImportError:
        return out
    out["groq"] = ChatGroq(
        base_url=server.root_url,
        api_key="replay",
        model="llama-3.3-70b-versatile",
        max_tokens=40,
        max_retries=0,
    )
    return out


def _client(name: str, server: ReplayServer) -> Any:
    found = _clients(server)
    if name not in found:
        pytest.skip(f"{name}'s LangChain package is not installed")
    return found[name]


@pytest.mark.parametrize("name", ["anthropic", "ollama", "groq"])
def test_invoke_reports_the_billed_usage_and_the_cap_arrives(
    name: str, replay_server_clean: ReplayServer
) -> None:
    msg = _client(name, replay_server_clean).invoke(PROMPT)
    assert msg.usage_metadata["input_tokens"] == PROMPT_TOKENS
    assert msg.usage_metadata["output_tokens"] == 40  # cut at the cap
    (entry,) = replay_server_clean.usage()["entries"]
    assert entry["protocol"] == name and entry["billed"]
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (PROMPT_TOKENS, 40)
    assert entry["max_tokens"] == 40
    fields = {"anthropic": "max_tokens", "ollama": "options.num_predict", "groq": "max_tokens"}
    assert entry["cap_param"] == fields[name]


@pytest.mark.parametrize("name", ["anthropic", "ollama", "groq"])
def test_streamed_usage_is_counted_once(name: str, replay_server_clean: ReplayServer) -> None:
    chunks = list(_client(name, replay_server_clean).stream(PROMPT))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert isinstance(merged, AIMessageChunk) and len(chunks) > 3
    assert merged.usage_metadata["input_tokens"] == PROMPT_TOKENS
    assert merged.usage_metadata["output_tokens"] == 40
    assert replay_server_clean.usage()["completion_tokens"] == 40


@pytest.mark.parametrize("name", ["anthropic", "ollama", "groq"])
async def test_async_invoke(name: str, replay_server_clean: ReplayServer) -> None:
    msg = await _client(name, replay_server_clean).ainvoke(PROMPT)
    assert msg.usage_metadata["output_tokens"] == 40


def test_anthropic_system_prompt_is_part_of_the_request(replay_server_clean) -> None:
    llm = _clients(replay_server_clean)["anthropic"]
    with pytest.raises(Exception, match="not recorded"):
        llm.invoke([SystemMessage("be brief"), HumanMessage(PROMPT)])
    entry = replay_server_clean.usage()["entries"][-1]
    assert (entry["status"], entry["reason"], entry["billed"]) == (400, "not_recorded", False)


def test_ollama_non_streaming_body(replay_server_clean: ReplayServer) -> None:
    body = httpx.post(
        f"{replay_server_clean.root_url}/api/chat",
        json={
            "model": "llama3",
            "stream": False,
            "options": {"num_predict": 7},
            "messages": [{"role": "user", "content": PROMPT}],
        },
    ).json()
    assert body["done"] and body["done_reason"] == "length"
    assert (body["prompt_eval_count"], body["eval_count"]) == (PROMPT_TOKENS, 7)
    assert body["message"]["role"] == "assistant" and body["message"]["content"]


def test_anthropic_body_and_stream_say_why_they_stopped(replay_server_clean: ReplayServer) -> None:
    url = f"{replay_server_clean.root_url}/v1/messages"
    req = {"model": "m", "max_tokens": 7, "messages": [{"role": "user", "content": PROMPT}]}
    body = httpx.post(url, json=req).json()
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "m")
    assert (body["stop_reason"], body["stop_sequence"]) == ("max_tokens", None)
    assert (body["usage"]["input_tokens"], body["usage"]["output_tokens"]) == (PROMPT_TOKENS, 7)
    text = httpx.post(url, json={**req, "stream": True}).text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    start = events[0]["message"]
    assert (start["content"], start["stop_reason"], start["stop_sequence"]) == ([], None, None)
    (delta,) = [e for e in events if e["type"] == "message_delta"]
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 7


def test_anthropic_requires_max_tokens(replay_server_clean: ReplayServer) -> None:
    r = httpx.post(
        f"{replay_server_clean.root_url}/v1/messages",
        json={"model": "m", "messages": [{"role": "user", "content": PROMPT}]},
    )
    assert r.status_code == 400
    assert r.json()["type"] == "error" and "max_tokens" in r.json()["error"]["message"]


@pytest.mark.faults
def test_anthropic_429_is_retried_and_billed_once(replay_server_clean: ReplayServer) -> None:
    replay_server_clean.faults.inject(Fault(status=429, retry_after_s=0.01), 1)
    msg = _clients(replay_server_clean)["anthropic"].invoke(PROMPT)
    usage = replay_server_clean.usage()
    assert usage["requests"] == 2 and usage["billed_requests"] == 1
    assert usage["completion_tokens"] == msg.usage_metadata["output_tokens"]
