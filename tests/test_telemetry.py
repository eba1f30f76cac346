"""Span tree, attributes, rollups, events and metrics of budgeted graph runs (in-memory OTel)."""

import itertools
import operator
from typing import Annotated

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from opentelemetry import trace

from budget_graph import Budget, BudgetState, budgeted, guard, with_budget
from budget_graph._internal import observe
from budget_graph.telemetry import TelemetryConfig, instrument, trace_run, traced
from budget_graph.telemetry import attributes as A
from budget_graph.testing import BillingFakeChat
from tests.fixtures.otel import children_of, metric_points, spans_of_kind

BRANCHES = 4


class NamedFake(GenericFakeChatModel):
    model_name: str = "fake-4"


def fake_model(output_tokens=7, input_tokens=20, reasoning=0, cached=0):
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    if reasoning:
        usage["output_token_details"] = {"reasoning": reasoning}
    if cached:
        usage["input_token_details"] = {"cache_read": cached}
    msg = AIMessage(
        content="step", usage_metadata=usage, response_metadata={"finish_reason": "stop"}
    )
    return NamedFake(messages=itertools.repeat(msg))


class FanState(BudgetState):
    outs: Annotated[list[str], operator.add]


def fan_graph(llm, branches=BRANCHES, name="solve"):
    @guard
    def plan(state):
        llm.invoke("plan")
        return {"outs": ["plan"]}

    @guard
    def branch(state):
        llm.invoke(f"branch {state['i']}", max_tokens=50)
        return {"outs": [f"b{state['i']}"]}

    @guard
    def final(state):
        llm.invoke("final")
        return {"outs": ["final"]}

    b = StateGraph(FanState)
    b.add_node("plan", plan)
    b.add_node("branch", branch)
    b.add_node("final", final)
    b.add_edge(START, "plan")
    b.add_conditional_edges(
        "plan", lambda s: [Send("branch", {"i": i}) for i in range(branches)], ["branch"]
    )
    b.add_edge("branch", "final")
    b.add_edge("final", END)
    return b.compile(name=name)


def run_app(limit=10_000, **model):
    llm = budgeted(fake_model(**model))
    return traced(with_budget(fan_graph(llm), Budget(max_tokens=limit)), "solve")


def run_app_of(llm):
    return traced(with_budget(fan_graph(llm), Budget(max_tokens=10_000)), "solve")


def attr(span, key):
    return (span.attributes or {}).get(key)


def total(spans, key):
    return sum(attr(s, key) or 0 for s in spans)


def test_span_tree_parallel_branches_are_siblings(budget_tracer, span_exporter):
    out = run_app().invoke({"outs": []})
    spans = span_exporter.get_finished_spans()
    (run,) = spans_of_kind(spans, "run")
    nodes = spans_of_kind(spans, "node")
    llms = spans_of_kind(spans, "llm")
    assert run.name == "solve" and run.parent is None
    assert sorted(n.name for n in nodes) == ["branch"] * BRANCHES + ["final", "plan"]
    assert {n.parent.span_id for n in nodes} == {run.context.span_id}  # siblings under the run
    for node in nodes:
        (call,) = children_of(spans, node)
        assert call in llms and call.name == "chat fake-4"
        assert attr(call, A.GEN_AI_REQUEST_MODEL) == "fake-4"
    assert len(llms) == out["spend"].calls == BRANCHES + 2
    assert len({s.context.trace_id for s in spans}) == 1


async def test_async_branches_nest_too(budget_tracer, span_exporter):
    await run_app().ainvoke({"outs": []})
    spans = span_exporter.get_finished_spans()
    (run,) = spans_of_kind(spans, "run")
    branches = [n for n in spans_of_kind(spans, "node") if n.name == "branch"]
    assert len(branches) == BRANCHES
    assert all(b.parent.span_id == run.context.span_id for b in branches)
    assert all(len(children_of(spans, b)) == 1 for b in branches)


