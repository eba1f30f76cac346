"""Local chunks for hot keys: lease N units from PostgreSQL, serve reservations in-process.

A key that takes thousands of reservations a second saturates its row's lock.
:class:`ChunkedMeter` leases a chunk of units at a time (one ordinary reservation
on the database, so the chunk counts as held by every other worker until it is
settled) and serves reservations from it with no I/O. When a chunk cannot serve a
request it drains: once its last local reservation ends, one commit charges what
was used and returns the rest. The hard cap holds across processes because no
local reservation ever exceeds what its chunk holds in the database.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field

from budget_graph.budget import Budget, Spend, Usage
from budget_graph.errors import BudgetExceededError
from budget_graph.meter import Reservation
from budget_graph.postgres.base import LeasedReservation
from budget_graph.postgres.sync import PostgresMeter

__all__ = ["ChunkedMeter", "LocalReservation"]

_ids = itertools.count(1)


@dataclass(frozen=True)
class LocalReservation(Reservation):
    """A reservation served from a chunk, without a round trip."""

    chunk: int = 0
    """Id of the chunk's lease in the database."""


@dataclass
class _Chunk:
    lease: LeasedReservation
    born: float
    used: int = 0
    held: int = 0
    open: int = 0
    draining: bool = False
    usage: list[Usage | Spend] = field(default_factory=list)

    @property
    def free(self) -> int:
        return self.lease.units - self.used - self.held


