"""The replay HTTP server through the real client stack (ChatOpenAI over localhost)."""

from __future__ import annotations

import re

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage

from budget_graph.accounting import count_messages
from budget_graph.replay.faults import Fault, parse_fault
from budget_graph.replay.server import ReplayServer, main
from budget_graph.tasks.game24 import Game24Task

pytestmark = pytest.mark.integration

TASK = Game24Task()
ITEM = TASK.items()[0]
PROMPT = TASK.cot_prompt(ITEM)


def test_models_endpoint(replay_server_clean: ReplayServer) -> None:
    body = httpx.get(f"{replay_server_clean.base_url}/models").json()
    assert {"gpt-4", "code-davinci-002"} <= {m["id"] for m in body["data"]}


def test_invoke_usage_and_billing_agree(replay_chat_openai, replay_server_clean) -> None:
    msg = replay_chat_openai().invoke(PROMPT)
    assert msg.usage_metadata["input_tokens"] == count_messages([HumanMessage(PROMPT)]) == 437
    billed = replay_server_clean.usage()
    assert (billed["prompt_tokens"], billed["completion_tokens"]) == (
        msg.usage_metadata["input_tokens"], msg.usage_metadata["output_tokens"])


def test_same_answers_as_replay_chat_model(replay_chat_openai, replay_chat_model) -> None:
    llm = replay_chat_openai()
    for _ in range(3):
        a, b = llm.invoke(PROMPT), replay_chat_model.invoke(PROMPT)
        assert a.content == b.content
        assert a.usage_metadata["total_tokens"] == b.usage_metadata["total_tokens"]


def test_streaming_usage_arrives(replay_chat_openai, replay_server_clean) -> None:
    merged = None
    for chunk in replay_chat_openai().stream(PROMPT):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and merged.usage_metadata is not None
    billed = replay_server_clean.usage()
    assert merged.usage_metadata["input_tokens"] == billed["prompt_tokens"] == 437
    assert merged.usage_metadata["output_tokens"] == billed["completion_tokens"] > 0
    assert billed["entries"][0]["stream"] is True


async def test_async_stream(replay_chat_openai, replay_server_clean) -> None:
    text = "".join([str(c.content) async for c in replay_chat_openai().astream(PROMPT)])
    assert text.startswith("Steps:")


def test_n_and_max_completion_tokens(replay_chat_openai, replay_server_clean) -> None:
    res = replay_chat_openai(n=3).generate([[HumanMessage(PROMPT)]])
    assert len(res.generations[0]) == 3
    usage = res.llm_output["token_usage"]
    assert usage["prompt_tokens"] == 437  # paid once for three completions
    cut = replay_chat_openai(max_completion_tokens=4).invoke(PROMPT)
    assert cut.usage_metadata["output_tokens"] == 4
    assert cut.response_metadata["finish_reason"] == "length"


MUST = "'messages' must be a non-empty array of message objects"
BAD_MESSAGES = [
    ({}, f"{MUST} (got nothing)"),
    ({"messages": "hi"}, f"{MUST} (got a string)"),
    ({"messages": []}, f"{MUST} (got an empty array)"),
    ({"messages": [{"role": "user", "content": "hi"}, 3]},
     "'messages[1]' must be a message object (got a number)"),
]
ROUTES = {
    "openai": "/v1/chat/completions",
    "groq": "/openai/v1/chat/completions",
    "anthropic": "/v1/messages",
    "ollama": "/api/chat",
}


def _error_body(protocol: str, message: str) -> dict:
    """The 400 body each real API gives a bad field."""
    if protocol == "anthropic":
        return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    if protocol == "ollama":
        return {"error": message}
    error = {"message": message, "type": "invalid_request_error", "param": "messages"}
    return {"error": {**error, "code": "invalid_request"}}


@pytest.mark.parametrize("protocol", list(ROUTES))
@pytest.mark.parametrize(("fields", "message"), BAD_MESSAGES)
def test_bad_messages_get_one_text_in_each_protocols_error_shape(
    replay_server_clean: ReplayServer, protocol: str, fields: dict, message: str
) -> None:
    body = {"model": "gpt-4", "max_tokens": 5, **fields}
    r = httpx.post(f"{replay_server_clean.root_url}{ROUTES[protocol]}", json=body)
    assert r.status_code == 400
    assert r.json() == _error_body(protocol, message)
    assert replay_server_clean.usage()["requests"] == 0  # refused before any billing


