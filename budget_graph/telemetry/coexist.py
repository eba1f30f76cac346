"""Coexistence: find the spans another LangChain instrumentor made for the running node or call.

OpenInference's and OpenLLMetry's LangChain instrumentors add a callback handler to
every LangChain run and keep one span per run id. When one is active, the budget's
node and call attributes go on *their* spans (the node's chain span, the call's
chat-model span) instead of on spans of ours: each call then has exactly one span with
token counts, and the trace is one tree, theirs, with our run span around it.

The adapters use each instrumentor's documented lookup where there is one
(``OpenInferenceTracer.get_span``; OpenLLMetry's ``TraceloopCallbackHandler.spans``,
also used by its own OpenAI wrapper) and know nothing else of their internals.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables.config import var_child_runnable_config
from opentelemetry.trace import Span

__all__ = ["Foreign", "foreign_tracer", "parent_run_id"]


class Foreign:
    """Another instrumentor's spans, by LangChain run id."""

    name = "unknown"
    records_genai_metrics = False
    """Whether it records the ``gen_ai.client.*`` metrics itself (ours would double them)."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def span(self, run_id: Any) -> Span | None:
        """Its span for the run ``run_id``, while that span is open."""
        raise NotImplementedError

    def llm_children(self, parent: Any) -> list[Any]:
        """Run ids of its open chat-model runs under the run ``parent``."""
        raise NotImplementedError


class _OpenInference(Foreign):
    name = "openinference"

    def span(self, run_id: Any) -> Span | None:
        span = self.handler.get_span(run_id)
        return span if span is not None and span.is_recording() else None

    def llm_children(self, parent: Any) -> list[Any]:
        runs = list(self.handler.run_map.values())
        return [r.id for r in runs if r.parent_run_id == parent and r.run_type == "llm"]


class _OpenLLMetry(Foreign):
    name = "openllmetry"
    records_genai_metrics = True

    def span(self, run_id: Any) -> Span | None:
        holder = self.handler.spans.get(run_id)
        span = getattr(holder, "span", None)
        return span if span is not None and span.is_recording() else None

    def llm_children(self, parent: Any) -> list[Any]:
        holder = self.handler.spans.get(parent)
        out = []
        for child in list(getattr(holder, "children", None) or ()):
            span = self.span(child)
            if span is not None and getattr(span, "name", "").endswith((".chat", ".completion")):
                out.append(child)
        return out


_ADAPTERS: dict[str, type[Foreign]] = {
    "OpenInferenceTracer": _OpenInference,
    "TraceloopCallbackHandler": _OpenLLMetry,
}
_by_type: dict[type, type[Foreign] | None] = {}
"""Handler class -> its adapter (``None``: not an instrumentor we know), filled on sight."""


def _callbacks(config: Any = None) -> Any:
    if config is None:
        config = var_child_runnable_config.get()
    return config.get("callbacks") if config else None


def parent_run_id(config: Any = None) -> Any:
    """The id of the LangChain run the code runs in (a node, a chain), if any.

    ``config`` is that run's child config; the one LangChain made current by default.
    """
    callbacks = _callbacks(config)
    return getattr(callbacks, "parent_run_id", None)


def foreign_tracer(config: Any = None) -> Foreign | None:
    """The first known instrumentor handler of a LangChain run (as for :func:`parent_run_id`)."""
    callbacks = _callbacks(config)
    handlers = getattr(callbacks, "handlers", None)
    if not handlers:
        return None
    for handler in handlers:
        cls = type(handler)
        if cls in _by_type:
            adapter = _by_type[cls]
        else:
            names = (k.__name__ for k in cls.__mro__)
            adapter = _by_type[cls] = next((_ADAPTERS[n] for n in names if n in _ADAPTERS), None)
        if adapter is not None:
            return adapter(handler)
    return None
