"""``BudgetTracer``: the observer that turns budgeted calls, nodes and runs into OTel spans."""

from __future__ import annotations

import threading
import time
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from budget_graph._internal import observe
from budget_graph._internal.observe import CallInfo, NodeInfo, RunInfo
from budget_graph.context import current_meter
from budget_graph.telemetry import attributes as A
from budget_graph.telemetry.coexist import Foreign, foreign_tracer, parent_run_id
from budget_graph.telemetry.config import TelemetryConfig
from budget_graph.telemetry.content import content_attributes, run_io_attributes
from budget_graph.telemetry.genai import (
    ModelFacts,
    model_facts,
    request_attributes,
    response_attributes,
)
from budget_graph.telemetry.metrics import BudgetInstruments, create_budget_instruments
from budget_graph.telemetry.spans import (
    Rollup,
    add_budget_attributes,
    call_attributes,
    event_attributes,
)

__all__ = ["ABSORB_NESTED_RUN", "INSTRUMENTATION_NAME", "BudgetTracer"]

INSTRUMENTATION_NAME = "budget_graph"
ABSORB_NESTED_RUN = "budget_graph.telemetry.absorb_nested_run"
"""``RunInfo.slot`` flag: the first run reported inside this one is the same run."""
_ABSORBED = "absorbed"