def test_the_openai_sdk_reads_the_bad_field(replay_server_clean: ReplayServer) -> None:
    client = openai.OpenAI(base_url=replay_server_clean.base_url, api_key="replay", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4", messages=[])
    assert info.value.param == "messages" and info.value.code == "invalid_request"
    assert info.value.body["message"] == BAD_MESSAGES[2][1]


def test_not_recorded_is_a_400_naming_the_reason(replay_chat_openai) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        replay_chat_openai(max_retries=0).invoke(PROMPT.replace("4 5 6 10", "4 5 6 11"))
    body = info.value.body
    assert body["code"] == "not_recorded"
    assert "Request not recorded" in body["message"] and "task 'game24'" in body["message"]


@pytest.mark.faults
def test_429_is_retried_without_double_counting(replay_chat_openai, replay_server_clean) -> None:
    llm = replay_chat_openai(default_headers={"X-Replay-Fault": "429;times=1;retry-after=0.05"},
                             max_retries=2)
    msg = llm.invoke(PROMPT)
    billed = replay_server_clean.usage()
    assert [e["status"] for e in billed["entries"]] == [429, 200]
    assert billed["billed_requests"] == 1
    assert billed["prompt_tokens"] == msg.usage_metadata["input_tokens"]
    assert billed["completion_tokens"] == msg.usage_metadata["output_tokens"]


@pytest.mark.faults
def test_429_carries_retry_after(replay_server_clean) -> None:
    r = httpx.post(f"{replay_server_clean.base_url}/chat/completions",
                   headers={"X-Replay-Fault": "429;retry-after=2"},
                   json={"model": "gpt-4", "messages": [{"role": "user", "content": PROMPT}]})
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.faults
def test_500_queued_fault(replay_chat_openai, replay_server_clean) -> None:
    replay_server_clean.faults.inject(Fault(status=500))
    with pytest.raises(openai.InternalServerError):
        replay_chat_openai(max_retries=0).invoke(PROMPT)
    assert replay_chat_openai(max_retries=0).invoke(PROMPT).content  # next one is fine
    assert replay_server_clean.usage()["billed_requests"] == 1


@pytest.mark.faults
def test_dropped_stream_raises_and_is_not_billed(replay_chat_openai, replay_server_clean) -> None:
    llm = replay_chat_openai(default_headers={"X-Replay-Fault": "drop=3"}, max_retries=0)
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in llm.stream(PROMPT):
            seen.append(chunk)
    assert all(c.usage_metadata is None for c in seen)  # no usage reached the client
    billed = replay_server_clean.usage()
    assert billed["billed_requests"] == 0 and billed["prompt_tokens"] == 0
    assert billed["entries"][0]["reason"] == "dropped"


@pytest.mark.faults
def test_dropped_json_response_raises(replay_chat_openai, replay_server_clean) -> None:
    llm = replay_chat_openai(default_headers={"X-Replay-Fault": "drop"}, max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        llm.invoke(PROMPT)
    assert replay_server_clean.usage()["billed_requests"] == 0


@pytest.mark.faults
def test_latency_fault(replay_chat_openai) -> None:
    llm = replay_chat_openai(default_headers={"X-Replay-Fault": "latency=0.01"})
    assert llm.invoke(PROMPT).content


def test_parse_fault_errors() -> None:
    assert parse_fault("429;times=2;id=x") == Fault(status=429, times=2)
    assert parse_fault("drop") == Fault(drop_after_chunks=2)
    with pytest.raises(ValueError, match=re.escape("Unknown fault part: 'boom' in 'boom'")):
        parse_fault("boom")
    with pytest.raises(ValueError, match=re.escape("Invalid status: 404. Must be 429, 500 or 503")):
        Fault(status=404)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--port", "70000"], "--port must be 0..65535 (got 70000)"),
        (["serve-replay", "--datasets", "nope"], "unknown --datasets ['nope']; valid: "),
        (["--fault", "boom"], "Unknown fault part: 'boom' in 'boom'"),
    ],
)
def test_python_m_server_is_serve_replay(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("budget-graph serve-replay: error: ") and needle in err
