"""Budgeted runs on the replay, traced into a real Arize Phoenix over OTLP/HTTP.

The checks read what Phoenix derives (its GraphQL API): token totals per trace, costs,
span kinds and the messages it shows, alone and beside OpenInference's or OpenLLMetry's
LangChain instrumentor. Phoenix starts once per session (tests/fixtures/phoenix.py).
"""

import contextlib
import json
import operator
import time
import uuid
from typing import Annotated

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from budget_graph import Budget, BudgetState, budgeted, guard, with_budget
from budget_graph.planner import build_planner
from budget_graph.replay import ReplayChatModel
from budget_graph.tasks.game24 import Game24Task
from budget_graph.telemetry import TelemetryConfig, instrument
from budget_graph.telemetry import attributes as A
from budget_graph.telemetry.export import otlp_tracer_provider
from tests.fixtures.otel import INSTRUMENTORS, langchain_instrumentor

pytestmark = [pytest.mark.integration, pytest.mark.phoenix]

PUZZLES = 6


class SampleState(BudgetState):
    answers: Annotated[list[str], operator.add]


def cot_graph(llm, task):
    """Fan out one CoT sample per puzzle (parallel Send branches), then tally."""
    items = task.items()[:PUZZLES]

    @guard
    def sample(state):
        item = items[state["i"]]
        msg = llm.invoke(task.cot_prompt(item), max_tokens=120)
        return {"answers": [task.extract_answer(item, msg.text) or ""]}

    @guard
    def tally(state):
        return {}

    b = StateGraph(SampleState)
    b.add_node("sample", sample)
    b.add_node("tally", tally)
    b.add_conditional_edges(
        START, lambda s: [Send("sample", {"i": i}) for i in range(PUZZLES)], ["sample"]
    )
    b.add_edge("sample", "tally")
    b.add_edge("tally", END)
    return b.compile()


def attr(span, key):
    return span["attributes"].get(key)


def run_into_phoenix(phoenix_server, llm, project, instrumentor=None):
    """Run the fan-out graph under a budget, traced into ``project``; the final state.

    Returns once Phoenix holds every span exported (ingestion is asynchronous).
    """
    provider = otlp_tracer_provider(phoenix_server.traces_endpoint, project=project, batch=True)
    sent = InMemorySpanExporter()  # what was exported, to know when Phoenix has it all
    provider.add_span_processor(SimpleSpanProcessor(sent))
    with contextlib.ExitStack() as stack:
        if instrumentor is not None:
            stack.enter_context(langchain_instrumentor(instrumentor, provider))
        handle = instrument(
            tracer_provider=provider, config=TelemetryConfig(metrics=False, capture_content=True)
        )
        stack.callback(handle.uninstrument)
        app = with_budget(cot_graph(llm, Game24Task()), Budget(max_tokens=6_000))
        out = app.invoke({"answers": []})
    provider.force_flush()
    provider.shutdown()
    phoenix_server.wait_for_spans(project, len(sent.get_finished_spans()))
    return out


@pytest.mark.parametrize("instrumentor", [None, *INSTRUMENTORS])
def test_phoenix_counts_and_prices_each_call_once(phoenix_server, replay_chat_openai, instrumentor):
    """Alone and beside either LangChain instrumentor, what Phoenix derives equals the state."""
    project = f"budget-graph-{instrumentor or 'alone'}-{uuid.uuid4().hex[:8]}"
    out = run_into_phoenix(phoenix_server, budgeted(replay_chat_openai()), project, instrumentor)
    spend = out["spend"]
    assert spend.calls == PUZZLES
    spans = phoenix_server.derived(project)

    # One trace per run, and Phoenix's token total for it is the state's spend.
    (trace,) = {json.dumps(s["trace"], sort_keys=True) for s in spans}
    trace = json.loads(trace)
    root = trace["rootSpan"]
    assert root["cumulativeTokenCountTotal"] == spend.input_tokens + spend.output_tokens
    assert root["cumulativeTokenCountPrompt"] == spend.input_tokens
    assert root["cumulativeTokenCountCompletion"] == spend.output_tokens
    assert trace["costSummary"]["total"]["tokens"] == spend.input_tokens + spend.output_tokens

    # Exactly one span per call carries token counts: an LLM span Phoenix can price.
    counted = [s for s in spans if s["tokenCountTotal"]]
    assert len(counted) == spend.calls
    assert {s["spanKind"] for s in counted} == {"llm"}
    for span in counted:
        assert span["costSummary"]["total"]["cost"] > 0
    assert trace["costSummary"]["total"]["cost"] == pytest.approx(
        sum(s["costSummary"]["total"]["cost"] for s in counted)
    )

    # Span kinds: our run and the nodes show as chains, never "unknown".
    ours = {}
    for span in spans:
        kind = json.loads(span["attributes"]).get("budget_graph", {}).get("span", {}).get("kind")
        if kind is not None:
            ours.setdefault(kind, []).append(span)
    assert {s["spanKind"] for s in ours["run"] + ours["node"]} == {"chain"}
    assert {s["spanKind"] for s in ours["llm"]} == {"llm"}
    assert len(ours["llm"]) == spend.calls and len(ours["run"]) == 1
    assert ours["run"][0]["parentId"] is None

    # The messages Phoenix shows for each call: the prompt, and the answer with its reason.
    for span in counted:
        llm = json.loads(span["attributes"])["llm"]
        assert llm["input_messages"] and llm["output_messages"]
        (answer,) = llm["output_messages"]
        assert answer["message"]["role"] == "assistant" and answer["message"]["content"]


