"""Observer hooks: how telemetry (or a user) sees budgeted calls, nodes and budget events.

Core modules call ``notify_*``; observers registered with ``add_observer`` receive
them. With no observer registered the cost is one empty-tuple check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from budget_graph.budget import Usage
from budget_graph.protocol import BaseMeter

__all__ = [
    "CallInfo",
    "NodeInfo",
    "Observer",
    "RunInfo",
    "add_observer",
    "content_wanted",
    "observers",
    "remove_observer",
]


@dataclass(slots=True)
class CallInfo:
    """One budgeted LLM call, filled in as it proceeds."""

    model: str | None
    node: str | None
    operation: str = "chat"
    n: int = 1
    requested_max_tokens: int | None = None
    max_tokens: int | None = None
    """``max_tokens`` as clamped and sent."""
    prompt_tokens_estimate: int = 0
    reserved_units: int = 0
    limit: int | None = None
    spent_before: int | None = None
    remaining_before: int | None = None
    allocated: int | None = None
    """The node's allocated share of the budget, when a policy set one."""
    usage: Usage | None = None
    units: int | None = None
    estimated: bool = False
    finish_reasons: list[str] = field(default_factory=list)
    streamed: bool = False
    input_messages: Any = None
    output_text: str | None = None
    error: BaseException | None = None
    slot: dict[str, Any] = field(default_factory=dict)
    """Per-observer scratch space (e.g. the open span)."""
    run_id: Any = None
    """The LangChain run id of the chat-model run making the call (another LangChain
    tracer's span for the same call is found by it), when known."""
    chat_model: Any = None
    """The wrapped chat model (its provider, server and default sampling parameters)."""
    request: dict[str, Any] | None = None
    """The call's keyword arguments as sent (``max_tokens`` clamped)."""
    response: Any = None
    """The model's reply: the ``ChatResult``, or the last streamed chunk."""
    meter: BaseMeter | None = None
    """The meter the call reserved on (the innermost level of nested budgets), if any."""


@dataclass(slots=True)
class NodeInfo:
    """One guarded graph-node run."""

    name: str
    usage: Usage | None = None
    stop_reason: str | None = None
    error: BaseException | None = None
    slot: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RunInfo:
    """One graph run (``with_budget`` graphs, or ``budget_graph.telemetry.trace_run``)."""

    name: str
    meter: Any = None
    """The run's meter, when known (set at start or before ``run_finished``)."""
    state: Any = None
    """The run's final state (a dict with ``spend``/``stop_reason``), when known."""
    error: BaseException | None = None
    slot: dict[str, Any] = field(default_factory=dict)
    input: Any = None
    """The run's input, when known (shown only when content capture is on)."""
    config: Any = None
    """The run's ``RunnableConfig``, when it is a LangChain callback run of its own: its
    callbacks are that run's children (another tracer's span of the run is found by it)."""


class Observer(Protocol):
    """Receives budget events. Every method is optional in practice (no-op defaults)."""

    def call_started(self, call: CallInfo) -> None:
        """A call's reservation was granted; the request is about to be sent."""

    def call_finished(self, call: CallInfo) -> None:
        """A call ended: ``usage`` set when billed, ``error`` set on failure."""

    def node_started(self, node: NodeInfo) -> None:
        """A guarded node started."""

    def node_finished(self, node: NodeInfo) -> None:
        """A guarded node ended."""

    def run_started(self, run: RunInfo) -> None:
        """A graph run started (in the caller's context, before any node)."""

    def run_finished(self, run: RunInfo) -> None:
        """A graph run ended: ``state`` set on success, ``error`` on failure."""

    def event(self, name: str, attributes: dict[str, Any]) -> None:
        """A budget event: reservation refused, budget exhausted, early stop, retry..."""


_observers: tuple[Observer, ...] = ()


class _State:
    """Flags the hot path reads instead of scanning observers on every call."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = False
        """Whether any observer is registered."""


state = _State()


def observers() -> tuple[Observer, ...]:
    """The registered observers."""
    return _observers


def add_observer(observer: Observer) -> None:
    """Register an observer (idempotent)."""
    global _observers
    if observer not in _observers:
        _observers = (*_observers, observer)
    state.active = True


def remove_observer(observer: Observer) -> None:
    """Unregister an observer."""
    global _observers
    _observers = tuple(o for o in _observers if o is not observer)
    state.active = bool(_observers)


def content_wanted() -> bool:
    """Whether any observer asked for prompt/completion text (``capture_content``)."""
    return bool(_observers) and any(getattr(o, "capture_content", False) for o in _observers)


def notify(method: str, arg: Any) -> None:
    """Call ``method`` on every observer that has it; observer errors never break a run."""
    for obs in _observers:
        fn = getattr(obs, method, None)
        if fn is not None:
            try:
                fn(arg)
            except Exception:  # noqa: BLE001 - telemetry must not break the graph
                pass


def emit(name: str, **attributes: Any) -> None:
    """Send a named budget event to every observer."""
    for obs in _observers:
        fn = getattr(obs, "event", None)
        if fn is not None:
            try:
                fn(name, attributes)
            except Exception:  # noqa: BLE001
                pass
