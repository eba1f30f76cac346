"""Where a budgeted model finds the current run's meter, and where a node's spend is collected."""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from typing import Any, ParamSpec, TypeVar

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config

from budget_graph.budget import Budget, Spend, Usage
from budget_graph.errors import NoMeterError
from budget_graph.meter import BaseMeter, Meter

__all__ = [
    "as_meter",
    "BASE_UNITS_KEY",
    "METER_KEY",
    "Ledger",
    "budget_config",
    "carry_context",
    "current_ledger",
    "current_meter",
    "current_node",
    "no_meter_error",
    "open_ledger",
    "run_base_units",
    "use_meter",
]

METER_KEY = "budget_graph_meter"
"""``config["configurable"]`` key holding the run's meter."""

BASE_UNITS_KEY = "budget_base_units"
"""``config["metadata"]`` key holding the units a thread had spent when its run started.

LangGraph's checkpointers copy int metadata into each checkpoint's metadata, so a resumed
run finds it there (``with_budget`` does).
"""

_meter_var: ContextVar[BaseMeter | None] = ContextVar("budget_graph_meter", default=None)


def budget_config(meter: Any, config: RunnableConfig | None = None) -> RunnableConfig:
    """A run config (merged over ``config``) that hands ``meter`` to every budgeted model."""
    merged: dict[str, Any] = dict(config or {})
    configurable = dict(merged.get("configurable") or {})
    configurable[METER_KEY] = meter
    merged["configurable"] = configurable
    return merged  # type: ignore[return-value]


def run_base_units(config: RunnableConfig | None = None) -> int:
    """Units the thread had spent when the current run started (0 outside ``with_budget``)."""
    cfg = config if config is not None else var_child_runnable_config.get()
    return int(((cfg or {}).get("metadata") or {}).get(BASE_UNITS_KEY) or 0)


def current_node(config: RunnableConfig | None = None) -> str | None:
    """The LangGraph node running now (``metadata["langgraph_node"]``), or ``None``."""
    cfg = config if config is not None else var_child_runnable_config.get()
    node = ((cfg or {}).get("metadata") or {}).get("langgraph_node")
    return node if isinstance(node, str) else None


def current_meter(config: RunnableConfig | None = None) -> Any:
    """The meter of the current run: from ``config``, the active runnable config, or context.

    When both the config and :func:`use_meter` name a meter and the context's is nested
    in the config's (e.g. an agent's limit made current inside its tools, while the run
    config still carries the enclosing graph's meter), the innermost one is returned:
    reserving on it holds every level, so the tightest budget decides.
    """
    # Read the active config without ensure_config(), which copies it (hot path: per call).
    cfg = config if config is not None else var_child_runnable_config.get()
    meter = ((cfg or {}).get("configurable") or {}).get(METER_KEY)
    inner = _meter_var.get()
    if meter is None:
        return inner
    if inner is None or inner is meter:
        return meter
    return inner if _nested_in(inner, meter) else meter


def _nested_in(meter: Any, ancestor: Any) -> bool:
    """Whether ``ancestor`` encloses ``meter`` (is on its chain of parents)."""
    parent = getattr(meter, "parent", None)
    while parent is not None:
        if parent is ancestor:
            return True
        parent = getattr(parent, "parent", None)
    return False


def as_meter(meter: Any) -> BaseMeter | None:
    """A ``meter=`` argument as a meter: a meter, a :class:`Budget` (a new meter), or ``None``.

    Raises:
        TypeError: Anything else, naming what was given.

    """
    if meter is None or isinstance(meter, BaseMeter):
        return meter
    if isinstance(meter, Budget):
        return Meter(meter)
    raise TypeError(
        f"meter= takes a meter (e.g. budget_graph.Meter) or a Budget, got "
        f"{type(meter).__name__}: {meter!r}"
    )


def no_meter_error() -> NoMeterError:
    """The error for a budgeted call that found no meter, saying where it ran."""
    thread = threading.current_thread()
    if thread is threading.main_thread():
        where = "outside a budgeted run"
    else:
        where = (
            f"in thread {thread.name!r}, which has no run context: a thread or executor "
            "started inside a node does not inherit the run's meter; submit "
            "budget_graph.carry_context(fn) instead of fn (or use LangChain's "
            "ContextThreadPoolExecutor)"
        )
    return NoMeterError(
        f"A budgeted model was called {where}. Run it inside with_budget(...) or "
        "use_meter(...), pass meter=, or pass require_meter=False for an unbudgeted call."
    )


_P = ParamSpec("_P")
_R = TypeVar("_R")


def carry_context(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn`` bound to the caller's context: the run's config, meter and node ledger.

    A thread or executor started inside a node does not inherit the node's context,
    so a budgeted model called there finds no meter (and raises
    :class:`~budget_graph.errors.NoMeterError`). Submit ``carry_context(fn)`` instead
    of ``fn``; each call runs in its own copy of the context taken here, so its calls
    are capped by the run's meter and counted in the node's spend.

    Example:
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> with use_meter("the run's meter"), ThreadPoolExecutor() as pool:
        ...     pool.submit(carry_context(current_meter)).result()
        "the run's meter"

    """
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        # A context can be entered by one thread at a time: each call runs in a copy.
        return ctx.copy().run(fn, *args, **kwargs)

    return run


class _MeterScope:
    """The block :func:`use_meter` opens (a plain class: ``with_budget`` enters one per chunk)."""

    __slots__ = ("_meter", "_token")

    def __init__(self, meter: Any) -> None:
        self._meter = meter
        self._token: Token[BaseMeter | None] | None = None

    def __enter__(self) -> Any:
        if self._token is not None:
            raise RuntimeError(
                "this use_meter block is already open (enter it again after it exits)"
            )
        self._token = _meter_var.set(self._meter)
        return self._meter

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _meter_var.reset(self._token)
            self._token = None


def use_meter(meter: Any) -> AbstractContextManager[Any]:
    """Make ``meter`` the current meter for code (and graph runs) inside the block.

    The returned block may be entered again once it has exited (not while it is open).
    """
    return _MeterScope(meter)


class Ledger:
    """Collects the spend of the budgeted calls made inside one node run."""

    __slots__ = ("_items", "_token")

    def __init__(self) -> None:
        # Appends are atomic under the GIL (a node may fan calls out to threads); the sum
        # is taken once, when the node ends, instead of once per call.
        self._items: list[Spend | tuple[Usage, str | None]] = []
        self._token: Token[Ledger | None] | None = None

    def __enter__(self) -> Ledger:
        self._token = _ledger_var.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _ledger_var.reset(self._token)
            self._token = None

    def __bool__(self) -> bool:
        """Whether any spend was recorded."""
        return bool(self._items)

    def add(self, spend: Spend | Usage, node: str | None = None) -> None:
        """Record a spend, or one call's usage attributed to ``node``."""
        self._items.append(spend if isinstance(spend, Spend) else (spend, node))

    @property
    def spend(self) -> Spend:
        """Everything recorded so far."""
        items = self._items
        return Spend.fold(items) if items else Spend()


_ledger_var: ContextVar[Ledger | None] = ContextVar("budget_graph_ledger", default=None)


def current_ledger() -> Ledger | None:
    """The ledger of the guarded node running now, if any."""
    return _ledger_var.get()


def open_ledger() -> Ledger:
    """A ledger collecting the spend of calls made inside a ``with`` block."""
    return Ledger()
