"""Run and thread meters as one, and the meter shared by the parallel tool calls of one step."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from budget_graph.budget import Budget, Spend, Usage
from budget_graph.errors import BudgetExceededError
from budget_graph.meter import Meter, Reservation

__all__ = ["AgentMeter", "StepMeters"]

_ids = itertools.count(1)


class AgentMeter:
    """Several scoped meters (``"run"``, ``"thread"``) acting as one hard cap.

    A reservation must fit every meter; it is taken on all of them or on none.
    ``limit``/``spent``/``scope`` report the binding meter (the one with the least
    room), so a refusal names the limit that stopped the call. Implements the
    :class:`~budget_graph.meter.BaseMeter` protocol plus ``budget`` and
    ``available``, so :func:`~budget_graph.budgeted` can reserve on it.
    """

    def __init__(self, meters: Iterable[Meter]) -> None:
        """Combine ``meters`` (at least one; all must count in the same unit)."""
        self.meters = list(meters)
        if not self.meters:
            raise ValueError("AgentMeter needs at least one meter (got none)")
        self._lock = threading.Lock()
        self._open: dict[int, list[Reservation]] = {}
        self.committed = 0
        """Units committed through this meter (the delta a step adds to state)."""
        self.usage = Usage()
        """Token usage committed through this meter."""

    @property
    def budget(self) -> Budget:
        """The budget used for unit arithmetic (count mode, prices, reserve)."""
        return self.binding.budget

    @property
    def binding(self) -> Meter:
        """The meter with the least room for an ordinary call."""
        return min(self.meters, key=lambda m: m.available())

    @property
    def scope(self) -> str:
        """Scope of the binding meter."""
        return self.binding.scope

    @property
    def limit(self) -> int:
        """Limit of the binding meter."""
        return self.binding.limit

    @property
    def spent(self) -> int:
        """Units the binding meter has committed."""
        return self.binding.spent

    @property
    def reserved(self) -> int:
        """Units the binding meter holds for in-flight calls."""
        return self.binding.reserved

    @property
    def remaining(self) -> int:
        """Units no meter has spent or reserved."""
        return min(m.remaining for m in self.meters)

    def available(self, *, final: bool = False) -> int:
        """Units a new reservation could take on every meter."""
        return min(m.available(final=final) for m in self.meters)

    def reserve(self, units: int, *, final: bool = False, node: str | None = None) -> Reservation:
        """Hold ``units`` on every meter or raise :class:`BudgetExceededError` holding none."""
        with self._lock:
            held: list[Reservation] = []
            try:
                for meter in self.meters:
                    held.append(meter.reserve(units, final=final, node=node))
            except BudgetExceededError:
                for meter, res in zip(self.meters, held, strict=False):
                    meter.release(res)
                raise
            res = Reservation(next(_ids), units, final, node)
            self._open[res.id] = held
            return res

    def commit(
        self, reservation: Reservation, units: int, *, usage: Usage | Spend | None = None
    ) -> None:
        """Charge ``units`` on every meter."""
        with self._lock:
            held = self._open.pop(reservation.id, None)
            if held is None:
                return
            self.committed += units
            if usage is not None:
                self.usage = self.usage + (usage.usage if isinstance(usage, Spend) else usage)
        for meter, res in zip(self.meters, held, strict=True):
            meter.commit(res, units, usage=usage)

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation on every meter (idempotent)."""
        with self._lock:
            held = self._open.pop(reservation.id, None)
        for meter, res in zip(self.meters, held or (), strict=False):
            meter.release(res)

    def __repr__(self) -> str:
        inner = ", ".join(f"{m.scope}={m.spent}/{m.limit}" for m in self.meters)
        return f"AgentMeter({inner}, reserved={self.reserved})"


class _Step:
    __slots__ = ("meter", "pending")

    def __init__(self, meter: AgentMeter, pending: set[str]) -> None:
        self.meter = meter
        self.pending = pending


class StepMeters:
    """One :class:`AgentMeter` per tool step, shared by that step's parallel tool calls.

    LangGraph runs each tool call of an ``AIMessage`` as its own task; the tasks see
    the same state but not each other's spend. Keyed by the message's id, they share
    one meter so together they cannot overshoot. An entry is dropped when its last
    tool call finishes; at most ``max_steps`` entries are kept (interrupted steps).
    """

    def __init__(self, max_steps: int = 1024) -> None:
        """Keep at most ``max_steps`` open steps."""
        self._lock = threading.Lock()
        self._steps: OrderedDict[Any, _Step] = OrderedDict()
        self.max_steps = max_steps

    def acquire(self, key: Any, call_ids: set[str], build: Any) -> AgentMeter:
        """The step's meter, built with ``build()`` by the first tool call to arrive."""
        with self._lock:
            step = self._steps.get(key)
            if step is None:
                step = _Step(build(), set(call_ids))
                self._steps[key] = step
                while len(self._steps) > self.max_steps:
                    self._steps.popitem(last=False)
            return step.meter

    def done(self, key: Any, call_id: str) -> None:
        """Mark one tool call of the step finished; forget the step after its last one."""
        with self._lock:
            step = self._steps.get(key)
            if step is None:
                return
            step.pending.discard(call_id)
            if not step.pending:
                del self._steps[key]

    def __len__(self) -> int:
        return len(self._steps)