def test_attributes_equal_the_state_spend(budget_tracer, span_exporter):
    app = run_app(limit=5_000, output_tokens=9, input_tokens=30, reasoning=4, cached=10)
    out = app.invoke({"outs": []})
    spend = out["spend"]
    spans = span_exporter.get_finished_spans()
    llms = spans_of_kind(spans, "llm")
    (run,) = spans_of_kind(spans, "run")
    assert total(llms, A.GEN_AI_USAGE_OUTPUT_TOKENS) == spend.output_tokens == 9 * len(llms)
    assert total(llms, A.GEN_AI_USAGE_INPUT_TOKENS) == spend.input_tokens
    assert total(llms, A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS) == spend.reasoning_tokens == 24
    assert total(llms, A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS) == spend.cached_tokens == 60
    assert total(llms, A.BUDGET_UNITS) == 0  # units == input + output: not repeated
    assert (
        total(llms, A.GEN_AI_USAGE_INPUT_TOKENS) + total(llms, A.GEN_AI_USAGE_OUTPUT_TOKENS)
        == spend.units
    )
    # Run span: the final budget and the rolled-up usage equal the state's spend.
    assert attr(run, A.BUDGET_LIMIT) == 5_000
    assert attr(run, A.BUDGET_SPENT) == spend.units == app.last_meter.spent
    assert attr(run, A.BUDGET_REMAINING) == 5_000 - spend.units
    assert attr(run, A.BUDGET_UTILIZATION) == pytest.approx(spend.units / 5_000)
    assert attr(run, A.USAGE_OUTPUT_TOKENS) == spend.output_tokens
    assert attr(run, A.USAGE_INPUT_TOKENS) == spend.input_tokens
    assert attr(run, A.USAGE_CALLS) == spend.calls
    # units == input + output: not repeated (cost and count="output" budgets set it)
    assert attr(run, A.USAGE_UNITS) is None
    assert spend.units == spend.input_tokens + spend.output_tokens
    for call in llms:
        assert attr(call, A.GEN_AI_OPERATION_NAME) == "chat"
        assert attr(call, A.GEN_AI_RESPONSE_FINISH_REASONS) == ("stop",)
        assert attr(call, A.BUDGET_LIMIT) == 5_000
        reserved, spent, remaining = (
            attr(call, A.BUDGET_RESERVED),
            attr(call, A.BUDGET_SPENT),
            attr(call, A.BUDGET_REMAINING),
        )
        assert reserved > 0 and 0 <= spent <= spend.units and remaining <= 5_000 - spent
        assert A.GEN_AI_INPUT_MESSAGES not in call.attributes  # no content unless opted in
    # gen_ai.request.max_tokens is the clamped cap: branches asked for 50.
    branch_ids = {n.context.span_id for n in spans_of_kind(spans, "node") if n.name == "branch"}
    branch_calls = [c for c in llms if c.parent.span_id in branch_ids]
    assert len(branch_calls) == BRANCHES
    assert {attr(c, A.GEN_AI_REQUEST_MAX_TOKENS) for c in branch_calls} == {50}


def test_node_rollups_equal_the_sum_of_their_calls(budget_tracer, span_exporter):
    out = run_app(output_tokens=5).invoke({"outs": []})
    spans = span_exporter.get_finished_spans()
    for node in spans_of_kind(spans, "node"):
        calls = children_of(spans, node)
        for rolled, own in (
            (A.USAGE_OUTPUT_TOKENS, A.GEN_AI_USAGE_OUTPUT_TOKENS),
            (A.USAGE_INPUT_TOKENS, A.GEN_AI_USAGE_INPUT_TOKENS),
        ):
            assert all(attr(c, rolled) is None for c in calls)  # no budget.usage.* on calls
            assert attr(node, rolled) == total(calls, own) > 0
        assert attr(node, A.USAGE_UNITS) is None  # == input + output: not repeated
        assert attr(node, A.USAGE_CALLS) == len(calls)
    branches = [n for n in spans_of_kind(spans, "node") if n.name == "branch"]
    by_node = out["spend"].by_node["branch"]
    assert total(branches, A.USAGE_OUTPUT_TOKENS) == by_node.output_tokens
    assert (
        total(branches, A.USAGE_INPUT_TOKENS) + total(branches, A.USAGE_OUTPUT_TOKENS)
        == by_node.units
    )
    (run,) = spans_of_kind(spans, "run")
    nodes = spans_of_kind(spans, "node")
    for key in (A.USAGE_INPUT_TOKENS, A.USAGE_OUTPUT_TOKENS, A.USAGE_CALLS):
        assert attr(run, key) == total(nodes, key)


