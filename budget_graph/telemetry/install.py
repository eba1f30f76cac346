"""``instrument()``: register one budget tracer (idempotent), tokenizers loaded first."""

from __future__ import annotations

import threading
from dataclasses import replace

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from budget_graph.accounting import get_encoding
from budget_graph.telemetry.config import TelemetryConfig
from budget_graph.telemetry.tracer import BudgetTracer

__all__ = ["instrument"]

_TOKENIZERS = ("cl100k_base", "o200k_base")
"""The offline encodings prompts are counted with (GPT-4 and older; GPT-4o and newer)."""


def _load_tokenizers() -> None:
    """Load the prompt tokenizers now, before any run.

    A cold load takes seconds, which would otherwise sit unexplained in the first run's
    spans, before its first call span starts.
    """
    for name in _TOKENIZERS:
        get_encoding(name).encode("warm up", disallowed_special=())


_installed: list[BudgetTracer] = []
"""The tracer :func:`instrument` registered last (at most one)."""
_install_lock = threading.Lock()


def instrument(
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    capture_content: bool | None = None,
    *,
    config: TelemetryConfig | None = None,
) -> BudgetTracer:
    """Trace every budgeted call, guarded node and run from now on.

    Idempotent: a second call replaces the tracer the first one registered, so spans
    are never written twice (build :class:`BudgetTracer` objects yourself to export to
    two places at once). The prompt tokenizers are loaded here, before any run starts.

    Args:
        tracer_provider: Where spans go; the global provider by default.
        meter_provider: Where metrics go; the global provider by default.
        capture_content: Record prompt/completion text; ``None`` reads
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (off by default).
        config: Full configuration; the environment (see :mod:`.config`) by default.

    Returns:
        The registered tracer; call ``.uninstrument()`` to stop (or use it in ``with``).

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> handle = instrument(tracer_provider=TracerProvider())
        >>> instrument(tracer_provider=TracerProvider()) is not handle  # replaced, not added
        True
        >>> handle.uninstrument()

    """
    cfg = config if config is not None else TelemetryConfig.from_env()
    if capture_content is not None:
        cfg = replace(cfg, capture_content=capture_content)
    tracer = BudgetTracer(
        tracer_provider=tracer_provider, meter_provider=meter_provider, config=cfg
    )
    _load_tokenizers()
    with _install_lock:
        while _installed:
            _installed.pop().uninstrument()
        _installed.append(tracer)
        return tracer.instrument()
