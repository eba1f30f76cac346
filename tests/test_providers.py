"""The per-call output cap rule and provider client detection (issue #20)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel

from budget_graph.providers import (
    DEFAULT_OUTPUT_CAP,
    apply_cap,
    client_of,
    model_facts,
    output_cap,
    profile_max_output,
    unwrap_chat_model,
)

openai = pytest.importorskip("langchain_openai")
anthropic = pytest.importorskip("langchain_anthropic")
ollama = pytest.importorskip("langchain_ollama")

TOOL = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {}}}


def test_no_max_tokens_uses_the_profile_not_the_remaining_budget_issue20_item1() -> None:
    llm = openai.ChatOpenAI(model="gpt-4o-mini", api_key="x")
    assert profile_max_output(llm) == 16_384
    cap = output_cap(llm, {})
    assert (cap.cap, cap.source, cap.param) == (16_384, "profile", "max_tokens")
    # A call's own cap wins; more than the model can write is clamped to the profile.
    assert output_cap(llm, {"max_tokens": 300}).cap == 300
    assert (
        output_cap(openai.ChatOpenAI(model="gpt-4o-mini", api_key="x", max_tokens=99_999), {}).cap
        == 16_384
    )
    # Budget.per_call_max_tokens still overrides.
    assert output_cap(llm, {}, per_call_max_tokens=1_000).cap == 1_000


def test_unknown_model_without_profile_gets_the_documented_default() -> None:
    fake = FakeListChatModel(responses=["x"])
    assert output_cap(fake, {}).cap == DEFAULT_OUTPUT_CAP
    assert output_cap(fake, {}).source == "default"
    assert client_of(fake).name == "other"


@pytest.mark.parametrize(
    ("make", "name", "param"),
    [
        (lambda: openai.ChatOpenAI(model="gpt-4o", api_key="x"), "openai", "max_tokens"),
        (
            lambda: openai.AzureChatOpenAI(
                azure_endpoint="http://x", api_key="x", api_version="2024-10-01", model="gpt-4o"
            ),
            "azure_openai",
            "max_completion_tokens",
        ),
        (
            lambda: anthropic.ChatAnthropic(model="claude-sonnet-4-5", api_key="x"),
            "anthropic",
            "max_tokens",
        ),
        (lambda: ollama.ChatOllama(model="llama3"), "ollama", "num_predict"),
    ],
)
def test_clients_are_detected_by_class(make: Any, name: str, param: str) -> None:
    model = make()
    assert client_of(model).name == name
    assert output_cap(model, {}).param == param


def test_openai_reasoning_model_cap_is_sent_as_max_completion_tokens() -> None:
    llm = openai.ChatOpenAI(model="o3-mini", api_key="x", max_completion_tokens=500)
    assert output_cap(llm, {}).cap == 500
    kwargs = apply_cap(llm, {"max_completion_tokens": 500}, 120)
    assert kwargs == {"max_tokens": 120}
    payload = llm._get_request_payload([("user", "hi")], **kwargs)
    assert payload["max_completion_tokens"] == 120 and "max_tokens" not in payload


def test_anthropic_thinking_budget_counts_inside_max_tokens() -> None:
    llm = anthropic.ChatAnthropic(
        model="claude-sonnet-4-5",
        api_key="x",
        max_tokens=8_000,
        thinking={"type": "enabled", "budget_tokens": 2_000},
    )
    cap = output_cap(llm, {})
    assert (cap.cap, cap.minimum) == (8_000, 2_001)
    payload = llm._get_request_payload([("user", "hi")], **apply_cap(llm, {}, 3_000))
    assert payload["max_tokens"] == 3_000


def test_ollama_cap_goes_into_options_with_the_models_own_options() -> None:
    llm = ollama.ChatOllama(model="llama3", temperature=0.2, num_predict=-1)
    assert output_cap(llm, {}).source == "default"  # -1 means no limit: not a cap
    kwargs = apply_cap(llm, {"max_tokens": 50}, 200, stop=["\n\n"])
    assert "max_tokens" not in kwargs
    params = llm._chat_params([], **kwargs)
    assert params["options"] == {"temperature": 0.2, "stop": ["\n\n"], "num_predict": 200}
    assert output_cap(llm, {"options": {"num_predict": 64}}).cap == 64


def test_cap_is_read_through_bind_tools() -> None:
    llm = openai.ChatOpenAI(model="gpt-4o", api_key="x", max_tokens=700)
    bound = llm.bind_tools([TOOL]).bind(max_tokens=90)
    inner, kwargs = unwrap_chat_model(bound)
    assert inner is llm and "tools" in kwargs
    assert output_cap(bound, {}).cap == 90


def test_model_facts_hold_the_provider_and_client_inside_wrappers_for_apply_cap() -> None:
    from budget_graph import Budget, budgeted

    llm = ollama.ChatOllama(model="llama3", temperature=0.2)
    # Two meters: the wrappers stay two, the provider's model is inside both.
    wrapped = budgeted(budgeted(llm, meter=Budget(max_tokens=9_000)), meter=Budget(max_tokens=99))
    facts = model_facts(wrapped.model)
    assert facts.provider is llm and facts.client.name == "ollama"
    found = apply_cap(wrapped.model, {"max_tokens": 5}, 40, stop=["x"])
    known = apply_cap(facts.provider, {"max_tokens": 5}, 40, stop=["x"], client=facts.client)
    assert known == found == {"options": {"temperature": 0.2, "stop": ["x"], "num_predict": 40}}


def test_google_cap_lands_in_generation_config() -> None:
    google = pytest.importorskip("langchain_google_genai")
    from langchain_core.messages import HumanMessage

    llm = google.ChatGoogleGenerativeAI(model="gemini-2.5-flash", google_api_key="x")
    cap = output_cap(llm, {})
    assert (cap.param, cap.cap, cap.source) == ("max_output_tokens", 65_536, "profile")
    request = llm._prepare_request([HumanMessage("hi")], **apply_cap(llm, {"max_tokens": 9}, 123))
    assert request["config"].max_output_tokens == 123


def test_bedrock_converse_cap_lands_in_inference_config() -> None:
    aws = pytest.importorskip("langchain_aws")
    from langchain_aws.chat_models.bedrock_converse import _snake_to_camel_keys

    llm = aws.ChatBedrockConverse(
        model="anthropic.claude-3-5-sonnet-20240620-v1:0",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    assert client_of(llm).name == "bedrock_converse"
    params = llm._converse_params(**_snake_to_camel_keys(apply_cap(llm, {}, 321)))
    assert params["inferenceConfig"]["maxTokens"] == 321
