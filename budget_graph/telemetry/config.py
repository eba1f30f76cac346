"""Telemetry configuration and every environment variable it reads, in one place.

Environment variables:

``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
    Shared with the official OTel GenAI instrumentations, so it takes their values too:
    ``SPAN_ONLY`` or ``SPAN_AND_EVENT`` (or ``true``) record prompt and completion text
    on LLM-call spans (``gen_ai.input.messages`` / ``gen_ai.output.messages``);
    ``NO_CONTENT``, ``EVENT_ONLY`` (we emit no log events) or ``false`` record none.
    Case-insensitive. Unset: none; content is never recorded unless the user opts in.
    An unknown value records none and logs a warning (as those instrumentations do),
    so it never stops the application.
``BUDGET_GRAPH_OTEL_CONTENT_MAX_CHARS``
    Truncate captured content to this many characters (default 4096; ``0`` = no limit).
``BUDGET_GRAPH_OTEL_GENAI_USAGE``
    ``false`` leaves ``gen_ai.usage.*`` off our LLM-call spans (our totals stay in
    ``budget.usage.*``). Use it when an OpenLLMetry/OpenInference instrumentor already
    reports usage on its own span around ours, so a backend summing ``gen_ai.usage.*``
    counts each call once. Default ``true``.
``BUDGET_GRAPH_OTEL_METRICS``
    ``false`` records spans only, no metrics. Default ``true``.
``BUDGET_GRAPH_OTEL_COEXIST``
    ``true`` (default): when another LangChain instrumentor (OpenInference, OpenLLMetry)
    traces the run, put the budget's attributes on its node and chat-model spans instead
    of making spans of our own (see ``docs/telemetry.md``). ``false``: always make ours.

``setup()`` (in :mod:`budget_graph.telemetry.export`) also reads the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``, ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (through the OTel SDK and exporter).

"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ENV_CAPTURE_CONTENT",
    "ENV_COEXIST",
    "ENV_CONTENT_MAX_CHARS",
    "ENV_GENAI_USAGE",
    "ENV_METRICS",
    "TelemetryConfig",
]

ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_CONTENT_MAX_CHARS = "BUDGET_GRAPH_OTEL_CONTENT_MAX_CHARS"
ENV_GENAI_USAGE = "BUDGET_GRAPH_OTEL_GENAI_USAGE"
ENV_METRICS = "BUDGET_GRAPH_OTEL_METRICS"
ENV_COEXIST = "BUDGET_GRAPH_OTEL_COEXIST"

_log = logging.getLogger(__name__)

# OpenTelemetry util-genai's ContentCapturingMode names, and the older true/false.
_CONTENT_ON = {"span_only", "span_and_event", "true", "1", "yes", "on"}
_CONTENT_OFF = {"no_content", "event_only", "false", "0", "no", "off", ""}


def _capture_content(env: Mapping[str, str]) -> bool:
    raw = env.get(ENV_CAPTURE_CONTENT)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _CONTENT_ON:
        return True
    if value not in _CONTENT_OFF:
        _log.warning(
            "Invalid %s: %r. Must be one of NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT,"
            " true, false; recording no content",
            ENV_CAPTURE_CONTENT,
            raw,
        )
    return False


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
        >>> env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"}
        >>> TelemetryConfig.from_env(env).capture_content
        True

    """

    capture_content: bool = False
    """Record prompt and completion text on LLM-call spans (privacy: off by default)."""
    content_max_chars: int | None = 4096
    """Truncate each captured text part to this many characters; ``None`` keeps it whole."""
    genai_usage: bool = True
    """Put ``gen_ai.usage.*`` on our LLM-call spans (``False``: ``budget.usage.*`` instead)."""
    metrics: bool = True
    """Record the token-usage, duration and budget metrics."""
    coexist: bool = True
    """Enrich another LangChain instrumentor's spans instead of duplicating them."""

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
            capture_content=_capture_content(env),
            content_max_chars=max_chars or None,
            genai_usage=_flag(env, ENV_GENAI_USAGE, True),
            metrics=_flag(env, ENV_METRICS, True),
            coexist=_flag(env, ENV_COEXIST, True),
        )
