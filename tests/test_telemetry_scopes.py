"""Nested budget levels on spans (#25): ``budget.scope`` and the ancestors' remaining units."""

import operator
from typing import Annotated

from langgraph.graph import START, StateGraph

from budget_graph import Budget, BudgetState, budgeted, guard, with_budget
from budget_graph.context import use_meter
from budget_graph.meter import Meter
from budget_graph.telemetry import attributes as A
from budget_graph.telemetry import trace_run
from budget_graph.testing import BillingFakeChat
from tests.fixtures.otel import spans_of_kind

TEXT = "alpha beta gamma delta epsilon zeta eta theta"


class Steps(BudgetState):
    steps: Annotated[list[str], operator.add]


def _one_call(llm, name):
    def node(state):
        llm.invoke(f"{name}: {TEXT}", max_tokens=20)
        return {"steps": [name]}

    return guard(node, name=name)


def _request_with_writer(llm, *, request=5_000, writer=300):
    """A "request" graph: a ``plan`` call, then a nested "writer" graph making one call."""
    w = StateGraph(Steps)
    w.add_node("draft", _one_call(llm, "draft"))
    w.add_edge(START, "draft")
    writer_app = with_budget(w.compile(), Budget(max_tokens=writer), name="writer")
    r = StateGraph(Steps)
    r.add_node("plan", _one_call(llm, "plan"))
    r.add_node("writer", writer_app)
    r.add_edge(START, "plan")
    r.add_edge("plan", "writer")
    return with_budget(r.compile(), Budget(max_tokens=request), name="request")


def _attrs(span):
    return dict(span.attributes or {})


def test_a_nested_call_span_names_its_level_and_the_ancestors_remaining(
    budget_tracer, span_exporter
):
    fake = BillingFakeChat(texts=[TEXT])
    out = _request_with_writer(budgeted(fake)).invoke({"steps": []})
    plan_bill, draft_bill = fake.billed
    assert out["spend"].units == plan_bill + draft_bill
    spans = span_exporter.get_finished_spans()
    plan, draft = sorted(spans_of_kind(spans, "llm"), key=lambda s: s.start_time)

    # The top-level call: its own level, no ancestors.
    p = _attrs(plan)
    assert p[A.BUDGET_SCOPE] == "request" and p[A.BUDGET_LIMIT] == 5_000
    assert p[A.BUDGET_SPENT] == plan_bill and p[A.BUDGET_REMAINING] == 5_000 - plan_bill
    assert A.BUDGET_ANCESTORS_SCOPE not in p and A.BUDGET_ANCESTORS_REMAINING not in p

    # The writer's call: budget.* describe the writer level; the request's remaining
    # is read at the same moment (both calls billed there).
    d = _attrs(draft)
    assert d[A.BUDGET_SCOPE] == "writer" and d[A.BUDGET_LIMIT] == 300
    assert d[A.BUDGET_SPENT] == draft_bill and d[A.BUDGET_REMAINING] == 300 - draft_bill
    assert d[A.BUDGET_ANCESTORS_SCOPE] == ("request",)
    assert d[A.BUDGET_ANCESTORS_REMAINING] == (5_000 - plan_bill - draft_bill,)

    # Node and run spans carry the level too.
    nodes = {s.name: _attrs(s) for s in spans_of_kind(spans, "node")}
    assert nodes["plan"][A.BUDGET_SCOPE] == "request"
    assert nodes["draft"][A.BUDGET_SCOPE] == "writer"
    assert nodes["draft"][A.BUDGET_ANCESTORS_SCOPE] == ("request",)
    runs = {_attrs(s)[A.BUDGET_SCOPE]: _attrs(s) for s in spans_of_kind(spans, "run")}
    assert runs["request"][A.BUDGET_LIMIT] == 5_000
    assert runs["request"][A.BUDGET_SPENT] == plan_bill + draft_bill
    assert A.BUDGET_ANCESTORS_SCOPE not in runs["request"]
    assert runs["writer"][A.BUDGET_LIMIT] == 300
    assert runs["writer"][A.BUDGET_SPENT] == draft_bill
    assert runs["writer"][A.BUDGET_ANCESTORS_SCOPE] == ("request",)
    assert runs["writer"][A.BUDGET_ANCESTORS_REMAINING] == (5_000 - plan_bill - draft_bill,)


def test_three_levels_list_ancestors_outermost_first(budget_tracer, span_exporter):
    fake = BillingFakeChat(texts=[TEXT])
    llm = budgeted(fake)
    request = Meter(Budget(max_tokens=1_000), scope="request")
    researcher = Meter(Budget(max_tokens=600), scope="researcher", parent=request)
    writer = Meter(Budget(max_tokens=200), scope="writer", parent=researcher)
    g = StateGraph(Steps)
    g.add_node("draft", _one_call(llm, "draft"))
    g.add_edge(START, "draft")
    app = g.compile()
    with trace_run("writer", meter=writer), use_meter(writer):
        app.invoke({"steps": []})
    (bill,) = fake.billed
    spans = span_exporter.get_finished_spans()
    for span in spans_of_kind(spans, "llm") + spans_of_kind(spans, "run"):
        a = _attrs(span)
        assert a[A.BUDGET_SCOPE] == "writer" and a[A.BUDGET_REMAINING] == 200 - bill
        assert a[A.BUDGET_ANCESTORS_SCOPE] == ("request", "researcher")
        assert a[A.BUDGET_ANCESTORS_REMAINING] == (1_000 - bill, 600 - bill)
