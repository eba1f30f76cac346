"""GenAI conventions on LLM spans: provider, server, sampling, response, content, metrics, units."""

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from budget_graph import Budget, Meter, budgeted, with_budget
from budget_graph._internal.observe import CallInfo
from budget_graph.tasks.game24 import Game24Task
from budget_graph.telemetry import TelemetryConfig, instrument, setup, trace_run, traced
from budget_graph.telemetry import attributes as A
from budget_graph.telemetry.content import content_attributes, input_messages, output_messages
from budget_graph.telemetry.genai import model_facts, request_attributes, response_attributes
from tests.fixtures.otel import metric_points, spans_of_kind
from tests.test_telemetry import BRANCHES, fake_model, fan_graph, run_app


def attr(span, key):
    return (span.attributes or {}).get(key)


def test_llm_spans_follow_the_genai_conventions(
    budget_tracer, span_exporter, replay_chat_openai, replay_base_url
):
    meter = Meter(Budget(max_tokens=5_000))
    llm = budgeted(replay_chat_openai(temperature=0.7, top_p=0.9), meter=meter)
    task = Game24Task()
    with trace_run("one call", meter=meter):
        llm.invoke(task.cot_prompt(task.items()[0]), max_tokens=120)
    (call,) = spans_of_kind(span_exporter.get_finished_spans(), "llm")
    assert attr(call, A.GEN_AI_PROVIDER_NAME) == "openai"
    assert attr(call, A.GEN_AI_REQUEST_MODEL) == "gpt-4"
    assert attr(call, A.GEN_AI_RESPONSE_MODEL)
    assert attr(call, A.SERVER_ADDRESS) == "127.0.0.1"
    assert attr(call, A.SERVER_PORT) == int(replay_base_url.split(":")[-1].split("/")[0])
    assert attr(call, A.GEN_AI_REQUEST_TEMPERATURE) == 0.7
    assert attr(call, A.GEN_AI_REQUEST_TOP_P) == 0.9
    assert attr(call, A.OPENINFERENCE_SPAN_KIND) == "LLM"


def test_request_overrides_the_models_sampling_and_response_fields_are_read():
    model = fake_model()
    call = CallInfo(model="fake-4", node=None, chat_model=model)
    call.request = {"temperature": 0.2, "seed": 7, "stop": ["\n\n"]}
    attrs = request_attributes(call, model_facts(model))
    assert attrs[A.GEN_AI_REQUEST_TEMPERATURE] == 0.2
    assert attrs[A.GEN_AI_REQUEST_SEED] == 7
    assert attrs[A.GEN_AI_REQUEST_STOP_SEQUENCES] == ["\n\n"]
    msg = AIMessage("hi", response_metadata={"model_name": "gpt-4-0613"})
    call.response = ChatResult(
        generations=[ChatGeneration(message=msg)], llm_output={"id": "chatcmpl-1"}
    )
    assert response_attributes(call) == {
        A.GEN_AI_RESPONSE_MODEL: "gpt-4-0613",
        A.GEN_AI_RESPONSE_ID: "chatcmpl-1",
    }


def test_content_follows_the_schema_and_truncation_keeps_json_valid():
    long = "x" * 50
    messages = [
        SystemMessage("be brief"),
        HumanMessage(long),
        AIMessage("", tool_calls=[{"name": "calc", "args": {"e": "1+1"}, "id": "t1"}]),
        ToolMessage("2", tool_call_id="t1"),
    ]
    msg = AIMessage(long, response_metadata={"finish_reason": "tool_calls"})
    call = CallInfo(model="m", node=None, input_messages=messages)
    call.response = ChatResult(generations=[ChatGeneration(message=msg)])
    attrs = content_attributes(call, max_chars=10)
    sent = json.loads(attrs[A.GEN_AI_INPUT_MESSAGES])  # valid JSON though cut
    got = json.loads(attrs[A.GEN_AI_OUTPUT_MESSAGES])
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[1]["parts"] == [{"type": "text", "content": "x" * 10 + "…"}]
    assert sent[2]["parts"] == [
        {"type": "tool_call", "id": "t1", "name": "calc", "arguments": {"e": "1+1"}}
    ]
    assert sent[3]["parts"] == [{"type": "tool_call_response", "id": "t1", "response": "2"}]
    assert got == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "x" * 10 + "…"}],
            "finish_reason": "tool_call",  # the schema's value for OpenAI's "tool_calls"
        }
    ]
    assert input_messages(["plain"], None) == [
        {"role": "user", "parts": [{"type": "text", "content": "plain"}]}
    ]


def test_output_without_a_reply_object_still_has_its_finish_reason():
    call = CallInfo(model="m", node=None, output_text="done", finish_reasons=["length"])
    assert output_messages(call, None)[0]["finish_reason"] == "length"
    call.error = RuntimeError("boom")
    assert output_messages(call, None)[0]["finish_reason"] == "error"


def test_run_span_shows_input_and_output_only_with_content(tracer_provider, span_exporter):
    handle = instrument(
        tracer_provider=tracer_provider,
        config=TelemetryConfig(capture_content=True, metrics=False),
    )
    try:
        run_app().invoke({"outs": []})
    finally:
        handle.uninstrument()
    (run,) = spans_of_kind(span_exporter.get_finished_spans(), "run")
    assert json.loads(attr(run, A.INPUT_VALUE)) == {"outs": []}
    assert attr(run, A.OUTPUT_MIME_TYPE) == "application/json"
    assert "final" in json.loads(attr(run, A.OUTPUT_VALUE))["outs"]


