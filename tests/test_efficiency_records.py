import json
import re

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from budget_graph.budget import Spend, Usage
from budget_graph.efficiency import RecordsError, RunRecord, read_jsonl, write_jsonl
from budget_graph.efficiency.records import (
    ATTR_BUDGET,
    ATTR_CORRECT,
    ATTR_INPUT_TOKENS,
    ATTR_ITEM,
    ATTR_METHOD,
    ATTR_OUTPUT_TOKENS,
    ATTR_REASONING_TOKENS,
    ATTR_RUN_ID,
    ATTR_STOP_REASON,
    ATTR_TASK,
    from_state,
)
from budget_graph.efficiency.spans import from_spans
from budget_graph.errors import BudgetError


def sample_records() -> list[RunRecord]:
    return [
        RunRecord(
            task="game24",
            item="1",
            method="tot",
            budget=5000,
            correct=True,
            prompt_tokens=1200,
            generated_tokens=340,
            reasoning_tokens=12,
            calls=7,
            stop_reason="solved",
            answer="(4+4)*3",
            anytime=[(100, 0.25), (340, 1.0)],
            extra={"depth": 3, "note": "ünïcode"},
        ),
        RunRecord(
            task="date",
            item="q2",
            method="sc-fixed5",
            correct=False,
            prompt_tokens=800,
            generated_tokens=120,
            calls=5,
            extra={"samples": 5},
        ),
    ]


def test_record_validation_names_field():
    with pytest.raises(ValueError, match="generated_tokens"):
        RunRecord(task="t", item="1", method="m", correct=True, generated_tokens=-1)
    with pytest.raises(ValueError, match=r"anytime\[1\] tokens must be >= 0 and non-decreasing"):
        RunRecord(task="t", item="1", method="m", correct=True, anytime=[(10, 0.1), (5, 0.2)])
    with pytest.raises(ValueError, match="extra_forbidden"):
        RunRecord.model_validate(
            {"task": "t", "item": "1", "method": "m", "correct": True, "colour": "red"}
        )
    r = sample_records()[0]
    assert r.total_tokens == 1540 and r.tokens("prompt") == 1200
    with pytest.raises(ValueError, match="Invalid token kind: 'output'"):
        r.tokens("output")


def test_jsonl_round_trip(tmp_path):
    recs = sample_records()
    path = write_jsonl(tmp_path / "sub" / "runs.jsonl", recs)
    assert path.read_text(encoding="utf-8").count("\n") == 2
    assert read_jsonl(path) == recs
    assert [p.name for p in path.parent.iterdir()] == ["runs.jsonl"]  # no temp files left


def test_jsonl_write_is_atomic_on_failure(tmp_path):
    path = tmp_path / "runs.jsonl"
    write_jsonl(path, sample_records())
    before = path.read_text()

    def broken():
        yield sample_records()[0]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_jsonl(path, broken())
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["runs.jsonl"]


def test_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "runs.jsonl"
    lines = [r.model_dump_json() for r in sample_records()]
    path.write_text(lines[0] + "\n\n" + lines[1] + "\n")
    assert len(read_jsonl(path)) == 2


def test_corrupt_jsonl_names_line_and_field(tmp_path):
    path = tmp_path / "runs.jsonl"
    good, bad = (json.loads(r.model_dump_json()) for r in sample_records())
    bad["prompt_tokens"] = "lots"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(RecordsError) as info:
        read_jsonl(path)
    err = info.value
    assert (err.line, err.field) == (2, "prompt_tokens")
    assert re.search(r"runs\.jsonl:2: invalid field 'prompt_tokens': .*'lots'", str(err))
    assert isinstance(err, BudgetError) and isinstance(err, ValueError)


def test_corrupt_jsonl_missing_field_and_bad_json(tmp_path):
    path = tmp_path / "runs.jsonl"
    rec = json.loads(sample_records()[1].model_dump_json())
    del rec["correct"]
    path.write_text(json.dumps(rec) + "\n")
    msg = r"runs\.jsonl:1: invalid field 'correct': Field required"
    with pytest.raises(RecordsError, match=msg):
        read_jsonl(path)
    path.write_text(sample_records()[0].model_dump_json() + "\n" + '{"task": "t",' + "\n")
    with pytest.raises(RecordsError, match=r"runs\.jsonl:2: not valid JSON") as info:
        read_jsonl(path)
    assert info.value.line == 2 and info.value.field is None