class ChunkedMeter:
    """A :class:`PostgresMeter` for hot keys: reservations served from leased chunks.

    Most reservations and commits are in-process (a lock and a few additions); one
    round trip leases a chunk of ``chunk_units`` (fewer if the budget has fewer
    left), one settles it. Chunks are leases of the inner meter, renewed while
    held. A chunk older than ``max_chunk_age_s`` is drained and replaced, so usage
    reaches the database at least that often; :meth:`close` settles everything.
    Final reservations (the budget's reserve) go straight to the database.

    Costs: units parked in this process's chunk are not available to other workers
    until settled, so another worker may be refused up to ``chunk_units`` early;
    a process killed with SIGKILL loses the usage of its unsettled chunks (the
    units return when their leases expire), at most one chunk per
    ``max_chunk_age_s``.

    Example:
        >>> hot = ChunkedMeter(PostgresMeter(pool, budget, scope="tenant:big"),  # doctest: +SKIP
        ...                    chunk_units=20_000)

    """

    def __init__(
        self,
        meter: PostgresMeter,
        *,
        chunk_units: int,
        max_chunk_age_s: float = 30.0,
    ) -> None:
        if chunk_units < 1:
            raise ValueError(f"Invalid chunk_units: {chunk_units!r}. Must be >= 1")
        if not max_chunk_age_s > 0:
            raise ValueError(f"Invalid max_chunk_age_s: {max_chunk_age_s!r}. Must be > 0")
        self.meter = meter
        self.chunk_units = chunk_units
        self.max_chunk_age_s = float(max_chunk_age_s)
        self._lock = threading.Lock()
        self._refill = threading.Lock()  # one chunk lease at a time
        self._active: _Chunk | None = None
        self._chunks: dict[int, _Chunk] = {}
        self._local: dict[int, _Chunk] = {}
        self.refused = 0
        """Reservations this meter had refused."""
        self.chunks_leased = 0
        """Chunks leased from the database so far."""

    @property
    def budget(self) -> Budget:
        """The inner meter's budget."""
        return self.meter.budget

    @property
    def scope(self) -> str:
        """The inner meter's scope key."""
        return self.meter.scope

    def _unsettled(self) -> tuple[int, int]:
        with self._lock:
            used = sum(c.used for c in self._chunks.values())
            free = self._active.free if self._active and not self._active.draining else 0
        return used, free

    @property
    def limit(self) -> int:
        """The limit in units."""
        return self.meter.snapshot().limit

    @property
    def spent(self) -> int:
        """Units committed by every worker, this process's unsettled chunk usage included."""
        return self.meter.snapshot().spent + self._unsettled()[0]

    @property
    def reserved(self) -> int:
        """Units held by every worker (chunks count as held, less what they used)."""
        return self.meter.snapshot().reserved - self._unsettled()[0]

    @property
    def remaining(self) -> int:
        """Units neither spent nor reserved (read fresh)."""
        return self.meter.snapshot().remaining

    def available(self, *, final: bool = False) -> int:
        """Units a new reservation could take now: the database's and this chunk's."""
        return self.meter.available(final=final) + self._unsettled()[1]

    # --- local bookkeeping (no I/O) ----------------------------------------------------

    def _carve(
        self, prompt_units: int, n: int, max_output: int, clamp: bool, node: str | None
    ) -> tuple[LocalReservation, int] | None:
        """Serve a reservation from the active chunk, or ``None`` (then drain it)."""
        with self._lock:
            chunk = self._active
            if chunk is None:
                return None
            if time.monotonic() - chunk.born >= self.max_chunk_age_s:
                chunk.draining, self._active = True, None
                return None
            free = chunk.free
            if clamp:
                out = (free - prompt_units) // n
                if max_output and max_output < out:
                    out = max_output
                units = prompt_units + out * n if out >= 1 else -1
            else:
                out, units = 0, prompt_units if prompt_units <= free else -1
            if units < 0:
                chunk.draining, self._active = True, None
                return None
            chunk.held += units
            chunk.open += 1
            res = LocalReservation(next(_ids), units, False, node, chunk=chunk.lease.id)
            self._local[res.id] = chunk
            return res, out

    def _finish(
        self, reservation: Reservation, units: int | None, usage: Usage | Spend | None
    ) -> _Chunk | None:
        """Close a local reservation; returns its chunk if it is now ready to settle."""
        with self._lock:
            chunk = self._local.pop(reservation.id, None)
            if chunk is None:
                return None  # committed or released before
            chunk.held -= reservation.units
            chunk.open -= 1
            if units is not None:
                chunk.used += units
                if usage is not None:
                    chunk.usage.append(usage)
            if chunk.draining and chunk.open == 0:
                del self._chunks[chunk.lease.id]
                return chunk
            return None

    # --- I/O: leasing and settling chunks ----------------------------------------------

    def _settle(self, chunk: _Chunk) -> None:
        usage: Usage | Spend | None = None
        if chunk.usage:
            usage = sum((u if isinstance(u, Spend) else Spend.of(u) for u in chunk.usage), Spend())
        self.meter.commit(chunk.lease, chunk.used, usage=usage)

    def _lease(self, need: int, want: int) -> None:
        """Lease a chunk of ``want`` units, at least ``need``; raise if not even that fits."""
        if want > need:
            got = self.meter.reserve_output(need, max_output=want - need)
            lease = got[0] if got is not None else self.meter.reserve(need)  # raises
        else:
            lease = self.meter.reserve(need)
        with self._lock:
            chunk = _Chunk(lease, time.monotonic())
            self._chunks[lease.id] = chunk
            self._active = chunk
            self.chunks_leased += 1

    def _drained(self) -> list[_Chunk]:
        with self._lock:
            ready = [c for c in self._chunks.values() if c.draining and c.open == 0]
            for c in ready:
                del self._chunks[c.lease.id]
        return ready

    def _serve(
        self, prompt_units: int, n: int, max_output: int, clamp: bool, node: str | None
    ) -> tuple[LocalReservation, int]:
        got = self._carve(prompt_units, n, max_output, clamp, node)
        if got is not None:
            return got
        need = prompt_units + (n if clamp else 0)
        want = max(self.chunk_units, prompt_units + n * max_output if clamp else need)
        with self._refill:
            # Threads outside the refill lock carve from the new chunk too, and may empty
            # it first: lease again until the carve succeeds or the lease is refused.
            while (got := self._carve(prompt_units, n, max_output, clamp, node)) is None:
                for chunk in self._drained():
                    self._settle(chunk)
                try:
                    self._lease(need, want)
                except Exception:
                    self.refused += 1
                    raise
            return got

    # --- the protocol ------------------------------------------------------------------

    def reserve(self, units: int, *, final: bool = False, node: str | None = None) -> Reservation:
        """Hold ``units`` from the chunk (leasing one if needed) or raise BudgetExceededError."""
        if units < 0:
            raise ValueError(f"units must be >= 0 (got {units})")
        if final:
            return self.meter.reserve(units, final=True, node=node)
        return self._serve(units, 1, 0, False, node)[0]

    def reserve_output(
        self,
        prompt_units: int,
        *,
        n: int = 1,
        max_output: int = 0,
        final: bool = False,
        node: str | None = None,
    ) -> tuple[Reservation, int] | None:
        """Hold ``prompt_units`` plus as many output units per sample as fit, or ``None``."""
        if final:
            return self.meter.reserve_output(
                prompt_units, n=n, max_output=max_output, final=True, node=node
            )
        try:
            return self._serve(prompt_units, n, max_output, True, node)
        except BudgetExceededError:
            return None

    def commit(
        self,
        reservation: Reservation,
        units: int,
        *,
        usage: Usage | Spend | None = None,
    ) -> None:
        """Charge ``units``: to the chunk (settled later), or to the database for a final one."""
        if not isinstance(reservation, LocalReservation):
            self.meter.commit(reservation, units, usage=usage)
            return
        chunk = self._finish(reservation, units, usage)
        if chunk is not None:
            self._settle(chunk)

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation without charging it (idempotent)."""
        if not isinstance(reservation, LocalReservation):
            self.meter.release(reservation)
            return
        chunk = self._finish(reservation, None, None)
        if chunk is not None:
            self._settle(chunk)

    def close(self) -> None:
        """Settle every chunk: charge what was used, return the rest (in-flight ones drain)."""
        with self._lock:
            if self._active is not None:
                self._active.draining, self._active = True, None
        for chunk in self._drained():
            self._settle(chunk)

    def __enter__(self) -> ChunkedMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- async twins: local work inline, round trips in a worker thread ------------------

    async def areserve(
        self,
        units: int,
        *,
        final: bool = False,
        node: str | None = None,
    ) -> Reservation:
        """:meth:`reserve`; a chunk lease runs in a worker thread."""
        got = None if final or units < 0 else self._carve(units, 1, 0, False, node)
        if got is not None:
            return got[0]
        return await asyncio.to_thread(self.reserve, units, final=final, node=node)

    async def areserve_output(
        self,
        prompt_units: int,
        *,
        n: int = 1,
        max_output: int = 0,
        final: bool = False,
        node: str | None = None,
    ) -> tuple[Reservation, int] | None:
        """:meth:`reserve_output`; a chunk lease runs in a worker thread."""
        got = None if final else self._carve(prompt_units, n, max_output, True, node)
        if got is not None:
            return got
        return await asyncio.to_thread(
            self.reserve_output, prompt_units, n=n, max_output=max_output, final=final, node=node
        )

    async def acommit(
        self,
        reservation: Reservation,
        units: int,
        *,
        usage: Usage | Spend | None = None,
    ) -> None:
        """:meth:`commit`; settling a chunk runs in a worker thread."""
        if not isinstance(reservation, LocalReservation):
            await asyncio.to_thread(self.meter.commit, reservation, units, usage=usage)
            return
        chunk = self._finish(reservation, units, usage)
        if chunk is not None:
            await asyncio.to_thread(self._settle, chunk)

    async def arelease(self, reservation: Reservation) -> None:
        """:meth:`release`; settling a chunk runs in a worker thread."""
        if not isinstance(reservation, LocalReservation):
            await asyncio.to_thread(self.meter.release, reservation)
            return
        chunk = self._finish(reservation, None, None)
        if chunk is not None:
            await asyncio.to_thread(self._settle, chunk)
