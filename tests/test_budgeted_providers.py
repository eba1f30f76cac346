"""budgeted() with real provider clients: the regressions of issue #20 (items 1-5 and 9).

The OpenAI client runs in process with an httpx transport that records each request
body and answers like the API; items that need billing use the replay server.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import BaseModel
from typing_extensions import TypedDict

from budget_graph import Budget, Meter, budgeted
from budget_graph.accounting import count_output
from budget_graph.errors import BudgetExceededError
from budget_graph.replay.server import ReplayServer
from budget_graph.tasks.game24 import Game24Task

openai = pytest.importorskip("langchain_openai")

TASK = Game24Task()
PROMPTS = [TASK.cot_prompt(item) for item in TASK.items()[:5]]


class Answer(BaseModel):
    """The final answer."""

    value: int


@tool
def search(query: str) -> str:
    """Search the web."""
    return query


USAGE = {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57}


def _openai(
    content: str = '{"value": 24}', usage: dict | None = None, **fields: Any
) -> tuple[Any, list[dict]]:
    """A ChatOpenAI whose requests are recorded and answered in process."""
    sent: list[dict] = []

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        reply = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": usage or USAGE,
        }
        return httpx.Response(200, json=reply)

    llm = openai.ChatOpenAI(
        model=fields.pop("model", "gpt-4o-mini"),
        api_key="x",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handle)),
        **fields,
    )
    return llm, sent


def test_uncapped_model_sends_its_profile_cap_not_the_budget_issue20_item1() -> None:
    llm, sent = _openai()
    meter = Meter(Budget(max_tokens=50_000))
    budgeted(llm, meter=meter).invoke("hi")
    assert sent[0]["max_completion_tokens"] == 16_384  # was 49,984: a 400 from OpenAI
    assert meter.spent == 57


class Fan(TypedDict):
    answers: Annotated[list[str], operator.add]
    refused: Annotated[int, operator.add]


def test_send_fan_out_without_max_tokens_answers_every_branch_issue20_item1(
    replay_server_clean: ReplayServer,
) -> None:
    meter = Meter(Budget(max_tokens=100_000))
    llm = budgeted(
        openai.ChatOpenAI(
            base_url=replay_server_clean.base_url, api_key="r", model="gpt-4", max_retries=0
        ),
        meter=meter,
    )

    def work(state: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"answers": [llm.invoke(PROMPTS[state["i"]]).text]}
        except BudgetExceededError:
            return {"refused": 1}

    b: StateGraph[Any, Any, Any, Any] = StateGraph(Fan)
    b.add_node("work", work)
    b.add_conditional_edges(START, lambda s: [Send("work", {"i": i}) for i in range(5)], ["work"])
    b.add_edge("work", END)
    out = b.compile().invoke({"answers": [], "refused": 0})
    assert len(out["answers"]) == 5 and out["refused"] == 0
    ledger = replay_server_clean.usage()
    assert {e["max_tokens"] for e in ledger["entries"]} == {8_192}  # gpt-4's profile
    assert meter.spent == ledger["prompt_tokens"] + ledger["completion_tokens"]


class _NoUsage(GenericFakeChatModel):
    """A provider that reports no usage and records what it was sent."""

    sent: list[dict] = []

    def _generate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        self.sent.append(kwargs)
        return super()._generate(messages, stop, run_manager, **kwargs)


def _png_url(width: int, height: int) -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_an_image_prompt_is_reserved_before_it_is_sent_issue20_item2() -> None:
    model = _NoUsage(messages=iter([AIMessage("a cat")]), sent=[])
    meter = Meter(Budget(max_tokens=300))
    image = HumanMessage(
        content=[
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": _png_url(1024, 1024), "detail": "high"}},
        ]
    )
    with pytest.raises(BudgetExceededError):  # 765 image tokens: refused, nothing sent
        budgeted(model, meter=meter).invoke([image])
    assert model.sent == [] and meter.spent == 0


def test_unreported_usage_counts_tool_call_arguments_issue20_item3() -> None:
    args = {"query": "every country in Europe with its population by year " * 12}
    reply = AIMessage("", tool_calls=[{"name": "search", "args": args, "id": "c1"}])
    meter = Meter(Budget(max_tokens=10_000, count="output"))
    budgeted(_NoUsage(messages=iter([reply]), sent=[]), meter=meter).invoke("find it")
    assert meter.spent == count_output(reply) > 100  # was charged as 0


@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
def test_with_structured_output_keeps_method_and_strict_issue20_item4(method: str) -> None:
    content = '{"value": 24}'
    llm, sent = _openai(content, model="gpt-4o")
    meter = Meter(Budget(max_tokens=5_000))
    strict = {"strict": True} if method != "json_mode" else {}
    out = budgeted(llm, meter=meter).with_structured_output(Answer, method=method, **strict)
    assert out.invoke("the answer?") == Answer(value=24)
    fmt = sent[0]["response_format"]
    assert fmt["type"] == ("json_schema" if method == "json_schema" else "json_object")
    if method == "json_schema":
        assert fmt["json_schema"]["strict"] is True
    assert "tools" not in sent[0]
    assert 4_900 < sent[0]["max_completion_tokens"] < 5_000  # the profile's cap, clamped
    assert meter.spent == 57


def test_create_agent_with_response_format_and_the_middleware_issue20_item5() -> None:
    from langchain.agents import create_agent
    from langgraph.checkpoint.memory import InMemorySaver

    from budget_graph.middleware import TokenBudgetMiddleware

    llm, sent = _openai('{"value": 24}', model="gpt-4o")
    agent = create_agent(
        llm,
        tools=[search],
        response_format=Answer,
        middleware=[TokenBudgetMiddleware(run_limit=20_000, count="total")],
        checkpointer=InMemorySaver(),
    )
    cfg = {"configurable": {"thread_id": "t"}}
    out = agent.invoke({"messages": [HumanMessage("the answer?")]}, cfg)
    assert out["structured_response"] == Answer(value=24)  # was AttributeError: .lower
    assert sent[0]["response_format"]["type"] == "json_schema"
    assert agent.get_state(cfg).values["run_token_spend"] == 57


def test_budgeted_model_keeps_the_wrapped_models_name_and_profile_issue20_item5() -> None:
    llm, _ = _openai(model="gpt-4o")
    wrapped = budgeted(llm, meter=Meter(Budget(max_tokens=1_000)))
    assert wrapped.model_name == "gpt-4o"
    assert wrapped.profile == llm.profile


def _bound_call(wrap: Callable[[Any], Any]) -> tuple[dict, Meter]:
    llm, sent = _openai()
    meter = Meter(Budget(max_tokens=50_000))
    wrap(llm, meter).invoke("search for x")
    return sent[0], meter


@pytest.mark.parametrize("order", ["before", "after"])
def test_budgeted_before_or_after_bind_tools_issue20_item9(order: str) -> None:
    if order == "before":
        body, meter = _bound_call(lambda m, meter: budgeted(m, meter=meter).bind_tools([search]))
    else:
        body, meter = _bound_call(lambda m, meter: budgeted(m.bind_tools([search]), meter=meter))
    assert [t["function"]["name"] for t in body["tools"]] == ["search"]
    assert body["max_completion_tokens"] == 16_384 and meter.spent == 57


def test_anthropic_thinking_budget_must_fit_inside_the_clamped_cap(
    replay_server_clean: ReplayServer,
) -> None:
    anthropic = pytest.importorskip("langchain_anthropic")
    llm = anthropic.ChatAnthropic(
        base_url=replay_server_clean.root_url,
        api_key="r",
        model="claude-sonnet-4-5",
        max_tokens=8_000,
        thinking={"type": "enabled", "budget_tokens": 2_000},
        max_retries=0,
    )
    meter = Meter(Budget(max_tokens=1_500))
    with pytest.raises(BudgetExceededError):  # max_tokens must exceed the thinking budget
        budgeted(llm, meter=meter).invoke(PROMPTS[0])
    assert replay_server_clean.usage()["requests"] == 0 and meter.spent == 0


@pytest.mark.parametrize("name", ["ChatAnthropic", "ChatOllama"])
async def test_streamed_calls_of_other_clients_commit_the_billed_usage(
    name: str, replay_server_clean: ReplayServer
) -> None:
    if name == "ChatAnthropic":
        anthropic = pytest.importorskip("langchain_anthropic")
        llm = anthropic.ChatAnthropic(
            base_url=replay_server_clean.root_url,
            api_key="r",
            model="claude-sonnet-4-5",
            max_retries=0,
        )
        field = "max_tokens"
    else:
        ollama = pytest.importorskip("langchain_ollama")
        llm = ollama.ChatOllama(
            base_url=replay_server_clean.root_url, model="llama3", temperature=0.0
        )
        field = "options.num_predict"
    meter = Meter(Budget(max_tokens=3_000))
    async for _ in budgeted(llm, meter=meter).astream(PROMPTS[0]):
        pass
    (entry,) = replay_server_clean.usage()["entries"]
    assert entry["cap_param"] == field and entry["max_tokens"] < 3_000 - 437
    assert meter.spent == entry["prompt_tokens"] + entry["completion_tokens"]


def test_reasoning_counts_as_output_and_cached_input_is_priced_as_such() -> None:
    from budget_graph import ModelPrice

    usage = {
        "prompt_tokens": 1_000,
        "completion_tokens": 600,
        "total_tokens": 1_600,
        "prompt_tokens_details": {"cached_tokens": 800},
        "completion_tokens_details": {"reasoning_tokens": 500},
    }
    llm, sent = _openai("42", usage, model="o3-mini")
    price = ModelPrice(input_per_mtok=1.0, output_per_mtok=4.0, cached_input_per_mtok=0.25)
    meter = Meter(Budget(count="cost", max_cost_usd=1.0, prices={"o3-mini": price}))
    budgeted(llm, meter=meter).invoke("think")
    # 200 fresh input x 1.0 + 800 cached x 0.25 + 600 output (500 reasoning) x 4.0 micro-USD
    assert meter.spent == 200 + 200 + 2_400
    assert meter.spend.reasoning_tokens == 500 and meter.spend.cached_tokens == 800
    assert "max_completion_tokens" in sent[0]


def test_observers_see_the_cap_as_sent() -> None:
    from budget_graph._internal import observe

    seen: list[dict] = []

    class Recorder:
        def call_started(self, info: Any) -> None:
            seen.append(dict(info.request or {}))

    llm, sent = _openai()
    recorder = Recorder()
    observe.add_observer(recorder)
    try:
        budgeted(llm, meter=Meter(Budget(max_tokens=50_000))).invoke("hi")
    finally:
        observe.remove_observer(recorder)
    assert seen and seen[0]["max_tokens"] == sent[0]["max_completion_tokens"] == 16_384