def test_corrupt_nested_field_is_dotted(tmp_path):
    path = tmp_path / "runs.jsonl"
    rec = json.loads(sample_records()[0].model_dump_json())
    rec["anytime"] = [[10, "x"]]
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(RecordsError, match=r":1: invalid field 'anytime\.0\.1'"):
        read_jsonl(path)


# ---------------------------------------------------------------- from_state


def test_from_state_uses_spend_answer_stop_reason_and_trace():
    spend = Spend.of(
        Usage(input_tokens=500, output_tokens=120, reasoning_tokens=20, calls=3), node="expand"
    )
    state = {
        "spend": spend,
        "answer": 24,
        "stop_reason": "solved",
        "anytime": [(50, 0.0), {"tokens": 120, "quality": 1.0}],
        "other": "ignored",
    }
    r = from_state(
        state,
        task="game24",
        item="7",
        method="planner",
        budget=1000,
        correct=lambda a: a == "24",
        extra={"k": 5},
    )
    assert (r.prompt_tokens, r.generated_tokens, r.reasoning_tokens, r.calls) == (500, 120, 20, 3)
    assert r.correct and r.answer == "24" and r.stop_reason == "solved"
    assert r.anytime == [(50, 0.0), (120, 1.0)] and r.budget == 1000 and r.extra == {"k": 5}


def test_from_state_minimal_and_errors():
    r = from_state({"spend": Spend()}, task="t", item="1", method="m", correct=False)
    assert r.generated_tokens == 0 and r.answer is None and r.anytime == []
    msg = r"final state has no 'spend' key \(keys: \['answer'\]\)"
    with pytest.raises(RecordsError, match=msg):
        from_state({"answer": "x"}, task="t", item="1", method="m", correct=True)
    with pytest.raises(RecordsError, match=r"invalid field 'budget'"):
        from_state({"spend": Spend()}, task="t", item="1", method="m", correct=True, budget=0)
    with pytest.raises(RecordsError, match="must be a Spend"):
        from_state({"spend": 5}, task="t", item="1", method="m", correct=True)


# ---------------------------------------------------------------- from_spans


@pytest.fixture
def tracer_and_exporter():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def _run(tracer, run_id, item, correct, calls):
    """A run span with rolled-up usage, a node span (also rolled up), LLM leaf spans."""
    total_in = sum(c[0] for c in calls)
    total_out = sum(c[1] for c in calls)
    with tracer.start_as_current_span("run") as run:
        run.set_attributes(
            {
                ATTR_RUN_ID: run_id,
                ATTR_TASK: "game24",
                ATTR_METHOD: "planner",
                ATTR_ITEM: item,
                ATTR_BUDGET: 2000,
                ATTR_CORRECT: correct,
                ATTR_INPUT_TOKENS: total_in,
                ATTR_OUTPUT_TOKENS: total_out,
            }
        )
        with tracer.start_as_current_span("node:expand") as node:
            node.set_attributes({ATTR_INPUT_TOKENS: total_in, ATTR_OUTPUT_TOKENS: total_out})
            for i, o in calls:
                with tracer.start_as_current_span("chat") as llm:
                    llm.set_attributes(
                        {ATTR_INPUT_TOKENS: i, ATTR_OUTPUT_TOKENS: o, ATTR_REASONING_TOKENS: 1}
                    )
        with tracer.start_as_current_span("terminator") as term:
            term.set_attribute(ATTR_STOP_REASON, "budget")


def test_from_spans_counts_leaf_usage_once(tracer_and_exporter):
    tracer, exporter = tracer_and_exporter
    _run(tracer, "r1", "1", True, [(100, 10), (200, 20)])
    _run(tracer, "r2", "2", False, [(50, 5)])
    spans = exporter.get_finished_spans()
    records = from_spans(spans)
    by_item = {r.item: r for r in records}
    r1, r2 = by_item["1"], by_item["2"]
    assert (r1.prompt_tokens, r1.generated_tokens, r1.reasoning_tokens, r1.calls) == (300, 30, 2, 2)
    assert (r1.task, r1.method, r1.budget, r1.correct, r1.stop_reason) == (
        "game24",
        "planner",
        2000,
        True,
        "budget",
    )
    assert (r2.prompt_tokens, r2.generated_tokens, r2.calls, r2.correct) == (50, 5, 1, False)
    # The same spans exported as JSON dicts give the same records.
    dicts = [json.loads(s.to_json()) for s in spans]
    assert sorted(from_spans(dicts), key=lambda r: r.item) == sorted(records, key=lambda r: r.item)


