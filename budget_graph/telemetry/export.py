"""SDK helpers behind the ``[otel]`` extra: an OTLP/HTTP tracer provider in one call.

Imports the OTel SDK and the OTLP exporter only when called, so ``budget_graph.telemetry``
itself needs the OTel API alone.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["PROJECT_ATTRIBUTE", "otlp_tracer_provider"]

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
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    attrs: dict[str, str] = {
        "service.name": service_name or os.environ.get("OTEL_SERVICE_NAME") or "budget_graph"
    }
    if project is not None:
        attrs[PROJECT_ATTRIBUTE] = project
    provider = TracerProvider(resource=Resource.create(attrs))
    exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    if set_global:
        trace.set_tracer_provider(provider)
    return provider
