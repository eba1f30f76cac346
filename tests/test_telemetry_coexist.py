"""Beside OpenInference's or OpenLLMetry's LangChain instrumentor: one tree, tokens counted once."""

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from budget_graph import Budget, budgeted, with_budget
from budget_graph.telemetry import TelemetryConfig, instrument, traced
from budget_graph.telemetry import attributes as A
from tests.fixtures.otel import (
    INSTRUMENTORS,
    langchain_instrumentor,
    metric_points,
    spans_of_kind,
)
from tests.test_telemetry import BRANCHES, fake_model, fan_graph

OI_PROMPT, OI_COMPLETION = "llm.token_count.prompt", "llm.token_count.completion"


def token_counts(span):
    """(input, output) tokens a backend reads off this span, in either vocabulary, or None."""
    attrs = span.attributes or {}
    for prompt, completion in (
        (A.GEN_AI_USAGE_INPUT_TOKENS, A.GEN_AI_USAGE_OUTPUT_TOKENS),
        (OI_PROMPT, OI_COMPLETION),
    ):
        if prompt in attrs:
            return attrs[prompt], attrs[completion]
    return None


@pytest.fixture(params=INSTRUMENTORS)
def instrumentor(request, tracer_provider, meter_provider):
    """One of the two LangChain instrumentors, exporting where our tracer does."""
    with langchain_instrumentor(request.param, tracer_provider, meter_provider):
        yield request.param


def check_counted_once(spans, spend):
    """Exactly one span per call carries token counts, and they add up to the state's spend."""
    counted = [c for s in spans if (c := token_counts(s)) is not None]
    assert len(counted) == spend.calls
    assert sum(c[0] for c in counted) == spend.input_tokens
    assert sum(c[1] for c in counted) == spend.output_tokens


def test_budget_enriches_their_spans_and_tokens_count_once(
    instrumentor, budget_tracer, span_exporter, metric_reader
):
    app = with_budget(fan_graph(budgeted(fake_model(output_tokens=9))), Budget(max_tokens=9_000))
    out = app.invoke({"outs": []})
    spend = out["spend"]
    spans = span_exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1
    check_counted_once(spans, spend)

    # The call's and nodes' budget attributes are on their spans; we made no span for them.
    calls, nodes = spans_of_kind(spans, "llm"), spans_of_kind(spans, "node")
    assert len(calls) == spend.calls == BRANCHES + 2
    assert len(nodes) == BRANCHES + 2
    for span in calls + nodes:
        assert span.instrumentation_scope.name != "budget_graph"
    for call in calls:
        assert call.attributes[A.GEN_AI_REQUEST_MODEL] == "fake-4"  # a backend can price it
        assert call.attributes[A.BUDGET_RESERVED] > 0
        assert call.attributes[A.OPENINFERENCE_SPAN_KIND] == A.OPENINFERENCE_LLM
        node = next(n for n in nodes if n.context.span_id == call.parent.span_id)
        assert node.attributes[A.USAGE_OUTPUT_TOKENS] == 9
    assert sum(n.attributes[A.USAGE_OUTPUT_TOKENS] for n in nodes) == spend.output_tokens

    # The with_budget run is a LangChain run of its own: its span (theirs) is the root
    # and carries the run's totals, which no backend counts as tokens.
    (run,) = spans_of_kind(spans, "run")
    assert run.parent is None and token_counts(run) is None
    assert run.attributes[A.USAGE_OUTPUT_TOKENS] == spend.output_tokens
    assert run.attributes[A.BUDGET_SPENT] == spend.units
    assert run.attributes[A.BUDGET_LIMIT] == 9_000
    assert run.attributes[A.OPENINFERENCE_SPAN_KIND] == A.OPENINFERENCE_CHAIN
    assert not [s for s in spans if s.instrumentation_scope.name == "budget_graph"]

    # gen_ai.client.* metrics once: OpenLLMetry records its own, OpenInference none.
    ours = [
        p
        for p in metric_points(metric_reader, "gen_ai.client.token.usage")
        if p.attributes.get(A.GEN_AI_REQUEST_MODEL) == "fake-4"
    ]
    assert (len(ours) > 0) is (instrumentor == "openinference")
    assert metric_points(metric_reader, "budget.run.spend")


def test_a_streamed_run_is_one_trace(instrumentor, budget_tracer, span_exporter):
    llm = budgeted(fake_model(output_tokens=5))
    app = traced(with_budget(fan_graph(llm), Budget(max_tokens=9_000)), "streamed")
    chunks = list(app.stream({"outs": []}, stream_mode="values"))
    spend = chunks[-1]["spend"]
    spans = span_exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1
    check_counted_once(spans, spend)
    # traced() is no LangChain run: its span is ours, around theirs (one run, one trace).
    (run,) = spans_of_kind(spans, "run")
    assert run.name == "streamed" and run.parent is None
    assert run.instrumentation_scope.name == "budget_graph"
    assert run.attributes[A.USAGE_CALLS] == spend.calls == BRANCHES + 2


def test_coexist_off_keeps_our_spans_without_their_token_counts(
    instrumentor, tracer_provider, span_exporter
):
    # BUDGET_GRAPH_OTEL_COEXIST=false: our own call spans, so both kinds exist; then
    # genai_usage=False keeps the tokens counted once (ours under budget.usage.*).
    handle = instrument(
        tracer_provider=tracer_provider,
        config=TelemetryConfig(coexist=False, genai_usage=False, metrics=False),
    )
    try:
        app = with_budget(fan_graph(budgeted(fake_model())), Budget(max_tokens=9_000))
        spend = app.invoke({"outs": []})["spend"]
    finally:
        handle.uninstrument()
    spans = span_exporter.get_finished_spans()
    check_counted_once(spans, spend)
    ours = [
        s for s in spans_of_kind(spans, "llm") if s.instrumentation_scope.name == "budget_graph"
    ]
    assert len(ours) == spend.calls
    assert sum(s.attributes[A.USAGE_OUTPUT_TOKENS] for s in ours) == spend.output_tokens


def test_metrics_reader_unused_without_instrumentor(budget_tracer, metric_reader):
    # Alone, our gen_ai.client.* metrics are recorded (and the duration metric too).
    with_budget(fan_graph(budgeted(fake_model())), Budget(max_tokens=9_000)).invoke({"outs": []})
    assert isinstance(metric_reader, InMemoryMetricReader)
    points = metric_points(metric_reader, "gen_ai.client.operation.duration")
    assert sum(p.count for p in points) == BRANCHES + 2
    assert all(p.sum >= 0 for p in points)


def test_a_model_called_without_the_runs_callbacks_stays_in_the_trace(
    instrumentor, budget_tracer, span_exporter
):
    # generate() does not read the run's config: LangChain makes its call a root run.
    # The node's span (theirs, made current by us) still parents it: one trace.
    from langchain_core.messages import HumanMessage
    from langgraph.graph import END, START, StateGraph

    from budget_graph import BudgetState, guard

    llm = budgeted(fake_model(output_tokens=6))

    @guard
    def judge(state):
        llm.generate([[HumanMessage("rate it")]])
        return {}

    b = StateGraph(BudgetState)
    b.add_node("judge", judge)
    b.add_edge(START, "judge")
    b.add_edge("judge", END)
    spend = with_budget(b.compile(), Budget(max_tokens=9_000)).invoke({})["spend"]
    spans = span_exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1
    check_counted_once(spans, spend)