_Labels = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
"""A call's metric labels: for its duration, then its input and output token records."""

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
    siblings) and LLM-call spans are children of the current span. When another
    LangChain instrumentor (OpenInference, OpenLLMetry) traces the run, node and call
    attributes go on its spans instead (see :mod:`.coexist`) and the run span nests
    under its span around the graph, if any. Use
    :func:`~budget_graph.telemetry.instrument` to build and register one.
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
        self._call_labels: dict[tuple[Any, ...], _Labels] = {}
        self._unit_labels: dict[str, dict[str, Any]] = {}
        self._claim_key = f"{self._key}.claimed"
        self._claimed: set[Any] = set()
        """Run ids of instrumentor spans a call of ours is enriching."""
        self._lock = threading.Lock()

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
        once, which halves the tracing cost per call. Under another LangChain
        instrumentor, its span of the same call is looked up now, while it is open.
        """
        foreign = foreign_tracer() if self.config.coexist else None
        span = self._claim(foreign, call) if foreign is not None else None
        call.slot[self._key] = (
            otel_context.get_current(),
            time.time_ns(),
            self._scope.get(),
            foreign,
            span,
        )

    def _claim(self, foreign: Foreign, call: CallInfo) -> Any:
        """The instrumentor's span of this call: by its run id, else its one open chat run."""
        with self._lock:
            run_id = call.run_id
            if run_id is None:
                runs = [r for r in foreign.llm_children(parent_run_id()) if r not in self._claimed]
                run_id = runs[0] if len(runs) == 1 else None
            if run_id is None or run_id in self._claimed:
                return None
            span = foreign.span(run_id)
            if span is not None:
                self._claimed.add(run_id)
                call.slot[self._claim_key] = run_id
            return span

    def call_finished(self, call: CallInfo) -> None:
        """Write the call's span (or enrich the instrumentor's); roll usage up; record metrics."""
        entry = call.slot.pop(self._key, None)
        if entry is None:
            return
        parent, started_ns, scope, foreign, foreign_span = entry
        claimed = call.slot.pop(self._claim_key, None)
        if claimed is not None:
            with self._lock:
                self._claimed.discard(claimed)
        ended_ns = time.time_ns()
        cfg = self.config
        facts = model_facts(call.chat_model)
        # The call's own level (e.g. an agent's limit), not just the run's current meter.
        meter = call.meter if call.meter is not None else current_meter()
        attrs = call_attributes(
            call,
            meter,
            genai_usage=cfg.genai_usage and foreign is None,
            foreign=foreign_span is not None,
        )
        if facts.attributes or call.request:
            attrs.update(request_attributes(call, facts))
        if call.response is not None:
            attrs.update(response_attributes(call))
        if foreign_span is not None:  # enrich theirs; content stays under their settings
            foreign_span.set_attributes(attrs)
            if call.error is not None:
                foreign_span.set_attribute(A.ERROR_TYPE, type(call.error).__qualname__)
        else:
            if cfg.capture_content:
                attrs.update(content_attributes(call, cfg.content_max_chars))
            model = call.model
            span = self._tracer.start_span(
                f"{call.operation} {model}" if model else call.operation,
                context=parent,
                kind=SpanKind.CLIENT,
                attributes=attrs,
                start_time=started_ns,
            )
            if call.error is not None:
                _error(span, call.error, record=False)
            span.end(end_time=ended_ns)
        usage = call.usage
        if usage is not None and scope is not None:
            scope.follow(meter)
            scope.add(
                usage.input_tokens,
                usage.output_tokens,
                usage.reasoning_tokens,
                usage.cached_tokens,
                usage.calls,
                usage.units,
            )
        inst = self._instruments
        if inst is None or (foreign is not None and foreign.records_genai_metrics):
            return  # that instrumentor records the gen_ai.client.* metrics of the call
        labels = self._labels(call.operation, call.model, facts)
        if usage is not None:
            inst.token_usage.record(usage.input_tokens, labels[1], parent)
            inst.token_usage.record(usage.output_tokens, labels[2], parent)
        duration_labels = labels[0]
        if call.error is not None:
            duration_labels = {**duration_labels, A.ERROR_TYPE: type(call.error).__qualname__}
        inst.duration.record((ended_ns - started_ns) / 1e9, duration_labels, parent)

    def _labels(self, operation: str, model: str | None, facts: ModelFacts) -> _Labels:
        """A call's metric labels (duration, input and output tokens), made once per kind."""
        key = (operation, model, facts.label_key)
        labels = self._call_labels.get(key)
        if labels is None:
            base: dict[str, Any] = {A.GEN_AI_OPERATION_NAME: operation, **facts.metric_labels}
            if model is not None:
                base[A.GEN_AI_REQUEST_MODEL] = model
            labels = self._call_labels[key] = (
                base,
                {**base, A.GEN_AI_TOKEN_TYPE: "input"},
                {**base, A.GEN_AI_TOKEN_TYPE: "output"},
            )
        return labels

    # -- nodes and runs -----------------------------------------------------------------

    def _open(
        self, name: str, slot: dict[str, Any], meter: Any = None, *, parent: Any = None
    ) -> Rollup:
        # Attributes (the span kind included) are set once, at the end: one SDK call.
        span = self._tracer.start_span(name, context=parent)
        rollup = Rollup(span, self._scope.get(), meter)
        otel_token = otel_context.attach(trace.set_span_in_context(span))
        slot[self._key] = (rollup, otel_token, self._scope.set(rollup))
        return rollup

    def _adopt(self, span: Any, slot: dict[str, Any]) -> Rollup:
        """Count into another instrumentor's open span, made current like one of ours.

        LangChain parents its runs by run id; made current, the span is also the parent
        of whatever starts from the OTel context inside it (a model called without the
        run's callbacks, an HTTP client's instrumentation), so the run stays one trace.
        """
        rollup = Rollup(span, self._scope.get(), owned=False)
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
        except ValueError:  # ended in another context than it started; the span still ends
            pass
        else:
            if otel_token is not None:
                otel_context.detach(otel_token)
        rollup.close()
        return rollup

    def _framework_span(self, config: Any = None) -> Any:
        """Another instrumentor's open span of the LangChain run the code runs in, if any."""
        if not self.config.coexist:
            return None
        foreign = foreign_tracer(config)
        return foreign.span(parent_run_id(config)) if foreign is not None else None

    def node_started(self, node: NodeInfo) -> None:
        """Open the node's span (or adopt the instrumentor's) and make it current."""
        span = self._framework_span()
        if span is not None:
            self._adopt(span, node.slot)
        else:
            self._open(node.name, node.slot)

    def node_finished(self, node: NodeInfo) -> None:
        """Set the node's rolled-up usage, budget and stop reason; end its span if ours."""
        rollup = self._close(node.slot)
        if rollup is None:
            return
        span = rollup.span
        attrs = rollup.attributes()
        attrs[A.SPAN_KIND] = A.SPAN_KIND_NODE
        attrs[A.OPENINFERENCE_SPAN_KIND] = A.OPENINFERENCE_CHAIN
        add_budget_attributes(attrs, rollup.find_meter() or current_meter())
        if node.stop_reason is not None:
            attrs[A.BUDGET_STOP_REASON] = node.stop_reason
        span.set_attributes(attrs)
        if rollup.owned:
            if node.error is not None:
                _error(span, node.error)
            span.end()

    def run_started(self, run: RunInfo) -> None:
        """Open the run's span (under an instrumentor's span around it) and make it current."""
        outer = self._scope.get()
        if outer is not None and outer.absorb:  # traced(with_budget(...)): one run, one span
            outer.absorb = False
            outer.meter = outer.meter or run.meter
            run.slot[self._key] = (_ABSORBED, outer)
            return
        own = self._framework_span(run.config) if run.config is not None else None
        if own is not None:  # the run is a LangChain run the instrumentor has a span for
            rollup = self._adopt(own, run.slot)
            rollup.meter = run.meter
        else:
            around = self._framework_span()
            parent = trace.set_span_in_context(around) if around is not None else None
            rollup = self._open(run.name, run.slot, run.meter, parent=parent)
        rollup.absorb = bool(run.slot.get(ABSORB_NESTED_RUN))

    def run_finished(self, run: RunInfo) -> None:
        """Set the run's rolled-up usage, final budget and stop reason; record run metrics."""
        entry = run.slot.get(self._key)
        if entry is not None and entry[0] == _ABSORBED:
            del run.slot[self._key]
            outer = entry[1]
            outer.meter = outer.meter or run.meter
            outer.state = run.state
            return
        rollup = self._close(run.slot)
        if rollup is None:
            return
        span, meter = rollup.span, rollup.meter or run.meter
        attrs = rollup.attributes()
        attrs[A.SPAN_KIND] = A.SPAN_KIND_RUN
        attrs[A.OPENINFERENCE_SPAN_KIND] = A.OPENINFERENCE_CHAIN
        add_budget_attributes(attrs, meter, run=True)
        state = run.state if run.state is not None else rollup.state
        stop_reason = state.get("stop_reason") if isinstance(state, dict) else None
        if stop_reason is None and isinstance(state, dict):
            # A nested run hands its own stop to its parent under its level's name.
            stop_reason = (state.get("stop_reasons") or {}).get(getattr(meter, "scope", None))
        if isinstance(stop_reason, str):
            attrs[A.BUDGET_STOP_REASON] = stop_reason
        limit, spent = attrs.get(A.BUDGET_LIMIT), attrs.get(A.BUDGET_SPENT)
        if isinstance(limit, int) and isinstance(spent, int) and limit > 0:
            attrs[A.BUDGET_UTILIZATION] = spent / limit
        if self.config.capture_content and rollup.owned:  # theirs shows its own
            attrs.update(run_io_attributes(run.input, state, self.config.content_max_chars))
        span.set_attributes(attrs)
        if rollup.owned:
            if run.error is not None:
                _error(span, run.error)
            span.end()
        inst = self._instruments
        if inst is not None and isinstance(limit, int) and isinstance(spent, int):
            unit = str(attrs.get(A.BUDGET_UNIT, "tokens"))
            labels = self._run_labels(unit)
            if unit == "micro-USD":
                inst.run_cost.record(spent / 1e6, labels)
            else:
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