def test_budget_attributes_are_read_at_one_moment(budget_tracer, span_exporter):
    app = run_app(limit=5_000)
    out = app.invoke({"outs": []})
    spans = span_exporter.get_finished_spans()
    for span in spans_of_kind(spans, "llm") + spans_of_kind(spans, "node"):
        # Both read when the span ended: together they never exceed the limit, and the
        # spend includes the span's own calls.
        assert attr(span, A.BUDGET_SPENT) + attr(span, A.BUDGET_REMAINING) <= 5_000
    for call in spans_of_kind(spans, "llm"):
        own = attr(call, A.GEN_AI_USAGE_INPUT_TOKENS) + attr(call, A.GEN_AI_USAGE_OUTPUT_TOKENS)
        assert attr(call, A.BUDGET_SPENT) >= own
    (run,) = spans_of_kind(spans, "run")
    assert attr(run, A.BUDGET_SPENT) + attr(run, A.BUDGET_REMAINING) == 5_000
    assert attr(run, A.BUDGET_SPENT) == out["spend"].units


def test_cost_budgets_record_dollars_not_tokens(budget_tracer, metric_reader):
    price = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
    budget = Budget(max_cost_usd=1.0, count="cost", prices={"fake-4": price})
    app = with_budget(fan_graph(budgeted(fake_model())), budget)
    spent = app.invoke({"outs": []})["spend"].units
    (cost,) = metric_points(metric_reader, "budget.run.cost")
    assert cost.sum == pytest.approx(spent / 1e6)
    assert metric_points(metric_reader, "budget.run.spend") == []


def test_duration_metric_per_call(budget_tracer, metric_reader):
    run_app().invoke({"outs": []})
    points = metric_points(metric_reader, "gen_ai.client.operation.duration")
    assert sum(p.count for p in points) == BRANCHES + 2
    assert {p.attributes[A.GEN_AI_REQUEST_MODEL] for p in points} == {"fake-4"}


def test_instrument_twice_does_not_duplicate_spans(tracer_provider, span_exporter):
    first = instrument(tracer_provider=tracer_provider, config=TelemetryConfig(metrics=False))
    second = instrument(tracer_provider=tracer_provider, config=TelemetryConfig(metrics=False))
    try:
        out = run_app().invoke({"outs": []})
    finally:
        first.uninstrument()
        second.uninstrument()
    spans = span_exporter.get_finished_spans()
    assert len(spans_of_kind(spans, "llm")) == out["spend"].calls
    assert len(spans_of_kind(spans, "run")) == 1


def test_streamed_runs_get_a_run_span(budget_tracer, span_exporter):
    llm = budgeted(fake_model(output_tokens=4), require_meter=False)  # the plain run has none
    app = with_budget(fan_graph(llm), Budget(max_tokens=5_000))
    chunks = list(app.stream({"outs": []}, stream_mode="values"))
    metered = budgeted(fake_model(output_tokens=4), meter=Meter(Budget(max_tokens=5_000)))
    assert list(traced(fan_graph(metered), "plain").stream({"outs": []}))
    spans = span_exporter.get_finished_spans()
    runs = spans_of_kind(spans, "run")
    assert len(runs) == 2
    assert len({s.context.trace_id for s in spans}) == 2  # one trace per run
    budgeted_run = next(r for r in runs if r.name != "plain")
    assert budgeted_run.attributes[A.USAGE_OUTPUT_TOKENS] == 4 * (BRANCHES + 2)
    assert budgeted_run.attributes[A.BUDGET_SPENT] == chunks[-1]["spend"].units


def test_setup_honours_the_otel_environment(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    telemetry = setup(metrics=False, set_global=False)
    try:
        resource = telemetry.tracer_provider.resource.attributes
        assert resource["service.name"] == "from-env"
        assert resource["deployment.environment"] == "test"
        assert telemetry.tracer.capture_content is True
        assert telemetry.meter_provider is None
    finally:
        telemetry.tracer.uninstrument()
        telemetry.tracer_provider.shutdown()
    explicit = setup("http://127.0.0.1:9", service_name="mine", metrics=False, set_global=False)
    try:
        assert explicit.tracer_provider.resource.attributes["service.name"] == "mine"
    finally:
        explicit.tracer.uninstrument()
        explicit.tracer_provider.shutdown()


async def test_async_streamed_runs_get_a_run_span(budget_tracer, span_exporter):
    llm = budgeted(fake_model(output_tokens=4))
    app = with_budget(fan_graph(llm), Budget(max_tokens=5_000))
    chunks = [c async for c in app.astream({"outs": []}, stream_mode="values")]
    spans = span_exporter.get_finished_spans()
    (run,) = spans_of_kind(spans, "run")
    assert len({s.context.trace_id for s in spans}) == 1
    assert run.attributes[A.BUDGET_SPENT] == chunks[-1]["spend"].units
    assert run.attributes[A.USAGE_CALLS] == BRANCHES + 2


def test_a_streamed_calls_response_model_is_read_off_its_last_chunk():
    from langchain_core.messages import AIMessageChunk
    from langchain_core.outputs import ChatGenerationChunk

    last = AIMessageChunk("", response_metadata={"model_name": "gpt-4-0613", "id": "c-9"})
    call = CallInfo(model="gpt-4", node=None, response=ChatGenerationChunk(message=last))
    assert response_attributes(call) == {
        A.GEN_AI_RESPONSE_MODEL: "gpt-4-0613",
        A.GEN_AI_RESPONSE_ID: "c-9",
    }
