"""The asyncio Postgres meter: the twin of :class:`~budget_graph.postgres.PostgresMeter`."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool
from tenacity import RetryCallState

from budget_graph._internal import pg_schema as sql
from budget_graph.budget import Budget, Spend, Usage
from budget_graph.meter import Reservation
from budget_graph.postgres.base import BudgetSnapshot, LeasedReservation, PostgresMeterBase
from budget_graph.postgres.connections import (
    AConn,
    aexecute,
    arenewer_for,
    asetup,
    connection_options,
)
from budget_graph.postgres.failures import aretrying, should_retry
from budget_graph.postgres.scope import BudgetScope

__all__ = ["AsyncPostgresMeter", "asetup"]

T = TypeVar("T")


class AsyncPostgresMeter(PostgresMeterBase):
    """The asyncio twin of :class:`~budget_graph.postgres.PostgresMeter` (psycopg's async pool).

    ``areserve``, ``areserve_output``, ``acommit`` and ``arelease`` are truly async:
    a reservation waiting on a row lock lets every other coroutine run. The sync
    methods work from other threads (a sync node of an async graph) by running on
    the meter's loop, and refuse on the loop's own thread rather than block it.
    ``limit``, ``spent``, ``reserved``, ``remaining`` and ``available()`` are the
    figures of this meter's last round trip (no I/O); ``await asnapshots()`` reads
    fresh ones.

    Arguments are those of :class:`~budget_graph.postgres.PostgresMeter`, with an
    ``AsyncConnectionPool`` or an ``AsyncConnection`` opened with ``autocommit=True``.
    """

    parent: AsyncPostgresMeter | None

    def __init__(
        self,
        conn: AConn,
        budget: Budget,
        *,
        scope: BudgetScope | str,
        parent: AsyncPostgresMeter | None = None,
        lease_s: float = 300.0,
        lock_timeout_s: float | None = 2.0,
        retry_s: float = 30.0,
        max_hold_s: float | None = 3600.0,
        renew: bool = True,
        update_limit: bool = True,
    ) -> None:
        if isinstance(conn, psycopg.AsyncConnection) and not conn.autocommit:
            raise ValueError(
                "Invalid conn: a psycopg.AsyncConnection must be opened with autocommit=True"
            )
        if parent is not None and parent.conn is not conn:
            raise ValueError("Invalid parent: it must use the same pool or connection")
        self.conn: AConn = conn
        self._owns_pool = False
        self._loop: asyncio.AbstractEventLoop | None = None
        super().__init__(
            budget,
            scope=scope,
            parent=parent,
            lease_s=lease_s,
            lock_timeout_s=lock_timeout_s,
            retry_s=retry_s,
            max_hold_s=max_hold_s,
            renew=renew,
            update_limit=update_limit,
        )
        self._retry = aretrying(self.retry_s, self._health_check)
        self._retry_all = aretrying(self.retry_s, self._health_check, timeouts=True)
        self._renewer = arenewer_for(conn) if renew else None
        self._chain_figures: list[BudgetSnapshot] = []

    @classmethod
    async def from_conn_string(
        cls,
        conninfo: str,
        budget: Budget,
        *,
        scope: BudgetScope | str,
        max_pool_size: int = 10,
        setup: bool = True,
        pool_timeout_s: float = 10.0,
        statement_timeout_s: float | None = 10.0,
        **kwargs: Any,
    ) -> AsyncPostgresMeter:
        """Open a meter with its own async pool (closed by :meth:`aclose` / ``async with``)."""
        options = connection_options(
            statement_timeout_s=statement_timeout_s,
            lock_timeout_s=kwargs.get("lock_timeout_s", 2.0),
        )
        pool: AsyncConnectionPool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_pool_size,
            open=False,
            timeout=pool_timeout_s,
            kwargs={"autocommit": True, "options": options},
        )
        await pool.open()
        meter = cls(pool, budget, scope=scope, **kwargs)
        meter._owns_pool = True
        if setup:
            await meter.asetup()
        return meter

    def for_scope(
        self,
        scope: BudgetScope | str,
        budget: Budget | None = None,
    ) -> AsyncPostgresMeter:
        """A meter for another scope on the same connection and parent."""
        return type(self)(
            self.conn, budget or self.budget, scope=scope, parent=self.parent, **self._settings()
        )

    def child(self, scope: BudgetScope | str, budget: Budget) -> AsyncPostgresMeter:
        """A meter for a scope nested in this one."""
        return type(self)(self.conn, budget, scope=scope, parent=self, **self._settings())

    @classmethod
    def nested(
        cls,
        conn: AConn,
        levels: Sequence[tuple[BudgetScope | str, Budget]],
        **kwargs: Any,
    ) -> AsyncPostgresMeter:
        """The innermost meter of a scope chain given outermost first."""
        if not levels:
            raise ValueError("Invalid levels: []. Give at least one (scope, budget)")
        meter: AsyncPostgresMeter | None = None
        for scope, budget in levels:
            meter = cls(conn, budget, scope=scope, parent=meter, **kwargs)
        assert meter is not None
        return meter

    async def aclose(self) -> None:
        """Close the pool if this meter opened it."""
        if self._owns_pool and isinstance(self.conn, AsyncConnectionPool):
            await self.conn.close()

    async def __aenter__(self) -> AsyncPostgresMeter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- I/O ---------------------------------------------------------------------------

    async def _health_check(self, state: RetryCallState | None) -> None:
        """Before a retry: drop the pool's broken connections."""
        if isinstance(self.conn, AsyncConnectionPool):
            try:
                await self.conn.check()
            except Exception:
                pass

    async def _run(
        self,
        operation: str,
        query: str,
        params: dict[str, Any],
        *,
        timeouts: bool = False,
        rows: bool = True,
        retry_query: str | None = None,
    ) -> list[tuple[Any, ...]]:
        self._loop = asyncio.get_running_loop()
        # The first attempt runs bare (tenacity's async loop costs ~300 us a call).
        try:
            return await aexecute(self.conn, query, params, rows=rows)
        except psycopg.OperationalError as exc:
            if not should_retry(exc, timeouts):
                if isinstance(exc, pg_errors.LockNotAvailable | pg_errors.QueryCanceled):
                    raise self._timeout(operation, exc) from exc
                raise
        await self._health_check(None)
        try:
            # AsyncRetrying keeps its state per thread: a copy per call, per coroutine.
            async for attempt in (self._retry_all if timeouts else self._retry).copy():
                with attempt:
                    return await aexecute(self.conn, retry_query or query, params, rows=rows)
        except (pg_errors.LockNotAvailable, pg_errors.QueryCanceled) as exc:
            raise self._timeout(operation, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _bridge(self, coro: Coroutine[Any, Any, T], name: str) -> T:
        """Run ``coro`` on the meter's loop from another thread; refuse on the loop itself."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._loop
        if loop is None or loop.is_closed() or running is loop:
            coro.close()
            raise RuntimeError(
                f"AsyncPostgresMeter.{name}() "
                + (
                    "would block its event loop"
                    if running is loop and loop is not None
                    else "has no running event loop to use yet"
                )
                + f"; use `await meter.a{name}(...)`, or PostgresMeter in sync code"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def asetup(self) -> None:
        """Create or migrate the tables (see :func:`asetup`)."""
        self._loop = asyncio.get_running_loop()
        await asetup(self.conn)

    # --- reads -------------------------------------------------------------------------

    async def asnapshots(self) -> list[BudgetSnapshot]:
        """Reclaim the chain's expired leases and read every level, innermost first."""
        params = self._read_params()
        rows = await self._run("read", sql.READ_SQL, params)
        self._chain_figures = self._snapshots(rows, params["keys"])
        return self._chain_figures

    async def asnapshot(self) -> BudgetSnapshot:
        """Reclaim expired leases and read this level's row."""
        return (await self.asnapshots())[0]

    async def aavailable(self, *, final: bool = False) -> int:
        """Units a new reservation could take now on every level (read fresh)."""
        return min(s.available(final=final) for s in await self.asnapshots())

    def available(self, *, final: bool = False) -> int:
        """Units a new reservation could take on this level, as of the last round trip."""
        limit, reserve, spent, reserved = self._level()
        return max(limit - (0 if final else reserve) - spent - reserved, 0)

    async def aspend(self) -> Spend:
        """What every worker committed with usage on this level, per node."""
        return self._spend(await self._run("read", sql.SPEND_SQL, {"key": self.key}))

    # --- the protocol, async -----------------------------------------------------------

    async def _hold(self, params: dict[str, Any]) -> LeasedReservation | None:
        (query, retry), reclaimed = self._reserve_queries(params), False
        while True:
            res = self._held(
                await self._run("reserve", query, params, retry_query=retry),
                params,
                reclaimed=reclaimed,
            )
            if res == "missing":  # a key's first use: create the chain's rows, then retry
                await self._run("reserve", sql.ENSURE_SQL, self._ensure_params(params), rows=False)
            elif res == "expired":  # refused, but expired leases can come back first
                await self._run("reserve", sql.READ_SQL, {"keys": params["keys"]})
                reclaimed = True
            else:
                break
        if res is not None and self._renewer is not None:
            self._renewer.add(res.id, self.lease_s, self.max_hold_s)
        return res

    async def areserve(
        self,
        units: int,
        *,
        final: bool = False,
        node: str | None = None,
    ) -> LeasedReservation:
        """Hold ``units`` on every level or raise :class:`BudgetExceededError` holding nothing."""
        res = await self._hold(self._reserve_params(units, 1, 0, False, final, node))
        if res is None:
            raise self._exceeded(units)
        return res

    async def areserve_output(
        self,
        prompt_units: int,
        *,
        n: int = 1,
        max_output: int = 0,
        final: bool = False,
        node: str | None = None,
    ) -> tuple[LeasedReservation, int] | None:
        """Atomically hold ``prompt_units`` plus as many output units per sample as fit."""
        res = await self._hold(self._reserve_params(prompt_units, n, max_output, True, final, node))
        return None if res is None else (res, self._per_sample(res, prompt_units, n))

    async def acommit(
        self,
        reservation: Reservation,
        units: int,
        *,
        usage: Usage | Spend | None = None,
    ) -> None:
        """Charge the real ``units`` on every level and drop the lease (a repeat is a no-op)."""
        query, params = self._commit_call(reservation, units, usage)
        if self._renewer is not None:
            self._renewer.remove(reservation.id)
        rows = await self._run("commit", query, params, timeouts=True)
        late: list[tuple[Any, ...]] = []
        if len(rows) < len(params["keys"]):  # a lease reclaimed, or a repeat: which?
            late_params = self._late_params(reservation, params, rows)
            late = await self._run("commit", sql.LATE_COMMIT_SQL, late_params, timeouts=True)
        self._committed(rows, late, reservation, units, params["keys"][0])

    async def arelease(self, reservation: Reservation) -> None:
        """Drop a reservation without charging it (idempotent)."""
        if self._renewer is not None:
            self._renewer.remove(reservation.id)
        params = self._release_params(reservation)
        self._released(await self._run("release", sql.RELEASE_SQL, params, timeouts=True))

    async def arenew(self, reservation: Reservation) -> bool:
        """Extend a lease by ``lease_s`` from now; ``False`` if it was already reclaimed."""
        rows = await self._run(
            "renew", sql.RENEW_SQL, {"ids": [reservation.id], "lease_s": self.lease_s}
        )
        return bool(rows)

    # --- sync twins: from other threads, through the meter's loop ------------------------

    def reserve(
        self,
        units: int,
        *,
        final: bool = False,
        node: str | None = None,
    ) -> LeasedReservation:
        """:meth:`areserve` from a thread other than the meter's event loop."""
        return self._bridge(self.areserve(units, final=final, node=node), "reserve")

    def reserve_output(
        self,
        prompt_units: int,
        *,
        n: int = 1,
        max_output: int = 0,
        final: bool = False,
        node: str | None = None,
    ) -> tuple[LeasedReservation, int] | None:
        """:meth:`areserve_output` from a thread other than the meter's event loop."""
        return self._bridge(
            self.areserve_output(prompt_units, n=n, max_output=max_output, final=final, node=node),
            "reserve_output",
        )

    def commit(
        self,
        reservation: Reservation,
        units: int,
        *,
        usage: Usage | Spend | None = None,
    ) -> None:
        """:meth:`acommit` from a thread other than the meter's event loop."""
        self._bridge(self.acommit(reservation, units, usage=usage), "commit")

    def release(self, reservation: Reservation) -> None:
        """:meth:`arelease` from a thread other than the meter's event loop."""
        self._bridge(self.arelease(reservation), "release")
