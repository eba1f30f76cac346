"""OpenTelemetry spans, events and metrics for budgets (OTel API only; SDK helpers in ``export``).

``setup(endpoint, service_name, capture_content)`` does it all over OTLP/HTTP (the
``[otel]`` extra); ``instrument(...)`` registers the tracer on providers you built.

Example:
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from budget_graph.telemetry import instrument
    >>> handle = instrument(tracer_provider=TracerProvider())
    >>> handle.uninstrument()

"""

from budget_graph.telemetry.config import TelemetryConfig
from budget_graph.telemetry.export import Telemetry, setup
from budget_graph.telemetry.install import instrument
from budget_graph.telemetry.metrics import (
    BudgetInstruments,
    create_budget_events_counter,
    create_budget_instruments,
    create_overshoot_counter,
    create_run_spend_histogram,
    create_token_usage_histogram,
    create_utilization_histogram,
)
from budget_graph.telemetry.runs import TracedGraph, trace_run, traced
from budget_graph.telemetry.tracer import BudgetTracer

__all__ = [
    "BudgetInstruments",
    "BudgetTracer",
    "Telemetry",
    "TelemetryConfig",
    "TracedGraph",
    "create_budget_events_counter",
    "create_budget_instruments",
    "create_overshoot_counter",
    "create_run_spend_histogram",
    "create_token_usage_histogram",
    "create_utilization_histogram",
    "instrument",
    "setup",
    "trace_run",
    "traced",
]
