"""An agent's run and thread limits as nested meters, and the meter shared by one tool step."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from budget_graph.budget import Budget, Usage
from budget_graph.meter import BaseMeter, Meter

__all__ = ["AgentMeter", "StepMeters"]


class AgentMeter(Meter):
    """The innermost of an agent's limits (``"run"`` inside ``"thread"``), as nested meters.

    Built by :meth:`chain`: each limit is a :class:`~budget_graph.meter.Meter` level
    whose parent is the next one out, so a reservation must fit every level and is
    held on all of them or on none (the :class:`~budget_graph.meter.Meter` nesting).
    Adds what the middleware reads: ``committed`` (the delta a step adds to state),
    ``usage``, the ``meters`` of every level and the ``binding`` one.
    """

    def __init__(
        self,
        budget: Budget,
        *,
        spent_units: int = 0,
        scope: str = "run",
        parent: BaseMeter | None = None,
    ) -> None:
        """One level; ``spent_units`` were spent before this meter (not ``committed``)."""
        super().__init__(budget, spent_units=spent_units, scope=scope, parent=parent)
        self._base = spent_units
        self.owner: Any = None
        """The middleware whose limits these are (set by :meth:`chain`)."""
        self.enclosing: BaseMeter | None = None
        """The meter the agent's limits are nested in (that of the run around the agent)."""

    @classmethod
    def chain(
        cls,
        levels: Sequence[tuple[str, Budget, int]],
        *,
        parent: BaseMeter | None = None,
        owner: Any = None,
    ) -> AgentMeter:
        """Nest ``(scope, budget, spent_units)`` levels, outermost first, inside ``parent``."""
        if not levels:
            raise ValueError("AgentMeter needs at least one limit (got none)")
        enclosing = parent
        for scope, budget, spent in levels[:-1]:
            parent = Meter(budget, spent_units=spent, scope=scope, parent=parent)
        scope, budget, spent = levels[-1]
        meter = cls(budget, spent_units=spent, scope=scope, parent=parent)
        meter.owner, meter.enclosing = owner, enclosing
        return meter

    @property
    def committed(self) -> int:
        """Units committed through this meter (the delta a step adds to state)."""
        return self.spent - self._base

    @property
    def usage(self) -> Usage:
        """Token usage committed through this meter."""
        return self.spend.usage

    @property
    def meters(self) -> list[BaseMeter]:
        """Every level, innermost first."""
        return self.levels

    @property
    def binding(self) -> BaseMeter:
        """The level with the least room for an ordinary call (the outermost of a tie)."""
        # A level's ``available`` is the least of its own room and its ancestors': the
        # outermost level that still shows the overall least is the one that binds.
        least = self.available()
        return [m for m in self.levels if m.available() == least][-1]

    def __repr__(self) -> str:
        inner = ", ".join(f"{m.scope}={m.spent}/{m.limit}" for m in self.levels)
        return f"AgentMeter({inner}, reserved={self.reserved})"


class _Step:
    __slots__ = ("behind", "meter", "pending")

    def __init__(self, meter: AgentMeter, pending: set[str], behind: int) -> None:
        self.meter = meter
        self.pending = pending
        self.behind = behind


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

    def acquire(self, key: Any, call_ids: set[str], build: Any, behind: int = 0) -> AgentMeter:
        """The step's meter, built with ``build()`` by the first tool call to arrive.

        ``behind``: units the step adds to the thread's spend to catch up with the
        thread's total (a resumed run's), handed out once by :meth:`claim_behind`.
        """
        with self._lock:
            step = self._steps.get(key)
            if step is None:
                step = _Step(build(), set(call_ids), behind)
                self._steps[key] = step
                while len(self._steps) > self.max_steps:
                    self._steps.popitem(last=False)
            return step.meter

    def claim_behind(self, key: Any) -> int:
        """The step's catch-up units, to the first tool call that reports its spend."""
        with self._lock:
            step = self._steps.get(key)
            if step is None:
                return 0
            behind, step.behind = step.behind, 0
            return behind

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
