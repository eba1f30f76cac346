"""Telemetry configuration and every environment variable it reads, in one place.

Environment variables:

``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
    ``true`` records prompt and completion text on LLM-call spans
    (``gen_ai.input.messages`` / ``gen_ai.output.messages``). Default ``false``:
    content is never recorded unless the user opts in.
``BUDGET_GRAPH_OTEL_CONTENT_MAX_CHARS``
    Truncate captured content to this many characters (default 4096; ``0`` = no limit).
``BUDGET_GRAPH_OTEL_GENAI_USAGE``
    ``false`` leaves ``gen_ai.usage.*`` off our LLM-call spans (our totals stay in
    ``budget.usage.*``). Use it when an OpenLLMetry/OpenInference instrumentor already
    reports usage on its own span around ours, so a backend summing ``gen_ai.usage.*``
    counts each call once. Default ``true``.
``BUDGET_GRAPH_OTEL_METRICS``
    ``false`` records spans only, no metrics. Default ``true``.

The OTLP helpers in :mod:`budget_graph.telemetry.export` (the ``[otel]`` extra) also
honour the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``
and ``OTEL_SERVICE_NAME``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ENV_CAPTURE_CONTENT",
    "ENV_CONTENT_MAX_CHARS",
    "ENV_GENAI_USAGE",
    "ENV_METRICS",
    "TelemetryConfig",
]

ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_CONTENT_MAX_CHARS = "BUDGET_GRAPH_OTEL_CONTENT_MAX_CHARS"
ENV_GENAI_USAGE = "BUDGET_GRAPH_OTEL_GENAI_USAGE"
ENV_METRICS = "BUDGET_GRAPH_OTEL_METRICS"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"Invalid {name}: {raw!r}. Must be 'true' or 'false'")


@dataclass(frozen=True, kw_only=True, slots=True)
class TelemetryConfig:
    """What the budget tracer records.

    Example:
        >>> env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
        >>> TelemetryConfig.from_env(env).capture_content
        True

    """

    capture_content: bool = False
    """Record prompt and completion text on LLM-call spans (privacy: off by default)."""
    content_max_chars: int | None = 4096
    """Truncate captured content to this many characters; ``None`` keeps it whole."""
    genai_usage: bool = True
    """Put ``gen_ai.usage.*`` on our LLM-call spans (turn off under another instrumentor)."""
    metrics: bool = True
    """Record the token-usage and budget metrics."""

    def __post_init__(self) -> None:
        if self.content_max_chars is not None and self.content_max_chars < 1:
            raise ValueError(
                f"Invalid content_max_chars: {self.content_max_chars!r}. Must be >= 1 or None"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TelemetryConfig:
        """Read the documented environment variables (``os.environ`` by default)."""
        env = os.environ if env is None else env
        raw_max = env.get(ENV_CONTENT_MAX_CHARS, "4096").strip()
        try:
            max_chars = int(raw_max)
        except ValueError:
            raise ValueError(
                f"Invalid {ENV_CONTENT_MAX_CHARS}: {raw_max!r}. Must be an integer"
            ) from None
        if max_chars < 0:
            raise ValueError(f"Invalid {ENV_CONTENT_MAX_CHARS}: {raw_max!r}. Must be >= 0")
        return cls(
            capture_content=_flag(env, ENV_CAPTURE_CONTENT, False),
            content_max_chars=max_chars or None,
            genai_usage=_flag(env, ENV_GENAI_USAGE, True),
            metrics=_flag(env, ENV_METRICS, True),
        )