def test_rolled_up_units_appear_when_not_input_plus_output(budget_tracer, span_exporter):
    llm = budgeted(fake_model(output_tokens=5, input_tokens=20))
    budget = Budget(max_tokens=10_000, count="output")
    out = traced(with_budget(fan_graph(llm), budget), "solve").invoke({"outs": []})
    spend = out["spend"]
    spans = span_exporter.get_finished_spans()
    (run,) = spans_of_kind(spans, "run")
    assert attr(run, A.USAGE_UNITS) == spend.units == spend.output_tokens
    for node in spans_of_kind(spans, "node"):
        assert attr(node, A.USAGE_UNITS) == total(children_of(spans, node), A.BUDGET_UNITS) == 5


def test_exhaustion_records_events_and_stop_reason(budget_tracer, span_exporter, metric_reader):
    # A fake that honours max_tokens, like a provider: refusals happen, overshoot never.
    llm = budgeted(BillingFakeChat(texts=["alpha beta gamma delta epsilon zeta eta theta"]))
    app = traced(with_budget(fan_graph(llm), Budget(max_tokens=60)), "solve")
    out = app.invoke({"outs": []})
    assert out["stop_reason"] == "budget"
    spans = span_exporter.get_finished_spans()
    nodes = spans_of_kind(spans, "node")
    events = {e.name: e for n in nodes for e in n.events}
    refused = events["budget.reservation_refused"]
    assert refused.attributes[A.BUDGET_LIMIT] == 60
    assert refused.attributes[A.BUDGET_NODE] in ("branch", "final")
    exhausted = events["budget.exhausted"]
    assert exhausted.attributes[A.BUDGET_LIMIT] == 60
    assert exhausted.attributes["budget.requested"] > 0
    stopped = [n for n in nodes if attr(n, A.BUDGET_STOP_REASON) == "budget"]
    assert stopped and all(not children_of(spans, n) for n in stopped)  # refused: no call span
    assert all(attr(n, A.USAGE_CALLS) is None for n in stopped)  # no call: no budget.usage.*
    (run,) = spans_of_kind(spans, "run")
    assert attr(run, A.BUDGET_STOP_REASON) == "budget"
    assert attr(run, A.BUDGET_SPENT) == out["spend"].units <= 60
    (overshoot,) = metric_points(metric_reader, "budget.overshoot.count")
    assert overshoot.value == 0
    counted = {
        p.attributes["budget.event"]: p.value for p in metric_points(metric_reader, "budget.events")
    }
    assert counted["budget.exhausted"] == len(stopped)


def test_overshoot_is_counted(budget_tracer, metric_reader):
    # This fake ignores max_tokens and bills more prompt than counted: the run overshoots.
    out = run_app(limit=110, output_tokens=5, input_tokens=20).invoke({"outs": []})
    assert out["spend"].units > 110
    (overshoot,) = metric_points(metric_reader, "budget.overshoot.count")
    assert overshoot.value == 1


def test_token_usage_and_run_metrics(budget_tracer, metric_reader):
    out = run_app(output_tokens=6, input_tokens=11).invoke({"outs": []})
    spend = out["spend"]
    points = metric_points(metric_reader, "gen_ai.client.token.usage")
    by_type = {p.attributes[A.GEN_AI_TOKEN_TYPE]: p for p in points}
    assert by_type["output"].sum == spend.output_tokens
    assert by_type["input"].sum == spend.input_tokens
    assert by_type["output"].count == spend.calls
    assert by_type["output"].attributes[A.GEN_AI_REQUEST_MODEL] == "fake-4"
    (run_spend,) = metric_points(metric_reader, "budget.run.spend")
    assert run_spend.sum == spend.units and run_spend.count == 1
    (util,) = metric_points(metric_reader, "budget.run.utilization")
    assert util.sum == pytest.approx(spend.units / 10_000)