def test_planner_run_spend_is_visible_in_phoenix(phoenix_server, replay_store):
    project = f"budget-graph-planner-{uuid.uuid4().hex[:8]}"
    provider = otlp_tracer_provider(phoenix_server.traces_endpoint, project=project, batch=True)
    sent = InMemorySpanExporter()  # what we exported, to know when Phoenix has it all
    provider.add_span_processor(SimpleSpanProcessor(sent))
    replay_store.reset()
    task = Game24Task()
    app = build_planner(
        ReplayChatModel(store=replay_store, model_name="gpt-4"),
        task=task,
        budget=Budget(max_tokens=6_000),
        breadth=5,
    )
    handle = instrument(tracer_provider=provider, config=TelemetryConfig(metrics=False))
    try:
        out = app.invoke({"item": task.items()[0]})
    finally:
        handle.uninstrument()
        provider.force_flush()
        provider.shutdown()
    spend = out["spend"]
    assert spend.calls > 5

    spans = phoenix_server.wait_for_spans(project, len(sent.get_finished_spans()))
    llm_spans = [s for s in spans if attr(s, A.SPAN_KIND) == A.SPAN_KIND_LLM]
    node_spans = [s for s in spans if attr(s, A.SPAN_KIND) == A.SPAN_KIND_NODE]
    (run,) = [s for s in spans if attr(s, A.SPAN_KIND) == A.SPAN_KIND_RUN]
    billed = [s for s in llm_spans if attr(s, A.GEN_AI_USAGE_OUTPUT_TOKENS) is not None]
    assert len(billed) == spend.calls
    assert sum(attr(s, A.GEN_AI_USAGE_OUTPUT_TOKENS) for s in billed) == spend.output_tokens
    assert sum(attr(s, A.GEN_AI_USAGE_INPUT_TOKENS) for s in billed) == spend.input_tokens
    assert {s["name"] for s in node_spans} >= {"estimate", "expand", "value"}
    for span in billed:
        assert attr(span, A.BUDGET_LIMIT) == 6_000
        assert attr(span, A.BUDGET_RESERVED) > 0
        assert attr(span, A.BUDGET_REMAINING) is not None
    assert attr(run, A.BUDGET_SPENT) == spend.units
    assert attr(run, A.USAGE_OUTPUT_TOKENS) == spend.output_tokens
    assert attr(run, A.BUDGET_STOP_REASON) == out["stop_reason"]
    # Nodes that made no billed call carry no budget.usage.* (all zero): sum the others.
    assert sum(attr(s, A.USAGE_OUTPUT_TOKENS) or 0 for s in node_spans) == spend.output_tokens
    assert sum(attr(s, A.USAGE_CALLS) or 0 for s in node_spans) == spend.calls


def test_example_trace_to_phoenix(phoenix_server, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "trace_to_phoenix.py"
    spec = importlib.util.spec_from_file_location("trace_to_phoenix", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    project = f"budget-graph-example-{uuid.uuid4().hex[:8]}"
    out = module.main(phoenix_server.base_url, 4_000, project=project)
    assert f"project {project!r}" in capsys.readouterr().out
    spans = phoenix_server.wait_for_spans(project, out["spend"].calls + 2)
    deadline = time.monotonic() + 60
    while not any(attr(s, A.SPAN_KIND) == A.SPAN_KIND_RUN for s in spans):
        assert time.monotonic() < deadline, "the run span never reached phoenix"
        time.sleep(0.5)
        spans = phoenix_server.spans(project)
    (run,) = [s for s in spans if attr(s, A.SPAN_KIND) == A.SPAN_KIND_RUN]
    assert attr(run, A.BUDGET_SPENT) == out["spend"].units <= 4_000
