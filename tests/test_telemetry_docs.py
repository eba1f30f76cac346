"""docs/telemetry.md runs; every telemetry module's doctests pass and its exports import."""

import doctest
import importlib
import re
from pathlib import Path

import pytest

from budget_graph.telemetry import TelemetryConfig
from budget_graph.telemetry.spans import event_attributes

DOC = Path(__file__).resolve().parents[1] / "docs" / "telemetry.md"


def test_docs_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 3
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {"__name__": "docs_example"})
    assert "planner" in capsys.readouterr().out


@pytest.mark.parametrize(
    "module",
    [
        "",
        ".config",
        ".attributes",
        ".spans",
        ".metrics",
        ".tracer",
        ".runs",
        ".export",
        ".content",
        ".genai",
        ".coexist",
        ".install",
    ],
)
def test_module_doctests_and_exports(module):
    mod = importlib.import_module(f"budget_graph.telemetry{module}")
    assert hasattr(mod, "__all__") and all(hasattr(mod, name) for name in mod.__all__)
    failed, _ = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failed == 0


def test_config_from_env():
    assert TelemetryConfig.from_env({}) == TelemetryConfig()
    cfg = TelemetryConfig.from_env(
        {
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "True",
            "BUDGET_GRAPH_OTEL_CONTENT_MAX_CHARS": "0",
            "BUDGET_GRAPH_OTEL_GENAI_USAGE": "false",
            "BUDGET_GRAPH_OTEL_METRICS": "no",
            "BUDGET_GRAPH_OTEL_COEXIST": "false",
        }
    )
    assert cfg == TelemetryConfig(
        capture_content=True,
        content_max_chars=None,
        genai_usage=False,
        metrics=False,
        coexist=False,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"BUDGET_GRAPH_OTEL_COEXIST": "maybe"},
            "Invalid BUDGET_GRAPH_OTEL_COEXIST: 'maybe'. Must be 'true' or 'false'",
        ),
        (
            {"BUDGET_GRAPH_OTEL_CONTENT_MAX_CHARS": "lots"},
            "Invalid BUDGET_GRAPH_OTEL_CONTENT_MAX_CHARS: 'lots'. Must be an integer",
        ),
        (
            {"BUDGET_GRAPH_OTEL_CONTENT_MAX_CHARS": "-1"},
            "Invalid BUDGET_GRAPH_OTEL_CONTENT_MAX_CHARS: '-1'. Must be >= 0",
        ),
    ],
)
def test_config_rejects_bad_env(env, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TelemetryConfig.from_env(env)


@pytest.mark.parametrize(
    ("value", "captured"),
    [
        ("SPAN_ONLY", True),
        ("span_and_event", True),
        ("true", True),
        ("NO_CONTENT", False),
        ("EVENT_ONLY", False),  # we emit no log events: nothing to record
        ("false", False),
    ],
)
def test_capture_content_takes_the_official_genai_values(value, captured):
    env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": value}
    assert TelemetryConfig.from_env(env).capture_content is captured


def test_unknown_capture_value_warns_and_records_nothing(caplog):
    env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "maybe"}
    assert TelemetryConfig.from_env(env).capture_content is False
    assert "Invalid OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: 'maybe'" in caplog.text


def test_config_validates_eagerly():
    with pytest.raises(ValueError, match=re.escape("Invalid content_max_chars: 0")):
        TelemetryConfig(content_max_chars=0)


def test_event_attributes_are_prefixed_and_cleaned():
    assert event_attributes(
        {"limit": 5, "model": "m", "gen_ai.x": 1, "none": None, "obj": object, "seq": [1, 2]}
    ) == {
        "budget.limit": 5,
        "gen_ai.request.model": "m",
        "gen_ai.x": 1,
        "budget.obj": str(object),
        "budget.seq": [1, 2],
    }
