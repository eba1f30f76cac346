"""Lease renewal for the Postgres meters: which leases are due, and the loops that renew them.

The schedule is pure bookkeeping (no I/O); :class:`ThreadRenewer` and
:class:`TaskRenewer` drive it from a daemon thread or an asyncio task, one per
connection pool, so building a meter per request starts nothing per request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["RenewSchedule", "TaskRenewer", "ThreadRenewer"]

log = logging.getLogger("budget_graph.postgres")

RenewFn = Callable[[list[int], float], set[int]]
"""Renew leases ``ids`` by ``lease_s``; returns the ids still held."""
AsyncRenewFn = Callable[[list[int], float], Awaitable[set[int]]]

_IDLE_S = 5.0  # a loop with nothing to renew lingers this long before it ends
_RETRY_S = 0.2  # after a failed renewal (the server restarting...), try again this soon


@dataclass
class _Entry:
    lease_s: float
    since: float
    renewed: float
    max_hold_s: float | None


@dataclass
class RenewSchedule:
    """Open leases and when each is due: renewed every third of its lease."""

    entries: dict[int, _Entry] = field(default_factory=dict)
    lost: set[int] = field(default_factory=set)
    """Leases the database no longer held when renewed (reclaimed, or committed elsewhere)."""

    def add(self, lease_id: int, lease_s: float, max_hold_s: float | None) -> None:
        """Keep ``lease_id`` alive until :meth:`remove` (or ``max_hold_s``)."""
        now = time.monotonic()
        self.entries[lease_id] = _Entry(lease_s, now, now, max_hold_s)

    def remove(self, lease_id: int) -> None:
        """Stop renewing ``lease_id``."""
        self.entries.pop(lease_id, None)
        self.lost.discard(lease_id)

    def due(self, now: float) -> dict[float, list[int]]:
        """Leases to renew now, grouped by ``lease_s``; drops those past ``max_hold_s``."""
        out: dict[float, list[int]] = {}
        for lease_id, e in list(self.entries.items()):
            if e.max_hold_s is not None and now - e.since >= e.max_hold_s:
                del self.entries[lease_id]  # held too long: let it lapse
                continue
            if now - e.renewed >= e.lease_s / 3:
                out.setdefault(e.lease_s, []).append(lease_id)
        return out

    def renewed(self, asked: list[int], held: set[int], now: float) -> None:
        """Record a renewal: ``held`` of ``asked`` are still leased."""
        for lease_id in asked:
            entry = self.entries.get(lease_id)
            if entry is None:
                continue
            if lease_id in held:
                entry.renewed = now
            else:
                del self.entries[lease_id]
                self.lost.add(lease_id)

    def wait_s(self, now: float) -> float:
        """Seconds until the next lease is due (``_IDLE_S`` when none is open)."""
        if not self.entries:
            return _IDLE_S
        return max(min(e.renewed + e.lease_s / 3 for e in self.entries.values()) - now, 0.0)


class ThreadRenewer:
    """Renews a pool's open leases from a daemon thread that runs while any is open."""

    def __init__(self, renew: RenewFn) -> None:
        self._renew = renew
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.schedule = RenewSchedule()

    def add(self, lease_id: int, lease_s: float, max_hold_s: float | None) -> None:
        """Start keeping ``lease_id`` alive."""
        with self._lock:
            self.schedule.add(lease_id, lease_s, max_hold_s)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="budget_graph-lease-renewer", daemon=True
                )
                self._thread.start()
            elif lease_s / 3 < _IDLE_S:
                self._wake.set()  # a short lease may be due before the loop wakes

    def remove(self, lease_id: int) -> bool:
        """Stop renewing ``lease_id``; whether renewal had found it lost."""
        with self._lock:
            lost = lease_id in self.schedule.lost
            self.schedule.remove(lease_id)
            return lost

    def _run(self) -> None:
        idle_since: float | None = None
        while True:
            with self._lock:
                now = time.monotonic()
                if not self.schedule.entries:
                    idle_since = idle_since or now
                    if now - idle_since >= _IDLE_S:
                        self._thread = None
                        return
                else:
                    idle_since = None
                due = self.schedule.due(now)
                wait = self.schedule.wait_s(now)
            failed = False
            for lease_s, ids in due.items():
                try:
                    held = self._renew(ids, lease_s)
                except Exception:  # the lease is still valid until it expires: try again soon
                    log.warning("lease renewal failed; retrying", exc_info=True)
                    failed = True
                    continue
                with self._lock:
                    self.schedule.renewed(ids, held, time.monotonic())
            if failed or not due:
                self._wake.wait(_RETRY_S if failed else min(wait, _IDLE_S))
                self._wake.clear()


class TaskRenewer:
    """The asyncio twin of :class:`ThreadRenewer`: one task per event loop and pool."""

    def __init__(self, renew: AsyncRenewFn) -> None:
        self._renew = renew
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self.schedule = RenewSchedule()

    def add(self, lease_id: int, lease_s: float, max_hold_s: float | None) -> None:
        """Start keeping ``lease_id`` alive (call from the loop that owns the pool)."""
        self.schedule.add(lease_id, lease_s, max_hold_s)
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        elif self._wake is not None and lease_s / 3 < _IDLE_S:
            self._wake.set()  # a short lease may be due before the loop wakes

    def remove(self, lease_id: int) -> bool:
        """Stop renewing ``lease_id``; whether renewal had found it lost."""
        lost = lease_id in self.schedule.lost
        self.schedule.remove(lease_id)
        return lost

    async def _run(self) -> None:
        assert self._wake is not None
        idle_since: float | None = None
        while True:
            now = time.monotonic()
            if not self.schedule.entries:
                idle_since = idle_since or now
                if now - idle_since >= _IDLE_S:
                    return
            else:
                idle_since = None
            due = self.schedule.due(now)
            failed = False
            for lease_s, ids in due.items():
                try:
                    held = await self._renew(ids, lease_s)
                except Exception:
                    log.warning("lease renewal failed; retrying", exc_info=True)
                    failed = True
                    continue
                self.schedule.renewed(ids, held, time.monotonic())
            if failed or not due:
                wait = _RETRY_S if failed else min(self.schedule.wait_s(now), _IDLE_S)
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
                self._wake.clear()
