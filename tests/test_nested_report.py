"""Nested budgets (#25) in the efficiency report: scope names and per-level spend from spans."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from langchain.agents import AgentState, create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph

from budget_graph import Budget, BudgetState, budgeted, guard, with_budget
from budget_graph.efficiency import (
    RecordsError,
    RunRecord,
    ScopeRecord,
    from_spans,
    read_jsonl,
    render_report,
    write_jsonl,
)
from budget_graph.middleware import TokenBudgetMiddleware
from budget_graph.testing import BillingFakeChat, ScriptedToolModel, turn

TEXT = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"


class S(MessagesState, BudgetState):
    pass


class AS(AgentState, BudgetState):  # type: ignore[misc]
    pass


@tool
def lookup(q: str) -> str:
    """Look something up."""
    return f"facts about {q}"


def _team() -> tuple[Any, dict[str, Any]]:
    """A "request" graph: its own call, a "researcher" subgraph as a node (a small limit
    it runs out of), a "writer" middleware agent called from a node."""
    models = {
        "request": BillingFakeChat(texts=[TEXT]),
        "researcher": ScriptedToolModel(steps=[turn(("lookup", {"q": "x"}), output_tokens=30)] * 6),
        "writer": ScriptedToolModel(steps=[turn(("lookup", {"q": "y"}), output_tokens=20)] * 2),
    }
    researcher = with_budget(
        create_agent(budgeted(models["researcher"]), [lookup], state_schema=AS),
        Budget(max_tokens=150),
        name="researcher",
    )
    writer = create_agent(
        models["writer"],
        [lookup],
        middleware=[TokenBudgetMiddleware(run_limit=2_000, count="total", scope="writer")],
    )
    plan_llm = budgeted(models["request"])

    @guard
    def plan(state: dict) -> dict:
        return {"messages": [plan_llm.invoke(f"plan: {TEXT}", max_tokens=20)]}

    @guard
    def write(state: dict) -> dict:
        return {"messages": writer.invoke({"messages": [HumanMessage("write")]})["messages"][-1:]}

    b = StateGraph(S)
    b.add_node("plan", plan)
    b.add_node("researcher", researcher)
    b.add_node("write", write)
    b.add_edge(START, "plan")
    b.add_edge("plan", "researcher")
    b.add_edge("researcher", "write")
    return with_budget(b.compile(), Budget(max_tokens=20_000), name="request"), models


def _billed(model: Any) -> int:
    return model.billed_total if isinstance(model, ScriptedToolModel) else sum(model.billed)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_nested_runs_record_names_each_level_and_its_spend(
    budget_tracer, span_exporter, use_async
):
    app, models = _team()
    payload = {"messages": [HumanMessage("research and write")]}
    out = await app.ainvoke(payload) if use_async else app.invoke(payload)
    assert out["stop_reasons"] == {"researcher": "budget"}

    (record,) = from_spans(span_exporter.get_finished_spans(), task="team", method="nested")
    assert record.scope == "request" and record.budget == 20_000
    levels = {tuple(s.path): s for s in record.scopes}
    assert list(levels) == [("request",), ("request", "researcher"), ("request", "writer")]
    billed = {name: _billed(m) for name, m in models.items()}
    assert levels["request", "researcher"].tokens("total") == billed["researcher"]
    assert levels["request", "writer"].tokens("total") == billed["writer"]
    assert levels["request",].tokens("total") == sum(billed.values()) == record.total_tokens
    assert levels["request",].calls == record.calls
    assert levels["request", "researcher"].budget == 150
    assert levels["request", "writer"].budget == 2_000
    assert levels["request", "researcher"].stop_reason == "budget"
    assert levels["request",].stop_reason is None and record.stop_reason is None

    text = render_report([record])
    section = text.split("### Budget levels", 1)[1].split("###", 1)[0]
    rows = {r.split(" | ")[1]: r for r in section.splitlines() if r.startswith("| nested")}
    assert list(rows) == ["request", "request / researcher", "request / writer"]
    cells = {name: [c.strip() for c in row.strip("| ").split("|")] for name, row in rows.items()}
    # method, level, runs, mean generated tokens (the report's default kind), calls, limit, stopped
    researcher = levels["request", "researcher"]
    assert cells["request / researcher"][2:] == [
        "1",
        f"{researcher.generated_tokens:.2f}",
        "1.000",
        "150",
        "1/1",
    ]
    assert cells["request / writer"][-2:] == ["2,000", "0/1"]
    assert cells["request"][-2:] == ["20,000", "0/1"]

    (row,) = json.loads(render_report([record], fmt="json"))["tasks"][0]["rows"]
    assert [s["path"] for s in row["scopes"]] == [list(p) for p in levels]
    assert row["scopes"][1]["stopped"] == 1


def test_a_record_without_levels_shows_no_level_section():
    record = RunRecord(task="t", item="1", method="m", correct=True, generated_tokens=10)
    assert "Budget levels" not in render_report([record])
    (row,) = json.loads(render_report([record], fmt="json"))["tasks"][0]["rows"]
    assert "scopes" not in row


def test_records_written_before_scopes_still_load(tmp_path):
    old = {
        "task": "date",
        "item": "q1",
        "method": "sc",
        "budget": 500,
        "correct": True,
        "prompt_tokens": 90,
        "generated_tokens": 30,
        "calls": 2,
    }
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n")
    (record,) = read_jsonl(path)
    assert record.scope is None and record.scopes == []

    nested = record.model_copy(
        update={
            "scope": "request",
            "scopes": [
                ScopeRecord(path=["request"], budget=500, prompt_tokens=90, generated_tokens=30),
                ScopeRecord(path=["request", "writer"], budget=100, generated_tokens=10),
            ],
        }
    )
    write_jsonl(tmp_path / "new.jsonl", [nested])
    assert read_jsonl(tmp_path / "new.jsonl") == [nested]


def test_the_first_level_must_be_the_runs_own(tmp_path):
    with pytest.raises(ValueError, match=re.escape("scopes[0] must be the run's own level")):
        RunRecord(
            task="t",
            item="1",
            method="m",
            correct=True,
            scope="request",
            scopes=[ScopeRecord(path=["writer"]), ScopeRecord(path=["writer", "x"])],
        )
    path = tmp_path / "bad.jsonl"
    path.write_text('{"task": "t", "item": "1", "method": "m", "correct": true, "scopes": 1}\n')
    with pytest.raises(RecordsError, match="scopes"):
        read_jsonl(path)


def _otlp(**attrs: Any) -> list[dict]:
    def value(v: Any) -> dict:
        if isinstance(v, tuple):
            return {"arrayValue": {"values": [value(x) for x in v]}}
        if isinstance(v, int):
            return {"intValue": str(v)}
        return {"stringValue": v}

    return [{"key": k.replace("__", "."), "value": value(v)} for k, v in attrs.items()]


def test_levels_from_otlp_json_spans():
    """Spans as an OTLP JSON export gives them: attributes as key/value lists."""
    common = {"budget_graph.task": "t", "budget_graph.method": "m", "budget_graph.run.id": "r"}

    def span(sid: str, **attrs: Any) -> dict:
        kv = _otlp(**attrs) + _otlp(**{k.replace(".", "__"): v for k, v in common.items()})
        return {"traceId": "1", "spanId": sid, "attributes": kv}

    spans = [
        span(
            "a",
            budget__scope="request",
            budget__limit=900,
            budget_graph__span__kind="llm",
            gen_ai__usage__input_tokens=10,
            gen_ai__usage__output_tokens=5,
        ),
        span(
            "b",
            budget__scope="writer",
            budget__ancestors__scope=("request",),
            budget__limit=80,
            budget_graph__span__kind="llm",
            gen_ai__usage__input_tokens=20,
            gen_ai__usage__output_tokens=7,
        ),
    ]
    (record,) = from_spans(spans)
    assert record.scope == "request" and record.budget == 900
    assert [(s.path, s.budget, s.tokens("total")) for s in record.scopes] == [
        (["request"], 900, 42),
        (["request", "writer"], 80, 27),
    ]
