"""``BudgetTracer``: the observer that turns budgeted calls, nodes and runs into OTel spans."""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from budget_graph._internal import observe
from budget_graph._internal.observe import CallInfo, NodeInfo, RunInfo
from budget_graph.context import current_meter
from budget_graph.telemetry import attributes as A
from budget_graph.telemetry.config import TelemetryConfig
from budget_graph.telemetry.metrics import BudgetInstruments, create_budget_instruments
from budget_graph.telemetry.spans import (
    Rollup,
    add_budget_attributes,
    call_attributes,
    content_attributes,
    event_attributes,
)

__all__ = ["ABSORB_NESTED_RUN", "INSTRUMENTATION_NAME", "BudgetTracer", "instrument"]

INSTRUMENTATION_NAME = "budget_graph"
ABSORB_NESTED_RUN = "budget_graph.telemetry.absorb_nested_run"
"""``RunInfo.slot`` flag: the first run reported inside this one is the same run."""
_ABSORBED = "absorbed"

_CallNames = tuple[str, dict[str, Any], dict[str, Any]]
"""A call's span name, then its input and output token-record labels."""

# Events whose value also becomes an attribute of the span they land on.
_ATTRIBUTE_EVENTS = {
    "budget.estimate": ("estimate", A.BUDGET_ESTIMATE),
    "budget.allocation": ("allocated", A.BUDGET_ALLOCATED),
}


def _error(span: Any, error: BaseException, *, record: bool = True) -> None:
    span.set_attribute(A.ERROR_TYPE, type(error).__qualname__)
    span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
    if record:  # the traceback event is costly; calls fail often (replays, retries)
        span.record_exception(error)


