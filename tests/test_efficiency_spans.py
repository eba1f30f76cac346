"""from_spans on the spans budget_graph's own telemetry exports, compared with from_state."""

import itertools

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph

from budget_graph import Budget, BudgetState, budgeted, guard, with_budget
from budget_graph.efficiency import from_spans, from_state
from budget_graph.efficiency.records import (
    ATTR_INPUT_TOKENS,
    ATTR_METHOD,
    ATTR_OUTPUT_TOKENS,
    ATTR_SPAN_KIND,
    ATTR_TASK,
    SPAN_KIND_LLM,
)
from budget_graph.telemetry import attributes as A
from budget_graph.telemetry import traced
from budget_graph.testing import BillingFakeChat


def fake(output_tokens, input_tokens):
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "output_token_details": {"reasoning": 2},
    }
    return GenericFakeChatModel(
        messages=itertools.repeat(AIMessage(content="x", usage_metadata=usage))
    )


def two_step_app(llm):
    @guard
    def think(state):
        llm.invoke("think")
        return {}

    @guard
    def answer(state):
        llm.invoke("answer")
        llm.invoke("check")
        return {}

    b = StateGraph(BudgetState)
    b.add_node("think", think)
    b.add_node("answer", answer)
    b.add_edge(START, "think")
    b.add_edge("think", "answer")
    b.add_edge("answer", END)
    return traced(with_budget(b.compile(), Budget(max_tokens=10_000)), "solve")


def test_records_from_our_spans_equal_records_from_state(budget_tracer, span_exporter):
    states = [two_step_app(budgeted(fake(o, i))).invoke({}) for o, i in ((9, 30), (4, 11))]
    spans = span_exporter.get_finished_spans()
    got = from_spans(spans, task="demo", method="two-step")
    assert len(got) == 2
    for record, state in zip(got, states, strict=True):
        expected = from_state(
            state, task="demo", item=record.item, method="two-step", correct=False
        )
        assert (
            record.prompt_tokens,
            record.generated_tokens,
            record.reasoning_tokens,
            record.calls,
        ) == (
            expected.prompt_tokens,
            expected.generated_tokens,
            expected.reasoning_tokens,
            expected.calls,
        )
        assert record.calls == 3 and record.reasoning_tokens == 6


def test_our_llm_spans_win_over_an_outer_instrumentors_siblings(tracer_provider, span_exporter):
    tracer = tracer_provider.get_tracer("t")
    with tracer.start_as_current_span("run") as run:
        run.set_attributes({ATTR_TASK: "t", ATTR_METHOD: "m"})
        # An outer instrumentor's span for the same call, a sibling of ours.
        with tracer.start_as_current_span("theirs") as s:
            s.set_attributes({ATTR_INPUT_TOKENS: 10, ATTR_OUTPUT_TOKENS: 5})
        with tracer.start_as_current_span("ours") as s:
            s.set_attributes(
                {ATTR_INPUT_TOKENS: 10, ATTR_OUTPUT_TOKENS: 5, ATTR_SPAN_KIND: SPAN_KIND_LLM}
            )
    (record,) = from_spans(span_exporter.get_finished_spans())
    assert (record.prompt_tokens, record.generated_tokens, record.calls) == (10, 5, 1)


def test_a_nested_level_does_not_set_the_runs_budget_or_stop_reason(budget_tracer, span_exporter):
    """The writer runs out of its own 60 tokens; the record is the request's run."""
    llm = budgeted(BillingFakeChat(texts=["alpha beta gamma delta"]))

    def step(name):
        return guard(lambda s: (llm.invoke(f"{name} alpha beta gamma", max_tokens=8), {})[1])

    w = StateGraph(BudgetState)
    for i in range(4):
        w.add_node(f"w{i}", step(f"w{i}"))
        w.add_edge(START if i == 0 else f"w{i - 1}", f"w{i}")
    writer = with_budget(w.compile(), Budget(max_tokens=60), name="writer")
    r = StateGraph(BudgetState)
    r.add_node("plan", step("plan"))
    r.add_node("writer", writer)
    r.add_edge(START, "plan")
    r.add_edge("plan", "writer")
    out = with_budget(r.compile(), Budget(max_tokens=5_000), name="request").invoke({})
    assert out.get("stop_reason") is None and out["stop_reasons"] == {"writer": "budget"}
    spans = span_exporter.get_finished_spans()
    inner = [s for s in spans if A.BUDGET_ANCESTORS_SCOPE in (s.attributes or {})]
    assert any(s.attributes.get(A.BUDGET_STOP_REASON) == "budget" for s in inner)
    assert any(s.attributes.get(A.BUDGET_LIMIT) == 60 for s in inner)
    (record,) = from_spans(spans, task="t", method="m")
    assert record.budget == 5_000 and record.stop_reason is None
    assert record.generated_tokens + record.prompt_tokens == out["spend"].total_tokens