def test_from_spans_groups_by_trace_and_uses_defaults(tracer_and_exporter):
    tracer, exporter = tracer_and_exporter
    for _ in range(2):
        with tracer.start_as_current_span("root"), tracer.start_as_current_span("chat") as s:
            s.set_attributes({ATTR_INPUT_TOKENS: 7, ATTR_OUTPUT_TOKENS: 3})
    records = from_spans(exporter.get_finished_spans(), task="mine", method="agent")
    assert len(records) == 2
    assert all(
        (r.task, r.method, r.total_tokens, r.correct) == ("mine", "agent", 10, False)
        for r in records
    )
    with pytest.raises(RecordsError, match=r"has no 'budget_graph.task' attribute"):
        from_spans(exporter.get_finished_spans())


def test_from_spans_otlp_and_nested_attributes():
    spans = [
        {
            "traceId": "ab",
            "spanId": "01",
            "attributes": [
                {"key": ATTR_RUN_ID, "value": {"stringValue": "x"}},
                {"key": ATTR_TASK, "value": {"stringValue": "date"}},
                {"key": ATTR_METHOD, "value": {"stringValue": "sc"}},
                {"key": ATTR_CORRECT, "value": {"boolValue": True}},
            ],
        },
        {
            "traceId": "ab",
            "spanId": "02",
            "parentSpanId": "01",
            "attributes": [
                {"key": ATTR_INPUT_TOKENS, "value": {"intValue": "40"}},
                {"key": ATTR_OUTPUT_TOKENS, "value": {"intValue": "9"}},
            ],
        },
        {
            "context": {"trace_id": "0xcd", "span_id": "0x03"},
            "parent_id": None,
            "attributes": {
                "gen_ai": {"usage": {"input_tokens": 4, "output_tokens": 1}},
                "budget_graph": {"task": "date", "method": "sc", "correct": "true"},
            },
        },
    ]
    a, b = from_spans(spans)
    assert (a.item, a.prompt_tokens, a.generated_tokens, a.correct) == ("x", 40, 9, True)
    assert (b.prompt_tokens, b.generated_tokens, b.correct, b.calls) == (4, 1, True, 1)


def test_from_state_reads_our_graphs_trace_judging_each_answer():
    from budget_graph.nodes import AnytimePoint

    state = {
        "spend": Spend(input_tokens=300, output_tokens=90, calls=3),
        "answer": "b",
        "trace": [
            AnytimePoint(30, 100, 0, "a"),
            AnytimePoint(60, 200, 0, None),
            AnytimePoint(90, 300, 0, "b"),
        ],
    }
    rec = from_state(state, task="t", item="1", method="m", correct=lambda a: a == "b")
    assert rec.anytime == [(30, 0.0), (60, 0.0), (90, 1.0)]
    assert rec.anytime_usage == [(100, 0), (200, 0), (300, 0)]
    assert rec.trace("total") == [(130, 0.0), (260, 0.0), (390, 1.0)]
    # with a plain bool there is no way to judge each point: no trace
    assert from_state(state, task="t", item="1", method="m", correct=True).anytime == []


def test_anytime_usage_is_validated():
    with pytest.raises(ValueError, match="one entry per anytime point"):
        RunRecord(
            task="t",
            item="1",
            method="m",
            correct=True,
            anytime=[(1, 1.0)],
            anytime_usage=[(1, 0), (2, 0)],
        )
    with pytest.raises(ValueError, match="non-decreasing"):
        RunRecord(
            task="t",
            item="1",
            method="m",
            correct=True,
            anytime=[(1, 1.0), (2, 1.0)],
            anytime_usage=[(5, 0), (4, 0)],
        )
    with pytest.raises(ValueError, match="Invalid token kind: 'cost'"):
        RunRecord(task="t", item="1", method="m", correct=True).tokens("cost")
