"""Where a budgeted model finds the current run's meter, and where a node's spend is collected."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config

from budget_graph.budget import Spend
from budget_graph.meter import Meter

__all__ = [
    "METER_KEY",
    "Ledger",
    "budget_config",
    "current_ledger",
    "current_meter",
    "open_ledger",
    "use_meter",
]

METER_KEY = "budget_graph_meter"
"""``config["configurable"]`` key holding the run's meter."""

_meter_var: ContextVar[Meter | None] = ContextVar("budget_graph_meter", default=None)


def budget_config(meter: Any, config: RunnableConfig | None = None) -> RunnableConfig:
    """A run config (merged over ``config``) that hands ``meter`` to every budgeted model."""
    merged: dict[str, Any] = dict(config or {})
    configurable = dict(merged.get("configurable") or {})
    configurable[METER_KEY] = meter
    merged["configurable"] = configurable
    return merged  # type: ignore[return-value]


def current_meter(config: RunnableConfig | None = None) -> Any:
    """The meter of the current run: from ``config``, the active runnable config, or context."""
    # Read the active config without ensure_config(), which copies it (hot path: per call).
    cfg = config if config is not None else var_child_runnable_config.get()
    meter = ((cfg or {}).get("configurable") or {}).get(METER_KEY)
    return meter if meter is not None else _meter_var.get()


@contextmanager
def use_meter(meter: Any) -> Iterator[Any]:
    """Make ``meter`` the current meter for code (and graph runs) inside the block."""
    token = _meter_var.set(meter)
    try:
        yield meter
    finally:
        _meter_var.reset(token)


class Ledger:
    """Collects the spend of the budgeted calls made inside one node run."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        # Appends are atomic under the GIL (a node may fan calls out to threads); the sum
        # is taken once, when the node ends, instead of once per call.
        self._items: list[Spend] = []

    def add(self, spend: Spend) -> None:
        """Record a call's spend."""
        self._items.append(spend)

    @property
    def spend(self) -> Spend:
        """Everything recorded so far."""
        items = self._items
        if len(items) == 1:
            return items[0]
        return sum(items, Spend())


_ledger_var: ContextVar[Ledger | None] = ContextVar("budget_graph_ledger", default=None)


def current_ledger() -> Ledger | None:
    """The ledger of the guarded node running now, if any."""
    return _ledger_var.get()


@contextmanager
def open_ledger() -> Iterator[Ledger]:
    """Collect the spend of calls made inside the block."""
    ledger = Ledger()
    token = _ledger_var.set(ledger)
    try:
        yield ledger
    finally:
        _ledger_var.reset(token)