def test_custom_events_land_on_the_node_span(budget_tracer, span_exporter):
    @guard(name="estimate")
    def estimate(state):
        observe.emit("budget.estimate", estimate=420, strategy="tale")
        observe.emit("budget.early_stop", rule="esc", statistic=0.97, window=[1, 2])
        observe.emit("budget.judge_unparsable", model="m", text=None)
        return {}

    b = StateGraph(BudgetState)
    b.add_node("estimate", estimate)
    b.add_edge(START, "estimate")
    b.add_edge("estimate", END)
    traced(with_budget(b.compile(), Budget(max_tokens=100))).invoke({})
    (node,) = spans_of_kind(span_exporter.get_finished_spans(), "node")
    assert attr(node, A.BUDGET_ESTIMATE) == 420
    events = {e.name: dict(e.attributes) for e in node.events}
    assert events["budget.early_stop"] == {
        "budget.rule": "esc",
        "budget.statistic": 0.97,
        "budget.window": (1, 2),
    }
    assert events["budget.judge_unparsable"] == {A.GEN_AI_REQUEST_MODEL: "m"}


@pytest.mark.parametrize("opted_in", [False, True])
def test_content_only_when_opted_in(tracer_provider, span_exporter, opted_in):
    llm = budgeted(fake_model())
    if not opted_in:  # even a model that keeps its text for someone else: not recorded
        llm.capture_input = llm.capture_output = True
    handle = instrument(
        tracer_provider=tracer_provider,
        config=TelemetryConfig(capture_content=opted_in, metrics=False),
    )
    try:
        with_budget(fan_graph(llm, branches=1), Budget(max_tokens=1_000)).invoke({"outs": []})
    finally:
        handle.uninstrument()
    llms = spans_of_kind(span_exporter.get_finished_spans(), "llm")
    for call in llms:
        has = A.GEN_AI_INPUT_MESSAGES in call.attributes
        assert has is opted_in and (A.GEN_AI_OUTPUT_MESSAGES in call.attributes) is opted_in
    if opted_in:  # the tracer's opt-in alone makes the budgeted models keep the text
        assert any('"content": "plan"' in attr(c, A.GEN_AI_INPUT_MESSAGES) for c in llms)
        assert all('"content": "step"' in attr(c, A.GEN_AI_OUTPUT_MESSAGES) for c in llms)


def instrumentor_chat(tracer, llm):
    """What an OpenLLMetry-style LangChain instrumentor does: its own LLM span, with usage."""

    def invoke(prompt, **kwargs):
        with tracer.start_as_current_span("ChatModel.chat") as span:
            span.set_attribute("traceloop.span.kind", "llm")
            msg = llm.invoke(prompt, **kwargs)
            usage = msg.usage_metadata
            span.set_attribute(A.GEN_AI_USAGE_INPUT_TOKENS, usage["input_tokens"])
            span.set_attribute(A.GEN_AI_USAGE_OUTPUT_TOKENS, usage["output_tokens"])
            return msg

    return invoke


class _Wrapped:
    def __init__(self, fn):
        self.invoke = fn


@pytest.mark.parametrize("genai_usage", [True, False])
def test_nests_under_an_instrumentor_without_double_counting(
    tracer_provider, span_exporter, genai_usage
):
    outer = tracer_provider.get_tracer("fake-instrumentor")
    llm = _Wrapped(instrumentor_chat(outer, budgeted(fake_model(output_tokens=8))))
    handle = instrument(
        tracer_provider=tracer_provider,
        config=TelemetryConfig(genai_usage=genai_usage, metrics=False),
    )
    try:
        with outer.start_as_current_span("LangGraph") as root:
            out = run_app_of(llm).invoke({"outs": []})
    finally:
        handle.uninstrument()
    spend = out["spend"]
    spans = span_exporter.get_finished_spans()
    theirs = [s for s in spans if s.name == "ChatModel.chat"]
    (run,) = spans_of_kind(spans, "run")
    assert run.parent.span_id == root.context.span_id  # our run nests under their root
    for call in spans_of_kind(spans, "llm"):  # our call span is the child of theirs
        assert call.parent.span_id in {s.context.span_id for s in theirs}
    # The documented rule: our LLM spans (budget_graph.span.kind = "llm") count each call once.
    ours = spans_of_kind(spans, "llm")
    own = A.GEN_AI_USAGE_OUTPUT_TOKENS if genai_usage else A.USAGE_OUTPUT_TOKENS
    assert total(ours, own) == spend.output_tokens
    everything = total(spans, A.GEN_AI_USAGE_OUTPUT_TOKENS)
    if genai_usage:  # naive sum over every span double counts...
        assert everything == 2 * spend.output_tokens
    else:  # ...unless our spans leave gen_ai.usage.* to the instrumentor
        assert everything == spend.output_tokens
    assert trace.get_current_span() is trace.INVALID_SPAN  # contexts all detached