class BudgetTracer:
    """Records every budgeted LLM call, guarded node and run as an OTel span, plus metrics.

    Spans nest by OTel context: a node span is made current while its node runs
    (LangGraph runs each task in a copied context, so parallel ``Send`` branches become
    siblings), LLM-call spans are children of the current span, and a span opened by
    another instrumentor (OpenInference, OpenLLMetry) is the parent of ours. Use
    :func:`instrument` to build and register one.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        config: TelemetryConfig | None = None,
    ) -> None:
        """Get a tracer (and meter) from the given providers, or the global ones."""
        from budget_graph import __version__

        self.config = config if config is not None else TelemetryConfig.from_env()
        self._tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider
        )
        self._instruments: BudgetInstruments | None = None
        if self.config.metrics:
            meter = metrics.get_meter(
                INSTRUMENTATION_NAME, __version__, meter_provider=meter_provider
            )
            self._instruments = create_budget_instruments(meter)
        self._key = f"budget_graph.telemetry.{id(self)}"
        self._scope: ContextVar[Rollup | None] = ContextVar(self._key, default=None)
        self._call_names: dict[tuple[str, str | None], _CallNames] = {}
        self._unit_labels: dict[str, dict[str, Any]] = {}

    @property
    def capture_content(self) -> bool:
        """Whether prompt/completion text is recorded (read by the budgeted models)."""
        return self.config.capture_content

    # -- registration -------------------------------------------------------------------

    def instrument(self) -> BudgetTracer:
        """Start receiving budget events (idempotent)."""
        observe.add_observer(self)
        return self

    def uninstrument(self) -> None:
        """Stop receiving budget events; spans already open still end normally."""
        observe.remove_observer(self)

    def __enter__(self) -> BudgetTracer:
        return self.instrument()

    def __exit__(self, *exc: object) -> None:
        self.uninstrument()

    # -- LLM calls ----------------------------------------------------------------------

    def call_started(self, call: CallInfo) -> None:
        """Remember the parent context and start time; the span is written when the call ends.

        Writing the whole span at the end (with its real start time) sets every attribute
        once, which halves the tracing cost per call.
        """
        call.slot[self._key] = (otel_context.get_current(), time.time_ns(), self._scope.get())

    def call_finished(self, call: CallInfo) -> None:
        """Write the call's span (child of the span current at its start), roll usage up."""
        entry = call.slot.pop(self._key, None)
        if entry is None:
            return
        parent, started_ns, scope = entry
        cfg = self.config
        attrs = call_attributes(call, genai_usage=cfg.genai_usage)
        if cfg.capture_content:
            attrs.update(content_attributes(call, cfg.content_max_chars))
        names = self._call_names.get((call.operation, call.model))
        if names is None:
            names = self._names_for(call.operation, call.model)
        span = self._tracer.start_span(
            names[0],
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=started_ns,
        )
        if call.error is not None:
            _error(span, call.error, record=False)
        span.end()
        usage = call.usage
        if usage is None:
            return
        if scope is not None:
            if scope.meter is None:
                scope.meter = scope.find_meter() or current_meter()
            scope.add(
                usage.input_tokens,
                usage.output_tokens,
                usage.reasoning_tokens,
                usage.cached_tokens,
                usage.calls,
                usage.units,
            )
        if self._instruments is not None:
            record = self._instruments.token_usage.record
            record(usage.input_tokens, names[1], parent)
            record(usage.output_tokens, names[2], parent)

    def _names_for(self, operation: str, model: str | None) -> _CallNames:
        """A call's span name and token-record labels, made once per operation and model."""
        base: dict[str, Any] = {A.GEN_AI_OPERATION_NAME: operation}
        if model is not None:
            base[A.GEN_AI_REQUEST_MODEL] = model
        names = self._call_names[(operation, model)] = (
            f"{operation} {model}" if model else operation,
            {**base, A.GEN_AI_TOKEN_TYPE: "input"},
            {**base, A.GEN_AI_TOKEN_TYPE: "output"},
        )
        return names

    # -- nodes and runs -----------------------------------------------------------------

    def _open(self, name: str, slot: dict[str, Any], meter: Any = None) -> Rollup:
        # Attributes (the span kind included) are set once, at the end: one SDK call.
        span = self._tracer.start_span(name)
        rollup = Rollup(span, self._scope.get(), meter)
        otel_token = otel_context.attach(trace.set_span_in_context(span))
        slot[self._key] = (rollup, otel_token, self._scope.set(rollup))
        return rollup

    def _close(self, slot: dict[str, Any]) -> Rollup | None:
        entry = slot.pop(self._key, None)
        if entry is None:
            return None
        rollup, otel_token, scope_token = entry
        try:
            self._scope.reset(scope_token)
            otel_context.detach(otel_token)
        except ValueError:  # ended in another context than it started; the span still ends
            pass
        rollup.close()
        return rollup

    def node_started(self, node: NodeInfo) -> None:
        """Open the node's span and make it current for the node's calls."""
        self._open(node.name, node.slot)

    def node_finished(self, node: NodeInfo) -> None:
        """Set the node's rolled-up usage, budget and stop reason; end its span."""
        rollup = self._close(node.slot)
        if rollup is None:
            return
        span = rollup.span
        attrs = rollup.attributes()
        attrs[A.SPAN_KIND] = A.SPAN_KIND_NODE
        add_budget_attributes(attrs, rollup.find_meter() or current_meter())
        if node.stop_reason is not None:
            attrs[A.BUDGET_STOP_REASON] = node.stop_reason
        span.set_attributes(attrs)
        if node.error is not None:
            _error(span, node.error)
        span.end()

    def run_started(self, run: RunInfo) -> None:
        """Open the run's span and make it current for the graph run."""
        outer = self._scope.get()
        if outer is not None and outer.absorb:  # traced(with_budget(...)): one run, one span
            outer.absorb = False
            outer.meter = outer.meter or run.meter
            run.slot[self._key] = (_ABSORBED, outer)
            return
        rollup = self._open(run.name, run.slot, run.meter)
        rollup.absorb = bool(run.slot.get(ABSORB_NESTED_RUN))

    def run_finished(self, run: RunInfo) -> None:
        """Set the run's rolled-up usage, final budget and stop reason; record run metrics."""
        entry = run.slot.get(self._key)
        if entry is not None and entry[0] == _ABSORBED:
            del run.slot[self._key]
            entry[1].meter = entry[1].meter or run.meter
            return
        rollup = self._close(run.slot)
        if rollup is None:
            return
        span, meter = rollup.span, rollup.meter or run.meter
        attrs = rollup.attributes()
        attrs[A.SPAN_KIND] = A.SPAN_KIND_RUN
        add_budget_attributes(attrs, meter, run=True)
        state = run.state if isinstance(run.state, dict) else {}
        stop_reason = state.get("stop_reason")
        if isinstance(stop_reason, str):
            attrs[A.BUDGET_STOP_REASON] = stop_reason
        limit, spent = attrs.get(A.BUDGET_LIMIT), attrs.get(A.BUDGET_SPENT)
        if isinstance(limit, int) and isinstance(spent, int) and limit > 0:
            attrs[A.BUDGET_UTILIZATION] = spent / limit
        span.set_attributes(attrs)
        if run.error is not None:
            _error(span, run.error)
        span.end()
        inst = self._instruments
        if inst is not None and isinstance(limit, int) and isinstance(spent, int):
            labels = self._run_labels(str(attrs.get(A.BUDGET_UNIT, "tokens")))
            inst.run_spend.record(spent, labels)
            if limit > 0:
                inst.utilization.record(spent / limit, labels)
            inst.overshoot.add(1 if spent > limit else 0, labels)

    def _run_labels(self, unit: str) -> dict[str, Any]:
        labels = self._unit_labels.get(unit)
        if labels is None:
            labels = self._unit_labels[unit] = {A.BUDGET_UNIT: unit}
        return labels

    # -- events -------------------------------------------------------------------------

    def event(self, name: str, attributes: dict[str, Any]) -> None:
        """Add a budget event to the innermost node/run span (else the current span)."""
        attrs = event_attributes(attributes)
        scope = self._scope.get()
        span = scope.span if scope is not None else trace.get_current_span()
        if span.is_recording():
            span.add_event(name, attrs)
            special = _ATTRIBUTE_EVENTS.get(name)
            if special is not None and attributes.get(special[0]) is not None:
                span.set_attribute(special[1], attrs[A.BUDGET_PREFIX + special[0]])
            if isinstance(attributes.get("stop_reason"), str):  # e.g. the terminator's event
                span.set_attribute(A.BUDGET_STOP_REASON, attributes["stop_reason"])
        if self._instruments is not None:
            self._instruments.events.add(1, {"budget.event": name})


def instrument(
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    capture_content: bool | None = None,
    *,
    config: TelemetryConfig | None = None,
) -> BudgetTracer:
    """Trace every budgeted call, guarded node and run from now on.

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
        >>> handle.uninstrument()

    """
    cfg = config if config is not None else TelemetryConfig.from_env()
    if capture_content is not None:
        cfg = replace(cfg, capture_content=capture_content)
    tracer = BudgetTracer(
        tracer_provider=tracer_provider, meter_provider=meter_provider, config=cfg
    )
    return tracer.instrument()
