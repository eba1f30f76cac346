"""SDK helpers behind the ``[otel]`` extra: :func:`setup` in one call, or a tracer provider.

Imports the OTel SDK and the OTLP exporter only when called, so ``budget_graph.telemetry``
itself needs the OTel API alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from budget_graph.telemetry.config import TelemetryConfig
from budget_graph.telemetry.install import instrument
from budget_graph.telemetry.tracer import BudgetTracer

__all__ = ["PROJECT_ATTRIBUTE", "Telemetry", "otlp_tracer_provider", "setup"]

PROJECT_ATTRIBUTE = "openinference.project.name"
"""Resource attribute Arize Phoenix files spans under (its "project")."""


def otlp_tracer_provider(
    endpoint: str | None = None,
    *,
    service_name: str | None = None,
    project: str | None = None,
    batch: bool = True,
    set_global: bool = False,
) -> Any:
    """An SDK ``TracerProvider`` exporting spans over OTLP/HTTP (protobuf).

    Args:
        endpoint: The traces URL, e.g. ``http://127.0.0.1:6006/v1/traces``; ``None`` lets the
            exporter read ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``.
        service_name: ``service.name``; ``OTEL_SERVICE_NAME`` or ``"budget_graph"`` by default.
        project: Phoenix project name (``openinference.project.name``), if any.
        batch: Batch spans in the background (production); ``False`` exports each span as it
            ends (scripts and tests).
        set_global: Also make it the global tracer provider.

    Returns:
        The provider; call ``.shutdown()`` (or ``.force_flush()``) before exiting.

    Raises:
        ImportError: The ``[otel]`` extra (``opentelemetry-exporter-otlp-proto-http``) is missing.

    Example:
        >>> # provider = otlp_tracer_provider("http://127.0.0.1:6006/v1/traces", project="demo")
        >>> # instrument(tracer_provider=provider)

    """
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "otlp_tracer_provider needs the OTLP exporter: pip install 'budget_graph[otel]'"
        ) from exc
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=_resource(service_name, project))
    exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def _resource(service_name: str | None, project: str | None) -> Any:
    """The resource: ``service.name``, the project, ``OTEL_RESOURCE_ATTRIBUTES``.

    ``service.name`` is the argument, else ``OTEL_SERVICE_NAME``, else ``budget_graph``.
    """
    from opentelemetry.sdk.resources import Resource

    attrs: dict[str, str] = {
        "service.name": service_name or os.environ.get("OTEL_SERVICE_NAME") or "budget_graph"
    }
    if project is not None:
        attrs[PROJECT_ATTRIBUTE] = project
    return Resource.create(attrs)


def _signal_url(endpoint: str | None, signal: str) -> str | None:
    """``<endpoint>/v1/<signal>`` (as from ``OTEL_EXPORTER_OTLP_ENDPOINT``), else ``None``.

    ``None`` leaves the exporter to read the environment.
    """
    if endpoint is None:
        return None
    return f"{endpoint.rstrip('/')}/v1/{signal}"


@dataclass(frozen=True, slots=True)
class Telemetry:
    """What :func:`setup` built: the registered tracer and the SDK providers behind it."""

    tracer: BudgetTracer
    tracer_provider: Any
    meter_provider: Any
    """``None`` when metrics are off."""

    def shutdown(self) -> None:
        """Stop tracing, send what is buffered and close the exporters."""
        self.tracer.uninstrument()
        self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def setup(
    endpoint: str | None = None,
    service_name: str | None = None,
    capture_content: bool | None = None,
    *,
    project: str | None = None,
    metrics: bool | None = None,
    set_global: bool = True,
) -> Telemetry:
    """Export every budgeted run's spans (and metrics) over OTLP/HTTP: one call does it all.

    Builds SDK providers with batching OTLP/HTTP exporters, makes them the global ones,
    and registers the budget tracer (:func:`~budget_graph.telemetry.instrument`).
    Everything left ``None`` follows the standard environment: the endpoint
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the per-signal ``..._TRACES_ENDPOINT`` /
    ``..._METRICS_ENDPOINT``; the exporters' default is ``http://localhost:4318``),
    ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, and the variables of
    :mod:`budget_graph.telemetry.config` (content capture, metrics).

    Args:
        endpoint: The collector's base URL, e.g. ``http://127.0.0.1:6006`` for Phoenix;
            spans go to ``<endpoint>/v1/traces``, metrics to ``<endpoint>/v1/metrics``.
        service_name: ``service.name`` of the resource.
        capture_content: Record prompt and completion text (privacy: off unless asked).
        project: Phoenix project (``openinference.project.name``), if any.
        metrics: Export metrics too; ``None`` reads ``BUDGET_GRAPH_OTEL_METRICS``.
        set_global: Make the providers OTel's global ones (so other instrumentors,
            e.g. a LangChain instrumentor, export to the same place).

    Returns:
        A :class:`Telemetry`; call ``.shutdown()`` before exiting.

    Raises:
        ImportError: The ``[otel]`` extra (``opentelemetry-exporter-otlp-proto-http``) is missing.

    Example:
        >>> # telemetry = setup("http://127.0.0.1:6006", project="demo")
        >>> # ... app.invoke(...) ...
        >>> # telemetry.shutdown()

    """
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace

    config = TelemetryConfig.from_env()
    metrics_on = config.metrics if metrics is None else metrics
    tracer_provider = otlp_tracer_provider(
        _signal_url(endpoint, "traces"), service_name=service_name, project=project
    )
    meter_provider = None
    if metrics_on:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        url = _signal_url(endpoint, "metrics")
        exporter = OTLPMetricExporter(endpoint=url) if url else OTLPMetricExporter()
        meter_provider = MeterProvider(
            metric_readers=[PeriodicExportingMetricReader(exporter)],
            resource=_resource(service_name, project),
        )
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        if meter_provider is not None:
            otel_metrics.set_meter_provider(meter_provider)
    tracer = instrument(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        capture_content=capture_content,
        config=replace(config, metrics=metrics_on),
    )
    return Telemetry(tracer, tracer_provider, meter_provider)
