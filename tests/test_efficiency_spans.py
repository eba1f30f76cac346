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
from budget_graph.telemetry import traced


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
