"""The synchronous Postgres meter: one budget, or a chain of scopes, shared by many workers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool
from tenacity import RetryCallState

from budget_graph._internal import pg_schema as sql
from budget_graph.budget import Budget, Spend, Usage
from budget_graph.meter import Reservation
from budget_graph.postgres.base import BudgetSnapshot, LeasedReservation, PostgresMeterBase
from budget_graph.postgres.connections import (
    Conn,
    connection_options,
    execute,
    renewer_for,
    setup,
)
from budget_graph.postgres.failures import retrying, should_retry
from budget_graph.postgres.scope import BudgetScope

__all__ = ["PostgresMeter", "connection_options", "setup"]


class PostgresMeter(PostgresMeterBase):
    """A hard cap shared by every worker that points at the same database and scope.

    The :class:`~budget_graph.meter.BaseMeter` protocol on a row of
    ``budget_graph_budgets``. Each reserve, commit and release is one round trip
    (one statement), retried on connection errors for ``retry_s``
    (a reserve is idempotent: a retry finds its own lease). Open reservations are
    renewed in the background every ``lease_s / 3`` until committed or released
    (at most ``max_hold_s``), so a long stream keeps its hold while a dead
    worker's hold lapses after ``lease_s``.

    With a ``parent`` (another ``PostgresMeter`` on the same pool), a reservation
    holds on this level and every ancestor atomically (user ⊂ tenant ⊂ global), and
    a refusal's :class:`~budget_graph.errors.BudgetExceededError` names the level
    that refused. ``limit``, ``spent``, ``reserved`` and ``remaining`` are this
    level's figures as of the meter's last round trip (every reserve, commit and
    release returns them, so reading them costs nothing; the first read before any
    fetches them); ``available()`` and :meth:`snapshots` read fresh, and
    ``available()`` is the room left on every level.

    Args:
        conn: A ``psycopg_pool.ConnectionPool`` (recommended) or a ``psycopg.Connection``
            opened with ``autocommit=True`` (as for LangGraph's ``PostgresSaver``).
        budget: Limit, reserve and unit of this scope.
        scope: What the budget covers (a :class:`BudgetScope` or a raw key).
        parent: The enclosing scope's meter, or ``None``.
        lease_s: Seconds a reservation stays held without renewal.
        lock_timeout_s: Longest wait for a budget row's lock (``None``: no bound). A
            reserve that waits longer raises :class:`MeterTimeoutError`; a commit retries.
        retry_s: How long reserve, commit and release retry a lost connection.
        max_hold_s: Stop renewing a reservation held this long (``None``: never).
        renew: Renew open reservations in the background.
        update_limit: Write ``budget``'s limit and reserve into the row with this meter's
            first reservation of each key (later ones send no limits).

    Example:
        >>> meter = PostgresMeter.from_conn_string(  # doctest: +SKIP
        ...     "postgresql://localhost/app", Budget(max_tokens=100_000),
        ...     scope=BudgetScope.tenant("acme", period="day"))
        >>> r = meter.reserve(1_200)  # doctest: +SKIP
        >>> meter.commit(r, 800)  # doctest: +SKIP

    """

    parent: PostgresMeter | None

    def __init__(
        self,
        conn: Conn,
        budget: Budget,
        *,
        scope: BudgetScope | str,
        parent: PostgresMeter | None = None,
        lease_s: float = 300.0,
        lock_timeout_s: float | None = 2.0,
        retry_s: float = 30.0,
        max_hold_s: float | None = 3600.0,
        renew: bool = True,
        update_limit: bool = True,
    ) -> None:
        if isinstance(conn, psycopg.Connection) and not conn.autocommit:
            raise ValueError(
                "Invalid conn: a psycopg.Connection must be opened with autocommit=True"
            )
        if parent is not None and parent.conn is not conn:
            raise ValueError("Invalid parent: it must use the same pool or connection")
        self.conn: Conn = conn
        self._owns_pool = False
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
        self._retry = retrying(self.retry_s, self._health_check)
        self._retry_all = retrying(self.retry_s, self._health_check, timeouts=True)
        self._renewer = renewer_for(conn) if renew else None

    @classmethod
    def from_conn_string(
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
    ) -> PostgresMeter:
        """Open a meter with its own pool (closed by :meth:`close` / ``with``).

        The pool waits at most ``pool_timeout_s`` for a connection, and its
        connections carry ``statement_timeout`` and ``lock_timeout``.
        """
        options = connection_options(
            statement_timeout_s=statement_timeout_s,
            lock_timeout_s=kwargs.get("lock_timeout_s", 2.0),
        )
        pool: ConnectionPool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_pool_size,
            open=True,
            timeout=pool_timeout_s,
            kwargs={"autocommit": True, "options": options},
        )
        meter = cls(pool, budget, scope=scope, **kwargs)
        meter._owns_pool = True
        if setup:
            meter.setup()
        return meter

    def for_scope(self, scope: BudgetScope | str, budget: Budget | None = None) -> PostgresMeter:
        """A meter for another scope on the same connection and parent (e.g. per thread)."""
        return type(self)(
            self.conn, budget or self.budget, scope=scope, parent=self.parent, **self._settings()
        )

    def child(self, scope: BudgetScope | str, budget: Budget) -> PostgresMeter:
        """A meter for a scope nested in this one (a user of this tenant)."""
        return type(self)(self.conn, budget, scope=scope, parent=self, **self._settings())

    @classmethod
    def nested(
        cls,
        conn: Conn,
        levels: Sequence[tuple[BudgetScope | str, Budget]],
        **kwargs: Any,
    ) -> PostgresMeter:
        """The innermost meter of a scope chain given outermost first.

        Example:
            >>> user = PostgresMeter.nested(pool, [  # doctest: +SKIP
            ...     ("global", Budget(max_tokens=10_000_000)),
            ...     (BudgetScope.tenant("acme"), Budget(max_tokens=1_000_000)),
            ...     (BudgetScope.user("alice"), Budget(max_tokens=50_000))])

        """
        if not levels:
            raise ValueError("Invalid levels: []. Give at least one (scope, budget)")
        meter: PostgresMeter | None = None
        for scope, budget in levels:
            meter = cls(conn, budget, scope=scope, parent=meter, **kwargs)
        assert meter is not None
        return meter

    def close(self) -> None:
        """Close the pool if this meter opened it."""
        if self._owns_pool and isinstance(self.conn, ConnectionPool):
            self.conn.close()

    def __enter__(self) -> PostgresMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- I/O ---------------------------------------------------------------------------

    def _health_check(self, state: RetryCallState | None) -> None:
        """Before a retry: drop the pool's broken connections (after a restart, all of them)."""
        if isinstance(self.conn, ConnectionPool):
            try:
                self.conn.check()
            except Exception:  # the server may still be down; the retry will tell
                pass

    def _run(
        self,
        operation: str,
        query: str,
        params: dict[str, Any],
        *,
        timeouts: bool = False,
        rows: bool = True,
        retry_query: str | None = None,
    ) -> list[tuple[Any, ...]]:
        # The first attempt runs bare: tenacity's loop costs ~70 us a call, and it only
        # has decisions to make once an attempt has failed.
        try:
            return execute(self.conn, query, params, rows=rows)
        except psycopg.OperationalError as exc:
            if not should_retry(exc, timeouts):
                if isinstance(exc, pg_errors.LockNotAvailable | pg_errors.QueryCanceled):
                    raise self._timeout(operation, exc) from exc
                raise
        self._health_check(None)
        try:
            for attempt in self._retry_all if timeouts else self._retry:
                with attempt:
                    return execute(self.conn, retry_query or query, params, rows=rows)
        except (pg_errors.LockNotAvailable, pg_errors.QueryCanceled) as exc:
            raise self._timeout(operation, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def setup(self) -> None:
        """Create or migrate the tables (see :func:`setup`)."""
        setup(self.conn)

    # --- reads -------------------------------------------------------------------------

    def snapshots(self) -> list[BudgetSnapshot]:
        """Reclaim the chain's expired leases and read every level, innermost first."""
        params = self._read_params()
        return self._snapshots(self._run("read", sql.READ_SQL, params), params["keys"])

    def snapshot(self) -> BudgetSnapshot:
        """Reclaim expired leases and read this level's row."""
        return self.snapshots()[0]

    def _known(self) -> tuple[int, int, int, int]:
        """The figures of this level as of the last round trip (read once if none yet)."""
        if self._figures is None:
            self.snapshots()
        return self._level()

    def available(self, *, final: bool = False) -> int:
        """Units a new reservation could take now on every level (read fresh)."""
        return min(s.available(final=final) for s in self.snapshots())

    @property
    def spend(self) -> Spend:
        """What every worker committed with usage on this level, per node."""
        return self._spend(self._run("read", sql.SPEND_SQL, {"key": self.key}))

    # --- the protocol ------------------------------------------------------------------

    def _hold(self, params: dict[str, Any]) -> LeasedReservation | None:
        (query, retry), reclaimed = self._reserve_queries(params), False
        while True:
            res = self._held(
                self._run("reserve", query, params, retry_query=retry), params, reclaimed=reclaimed
            )
            if res == "missing":  # a key's first use: create the chain's rows, then retry
                self._run("reserve", sql.ENSURE_SQL, self._ensure_params(params), rows=False)
            elif res == "expired":  # refused, but expired leases can come back first
                self._run("reserve", sql.READ_SQL, {"keys": params["keys"]})
                reclaimed = True
            else:
                break
        if res is not None and self._renewer is not None:
            self._renewer.add(res.id, self.lease_s, self.max_hold_s)
        return res

    def reserve(
        self,
        units: int,
        *,
        final: bool = False,
        node: str | None = None,
    ) -> LeasedReservation:
        """Hold ``units`` on every level or raise :class:`BudgetExceededError` holding nothing.

        Expired leases are reclaimed in the same statement when the units do not fit.
        """
        res = self._hold(self._reserve_params(units, 1, 0, False, final, node))
        if res is None:
            raise self._exceeded(units)
        return res

    def reserve_output(
        self,
        prompt_units: int,
        *,
        n: int = 1,
        max_output: int = 0,
        final: bool = False,
        node: str | None = None,
    ) -> tuple[LeasedReservation, int] | None:
        """Atomically hold ``prompt_units`` plus as many output units per sample as fit.

        Each of the ``n`` samples gets the same cap, at most ``max_output`` (0: no
        bound), computed in SQL under the rows' locks. Returns the reservation and
        the per-sample cap, or ``None`` (nothing held) when not one unit fits.
        """
        res = self._hold(self._reserve_params(prompt_units, n, max_output, True, final, node))
        return None if res is None else (res, self._per_sample(res, prompt_units, n))

    def commit(
        self,
        reservation: Reservation,
        units: int,
        *,
        usage: Usage | Spend | None = None,
    ) -> None:
        """Charge the real ``units`` on every level and drop the lease (a repeat is a no-op).

        Charged even when the lease had expired (the provider billed the call); that
        warns with :class:`LeaseExpiredWarning`. A charge above the reservation warns
        with :class:`~budget_graph.errors.UsageOverrunWarning`.
        """
        query, params = self._commit_call(reservation, units, usage)
        if self._renewer is not None:
            self._renewer.remove(reservation.id)
        rows = self._run("commit", query, params, timeouts=True)
        late: list[tuple[Any, ...]] = []
        if len(rows) < len(params["keys"]):  # a lease reclaimed, or a repeat: which?
            late_params = self._late_params(reservation, params, rows)
            late = self._run("commit", sql.LATE_COMMIT_SQL, late_params, timeouts=True)
        self._committed(rows, late, reservation, units, params["keys"][0])

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation without charging it (idempotent)."""
        if self._renewer is not None:
            self._renewer.remove(reservation.id)
        params = self._release_params(reservation)
        self._released(self._run("release", sql.RELEASE_SQL, params, timeouts=True))

    def renew(self, reservation: Reservation) -> bool:
        """Extend a lease by ``lease_s`` from now; ``False`` if it was already reclaimed."""
        rows = self._run("renew", sql.RENEW_SQL, {"ids": [reservation.id], "lease_s": self.lease_s})
        return bool(rows)

    # --- async twins: a worker thread, so the event loop never blocks -------------------

    async def areserve(
        self,
        units: int,
        *,
        final: bool = False,
        node: str | None = None,
    ) -> LeasedReservation:
        """:meth:`reserve` in a worker thread."""
        return await asyncio.to_thread(self.reserve, units, final=final, node=node)

    async def areserve_output(
        self,
        prompt_units: int,
        *,
        n: int = 1,
        max_output: int = 0,
        final: bool = False,
        node: str | None = None,
    ) -> tuple[LeasedReservation, int] | None:
        """:meth:`reserve_output` in a worker thread."""
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
        """:meth:`commit` in a worker thread."""
        await asyncio.to_thread(self.commit, reservation, units, usage=usage)

    async def arelease(self, reservation: Reservation) -> None:
        """:meth:`release` in a worker thread."""
        await asyncio.to_thread(self.release, reservation)