def test_uninstrument_stops_spans(tracer_provider, span_exporter):
    handle = instrument(tracer_provider=tracer_provider, config=TelemetryConfig(metrics=False))
    handle.uninstrument()
    run_app().invoke({"outs": []})
    assert span_exporter.get_finished_spans() == ()


def test_failed_call_span_has_error_status(budget_tracer, span_exporter):
    class Boom(GenericFakeChatModel):
        def _generate(self, *a, **k):
            raise RuntimeError("provider down")

    llm = budgeted(Boom(messages=iter([])))

    @guard
    def node(state):
        llm.invoke("x")
        return {}

    b = StateGraph(BudgetState)
    b.add_node("node", node)
    b.add_edge(START, "node")
    b.add_edge("node", END)
    with pytest.raises(RuntimeError):
        with_budget(b.compile(), Budget(max_tokens=1_000)).invoke({})
    spans = span_exporter.get_finished_spans()
    (call,) = spans_of_kind(spans, "llm")
    (node_span,) = spans_of_kind(spans, "node")
    for span in (call, node_span):
        assert span.status.status_code == trace.StatusCode.ERROR
        assert attr(span, A.ERROR_TYPE) == "RuntimeError"


def test_trace_run_and_traced_for_graphs_without_with_budget(budget_tracer, span_exporter):
    from budget_graph import Meter

    meter = Meter(Budget(max_tokens=1_000))
    llm = budgeted(fake_model(output_tokens=3), meter=meter)
    plain = fan_graph(llm, branches=2, name="plain")
    out = traced(plain, "plain-run").invoke({"outs": []})
    with trace_run("manual", meter=meter) as run:
        run.state = {"stop_reason": "solved"}
        llm.invoke("outside any node")
    spans = span_exporter.get_finished_spans()
    first, manual = spans_of_kind(spans, "run")
    assert first.name == "plain-run" and manual.name == "manual"
    assert attr(first, A.USAGE_OUTPUT_TOKENS) == out["spend"].output_tokens == 3 * 4
    assert attr(manual, A.BUDGET_STOP_REASON) == "solved"
    assert attr(manual, A.BUDGET_SPENT) == meter.spent
    (call,) = children_of(spans, manual)
    assert attr(manual, A.USAGE_OUTPUT_TOKENS) == attr(call, A.GEN_AI_USAGE_OUTPUT_TOKENS) == 3


def test_a_run_reported_inside_traced_is_absorbed(budget_tracer, span_exporter):
    # with_budget graphs may report their own runs; traced() around one keeps one run span.
    from budget_graph import Meter
    from budget_graph._internal.observe import RunInfo

    meter = Meter(Budget(max_tokens=1_000))
    llm = budgeted(fake_model(output_tokens=3), meter=meter)
    with trace_run("outer", absorb_nested=True):
        inner = RunInfo(name="inner", meter=meter)
        observe.notify("run_started", inner)
        llm.invoke("hi")
        inner.state = {"stop_reason": "solved"}
        observe.notify("run_finished", inner)
    (run,) = spans_of_kind(span_exporter.get_finished_spans(), "run")
    assert run.name == "outer" and attr(run, A.USAGE_OUTPUT_TOKENS) == 3
    assert attr(run, A.BUDGET_SPENT) == meter.spent
