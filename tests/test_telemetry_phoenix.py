"""Budgeted runs on the replay, traced into a real Arize Phoenix over OTLP/HTTP."""

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
from budget_graph.telemetry import TelemetryConfig, instrument, traced
from budget_graph.telemetry import attributes as A
from budget_graph.telemetry.export import otlp_tracer_provider

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


def test_budgeted_run_spend_is_visible_in_phoenix(phoenix_server, replay_chat_openai):
    project = f"budget-graph-{uuid.uuid4().hex[:8]}"
    provider = otlp_tracer_provider(phoenix_server.traces_endpoint, project=project, batch=True)
    handle = instrument(tracer_provider=provider, config=TelemetryConfig(metrics=False))
    try:
        llm = budgeted(replay_chat_openai())
        # Room for some samples but not all: refusals are part of what Phoenix must show.
        budget = Budget(max_tokens=500, count="output")
        app = traced(with_budget(cot_graph(llm, Game24Task()), budget), "game24-cot")
        out = app.invoke({"answers": []})
    finally:
        handle.uninstrument()
        provider.force_flush()
        provider.shutdown()
    spend = out["spend"]
    assert 0 < spend.calls <= PUZZLES

    expected = 1 + (PUZZLES + 1) + spend.calls  # run + nodes + LLM calls
    spans = phoenix_server.wait_for_spans(project, expected)
    assert len(spans) == expected
    llm_spans = [s for s in spans if attr(s, A.SPAN_KIND) == A.SPAN_KIND_LLM]
    (run,) = [s for s in spans if attr(s, A.SPAN_KIND) == A.SPAN_KIND_RUN]
    assert len(llm_spans) == spend.calls

    # The acceptance check: Phoenix's LLM spans add up to the run's final state spend.
    output_tokens = sum(attr(s, A.GEN_AI_USAGE_OUTPUT_TOKENS) for s in llm_spans)
    assert output_tokens == spend.output_tokens == spend.units
    assert sum(attr(s, A.GEN_AI_USAGE_INPUT_TOKENS) for s in llm_spans) == spend.input_tokens

    # budget.* attributes survived the trip, and the run span carries the totals.
    for span in llm_spans:
        assert attr(span, A.BUDGET_LIMIT) == 500
        assert attr(span, A.BUDGET_RESERVED) > 0
        assert attr(span, A.GEN_AI_REQUEST_MODEL) == "gpt-4"
        assert 1 <= attr(span, A.GEN_AI_REQUEST_MAX_TOKENS) <= 120
        assert run["context"]["trace_id"] == span["context"]["trace_id"]
    assert attr(run, A.BUDGET_SPENT) == spend.units
    assert attr(run, A.BUDGET_LIMIT) == 500
    assert attr(run, A.USAGE_OUTPUT_TOKENS) == spend.output_tokens
    assert run["parent_id"] is None
    if out.get("stop_reason") == "budget":
        assert attr(run, A.BUDGET_STOP_REASON) == "budget"
        names = {e["name"] for s in spans for e in s["events"]}
        assert {"budget.reservation_refused", "budget.exhausted"} <= names


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
