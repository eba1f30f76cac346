"""One budget shared by many workers: a meter kept in PostgreSQL.

Needs the ``[postgres]`` extra (psycopg 3 and psycopg-pool). The meter has the
interface of the in-process :class:`~budget_graph.meter.Meter`, but its counters
live in a table row, so every worker process (LangGraph Server workers, a task
queue, several pods) reserves against the same limit. Each operation is one SQL
statement: a reservation is ``UPDATE ... SET reserved = reserved + n WHERE
spent + reserved + n <= limit`` plus the insert of its lease row, so concurrent
workers can never over-reserve. A lease expires after ``lease_s`` seconds: the
units of a worker that died mid-call return to the budget.

Tables (created by :meth:`PostgresMeter.setup`, prefixed ``budget_graph_`` so they
live next to ``langgraph-checkpoint-postgres``'s tables in one database):

- ``budget_graph_migrations(v)``: applied schema versions.
- ``budget_graph_budgets(key, limit_units, reserve_units, unit, spent, reserved,
  created_at, updated_at)``: one row per scope key; ``reserved`` is always the sum
  of the key's lease units.
- ``budget_graph_leases(id, key, units, final, node, owner, created_at,
  expires_at)``: in-flight reservations.
- ``budget_graph_charges(lease_id, key, units, reserved_units, late, node,
  input_tokens, output_tokens, reasoning_tokens, cached_tokens, calls,
  estimated_calls, committed_at)``: the ledger, one row per committed call.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from budget_graph._internal import pg_schema as sql
from budget_graph._internal.pg_schema import MIGRATIONS
from budget_graph.budget import Budget, Spend, Usage
from budget_graph.errors import BudgetExceededError, UsageOverrunWarning
from budget_graph.meter import Reservation

__all__ = [
    "MIGRATIONS",
    "BudgetScope",
    "BudgetSnapshot",
    "LeaseExpiredWarning",
    "LeasedReservation",
    "Period",
    "PostgresMeter",
    "setup",
]

Period = Literal["hour", "day", "week", "month"]
"""Length of a periodic budget; the scope key names the period's start."""

_KIND = re.compile(r"^[a-z][a-z0-9_-]*$")


def _period_start(period: Period, now: datetime) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "hour":
        return now.replace(minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


@dataclass(frozen=True, kw_only=True)
class BudgetScope:
    """What one shared budget covers: a run, a thread, a user, a tenant...

    The scope's :meth:`key` names its row in ``budget_graph_budgets``. With a
    ``period``, the key also names the period's start, so each day (say) gets a
    fresh budget: ``user:alice@day:2025-01-31``.

    Example:
        >>> BudgetScope.user("alice", period="day").key(datetime(2025, 1, 31, 17, 5))
        'user:alice@day:2025-01-31'

    """

    kind: str
    """``"run"``, ``"thread"``, ``"user"``, ``"tenant"`` or your own (lowercase word)."""
    id: str
    """The run id, thread id, user id... within the kind."""
    period: Period | None = None
    """Renew the budget every hour, day, week (from Monday) or month; ``None``: never."""
    tz: str = "UTC"
    """Time zone the periods start in (an IANA name)."""

    def __post_init__(self) -> None:
        if not _KIND.match(self.kind):
            raise ValueError(f"Invalid kind: {self.kind!r}. Must match {_KIND.pattern}")
        if not self.id:
            raise ValueError(f"Invalid id: {self.id!r}. Must be a non-empty string")
        if self.period not in (None, "hour", "day", "week", "month"):
            raise ValueError(
                f"Invalid period: {self.period!r}. Must be None, 'hour', 'day', 'week' or 'month'"
            )
        ZoneInfo(self.tz)  # raises for an unknown zone

    @classmethod
    def run(cls, run_id: object) -> BudgetScope:
        """One run of a graph."""
        return cls(kind="run", id=str(run_id))

    @classmethod
    def thread(cls, thread_id: object, *, period: Period | None = None) -> BudgetScope:
        """Every run on one LangGraph thread (conversation)."""
        return cls(kind="thread", id=str(thread_id), period=period)

    @classmethod
    def user(cls, user_id: object, *, period: Period | None = None, tz: str = "UTC") -> BudgetScope:
        """Everything one user spends, optionally per period."""
        return cls(kind="user", id=str(user_id), period=period, tz=tz)

    @classmethod
    def tenant(
        cls, tenant_id: object, *, period: Period | None = None, tz: str = "UTC"
    ) -> BudgetScope:
        """Everything one tenant (team, customer) spends, optionally per period."""
        return cls(kind="tenant", id=str(tenant_id), period=period, tz=tz)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], kind: Literal["thread", "run"] = "thread",
        *, period: Period | None = None,
    ) -> BudgetScope:
        """Scope the thread (``configurable.thread_id``) or run (``run_id``) of a config."""
        value = config.get("run_id") if kind == "run" else config.get(
            "configurable", {}).get("thread_id")
        if value is None:
            where = "run_id" if kind == "run" else "configurable.thread_id"
            raise ValueError(f"Invalid config: no {where} in {dict(config)!r}")
        return cls(kind=kind, id=str(value), period=period)

    def key(self, now: datetime | None = None) -> str:
        """Return the budget row's key at ``now`` (default: the current time)."""
        base = f"{self.kind}:{self.id}"
        if self.period is None:
            return base
        zone = ZoneInfo(self.tz)
        moment = datetime.now(zone) if now is None else (
            now.replace(tzinfo=zone) if now.tzinfo is None else now.astimezone(zone))
        start = _period_start(self.period, moment)
        stamp = start.strftime("%Y-%m-%dT%H:00" if self.period == "hour" else "%Y-%m-%d")
        return f"{base}@{self.period}:{stamp}"


@dataclass(frozen=True, slots=True)
class LeasedReservation(Reservation):
    """A reservation held in PostgreSQL; its ``id`` is the lease row's id."""

    key: str = ""
    """The budget key the units were reserved on (fixed even if the period rolls over)."""
    expires_at: datetime | None = None
    """When the lease lapses and its units return to the budget, unless renewed."""


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    """One budget row as read (after reclaiming expired leases)."""

    key: str
    limit: int
    reserve: int
    spent: int
    reserved: int
    reclaimed: int = 0
    """Units of expired leases returned to the budget by this read."""

    @property
    def remaining(self) -> int:
        """Units neither spent nor reserved."""
        return max(self.limit - self.spent - self.reserved, 0)


class LeaseExpiredWarning(UserWarning):
    """A call was committed after its lease expired and its units had been reclaimed."""


def setup(conn: ConnectionPool | psycopg.Connection[Any]) -> None:
    """Create or migrate the meter's tables; idempotent, safe from many workers at once.

    Like ``PostgresSaver.setup()``: call it once at deploy or start-up time.
    """
    if isinstance(conn, ConnectionPool):
        with conn.connection() as c, c.cursor(row_factory=tuple_row) as cur:
            _migrate(cur)
    else:
        with conn.cursor(row_factory=tuple_row) as cur:
            _migrate(cur)


def _migrate(cur: psycopg.Cursor[Any]) -> None:
    with cur.connection.transaction():
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (sql.SETUP_LOCK,))
        cur.execute(MIGRATIONS[0])
        row = cur.execute("SELECT max(v) FROM budget_graph_migrations").fetchone()
        version = -1 if row is None or row[0] is None else row[0]
        for v in range(version + 1, len(MIGRATIONS)):
            cur.execute(MIGRATIONS[v])
            cur.execute("INSERT INTO budget_graph_migrations (v) VALUES (%s)", (v,))


class PostgresMeter:
    """A hard cap shared by every worker that points at the same database and scope.

    Same interface as :class:`~budget_graph.meter.Meter`. The ``budget`` gives the
    limit and the reserve of the scope's row (the last meter to touch a key sets
    them, unless ``update_limit=False``). Properties read the database.

    A call that outlives its lease (``lease_s``) loses its reservation to
    reclaiming, and its commit is still charged, since the provider billed it:
    the spend is never lost, but the budget can then be overshot by that call.
    Choose ``lease_s`` well above your longest call, or :meth:`renew` long streams.

    Args:
        conn: A ``psycopg_pool.ConnectionPool`` (recommended) or a ``psycopg.Connection``
            opened with ``autocommit=True`` (as for LangGraph's ``PostgresSaver``).
        budget: Limit, reserve and unit of the scope.
        scope: What the budget covers (a :class:`BudgetScope` or a raw key).
        lease_s: Seconds a reservation is held before it may be reclaimed.
        update_limit: Write ``budget``'s limit into an existing row on first use.

    Example:
        >>> meter = PostgresMeter.from_conn_string(  # doctest: +SKIP
        ...     "postgresql://localhost/app", Budget(max_tokens=100_000),
        ...     scope=BudgetScope.tenant("acme", period="day"))
        >>> r = meter.reserve(1_200)  # doctest: +SKIP
        >>> meter.commit(r, 800)  # doctest: +SKIP

    """

    def __init__(
        self, conn: ConnectionPool | psycopg.Connection[Any], budget: Budget, *,
        scope: BudgetScope | str, lease_s: float = 300.0, update_limit: bool = True,
    ) -> None:
        if not lease_s > 0:
            raise ValueError(f"Invalid lease_s: {lease_s!r}. Must be > 0")
        if isinstance(conn, psycopg.Connection) and not conn.autocommit:
            raise ValueError("Invalid conn: a psycopg.Connection must be opened with "
                             "autocommit=True")
        if isinstance(scope, str) and not scope:
            raise ValueError("Invalid scope: ''. Must be a BudgetScope or a non-empty key")
        self.conn = conn
        self.budget = budget
        self.scope_spec = scope
        self.lease_s = float(lease_s)
        self.update_limit = update_limit
        self._lock = threading.Lock()
        self._ensured: set[str] = set()
        self._owns_pool = False
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        self.refused = 0
        """Reservations this process had refused."""
        self.overrun_units = 0
        """Units this process committed beyond their reservation."""
        self.late_commits = 0
        """Commits of this process whose lease had already been reclaimed."""

    @classmethod
    def from_conn_string(
        cls, conninfo: str, budget: Budget, *, scope: BudgetScope | str,
        max_pool_size: int = 10, setup: bool = True, **kwargs: Any,
    ) -> PostgresMeter:
        """Open a meter with its own connection pool (closed by :meth:`close` / ``with``)."""
        pool: ConnectionPool = ConnectionPool(
            conninfo, min_size=1, max_size=max_pool_size, open=True,
            kwargs={"autocommit": True},
        )
        meter = cls(pool, budget, scope=scope, **kwargs)
        meter._owns_pool = True
        if setup:
            meter.setup()
        return meter

    def for_scope(self, scope: BudgetScope | str, budget: Budget | None = None) -> PostgresMeter:
        """Return a meter for another scope on the same connection (e.g. per thread)."""
        return type(self)(self.conn, budget or self.budget, scope=scope, lease_s=self.lease_s,
                          update_limit=self.update_limit)

    def close(self) -> None:
        """Close the pool if this meter opened it."""
        if self._owns_pool and isinstance(self.conn, ConnectionPool):
            self.conn.close()

    def __enter__(self) -> PostgresMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        if isinstance(self.conn, ConnectionPool):
            with self.conn.connection() as c, c.cursor(row_factory=tuple_row) as cur:
                yield cur
        else:
            with self._lock, self.conn.cursor(row_factory=tuple_row) as cur:
                yield cur

    def setup(self) -> None:
        """Create or migrate the tables (see :func:`setup`)."""
        with self._cursor() as cur:
            _migrate(cur)

    @property
    def key(self) -> str:
        """The budget row's key now (periodic scopes roll over)."""
        spec = self.scope_spec
        return spec if isinstance(spec, str) else spec.key()

    @property
    def scope(self) -> str:
        """The scope named in errors and telemetry: the current key."""
        return self.key

    def _ensure(self, key: str) -> None:
        if key in self._ensured:
            return
        with self._cursor() as cur:
            cur.execute(
                sql.ENSURE_UPDATE if self.update_limit else sql.ENSURE_KEEP,
                {"key": key, "limit": self.budget.limit, "reserve": self.budget.reserve,
                 "unit": self.budget.unit},
            )
        self._ensured.add(key)

    def snapshot(self) -> BudgetSnapshot:
        """Reclaim the scope's expired leases and read its row."""
        key = self.key
        self._ensure(key)
        with self._cursor() as cur:
            row = cur.execute(sql.RECLAIM_READ_SQL, {"key": key}).fetchone()
        if row is None:  # deleted behind our back: recreate it
            self._ensured.discard(key)
            self._ensure(key)
            return BudgetSnapshot(key, self.budget.limit, self.budget.reserve, 0, 0)
        return BudgetSnapshot(key, *row)

    @property
    def limit(self) -> int:
        """The limit in units."""
        return self.snapshot().limit

    @property
    def spent(self) -> int:
        """Units committed so far, by every worker."""
        return self.snapshot().spent

    @property
    def reserved(self) -> int:
        """Units held by live reservations of every worker."""
        return self.snapshot().reserved

    @property
    def remaining(self) -> int:
        """Units neither spent nor reserved (the reserve for final answers included)."""
        return self.snapshot().remaining

    def available(self, *, final: bool = False) -> int:
        """Units a new reservation could take now."""
        s = self.snapshot()
        return max(s.limit - (0 if final else s.reserve) - s.spent - s.reserved, 0)

    @property
    def spend(self) -> Spend:
        """What every worker committed with usage on this scope, per node."""
        with self._cursor() as cur:
            rows = cur.execute(sql.SPEND_SQL, {"key": self.key}).fetchall()
        total = Spend()
        for node, *numbers in rows:
            total = total + Spend.of(Usage(*(int(n or 0) for n in numbers)), node=node)
        return total

    def reserve(
        self, units: int, *, final: bool = False, node: str | None = None
    ) -> LeasedReservation:
        """Hold ``units`` or raise :class:`BudgetExceededError` without holding anything.

        Expired leases are reclaimed when a reservation does not fit, then it is
        tried once more.
        """
        if units < 0:
            raise ValueError(f"units must be >= 0 (got {units})")
        key = self.key
        self._ensure(key)
        params = {"key": key, "units": units, "final": final, "node": node,
                  "owner": self._owner, "lease_s": self.lease_s}
        for attempt in range(2):
            with self._cursor() as cur:
                row = cur.execute(sql.RESERVE_SQL, params).fetchone()
            if row is not None:
                return LeasedReservation(row[0], units, final, node, key=key, expires_at=row[1])
            snap = self.snapshot()
            if snap.reclaimed == 0 or attempt == 1:
                break
        self.refused += 1
        raise BudgetExceededError(
            limit=snap.limit, spent=snap.spent, requested=units, scope=key,
            reserved=snap.reserved, unit=self.budget.unit,
        )

    def commit(
        self, reservation: Reservation, units: int, *, usage: Usage | Spend | None = None
    ) -> None:
        """Charge the real ``units`` of a call and drop its lease (a repeat is a no-op).

        Charged even when the lease had expired and been reclaimed (the provider
        billed the call); that warns with :class:`LeaseExpiredWarning`. A charge
        above the reservation warns with :class:`UsageOverrunWarning`.
        """
        key = getattr(reservation, "key", "") or self.key
        u = usage if usage is not None else None
        params = {
            "id": reservation.id, "key": key, "units": units,
            "reserved_units": reservation.units, "node": reservation.node,
            "input_tokens": u.input_tokens if u else None,
            "output_tokens": u.output_tokens if u else None,
            "reasoning_tokens": u.reasoning_tokens if u else None,
            "cached_tokens": u.cached_tokens if u else None,
            "calls": u.calls if u else None,
            "estimated_calls": u.estimated_calls if u else None,
        }
        with self._cursor() as cur:
            row = cur.execute(sql.COMMIT_SQL, params).fetchone()
        if row is None:  # already committed
            return
        if row[0]:
            self.late_commits += 1
            warnings.warn(
                f"Committed {units} units on {key!r} after lease {reservation.id} expired "
                f"(lease_s={self.lease_s}); the budget may be overshot by this call",
                LeaseExpiredWarning, stacklevel=2,
            )
        over = units - reservation.units
        if over > 0:
            self.overrun_units += over
            warnings.warn(
                f"Call charged {units} units but reserved {reservation.units}: the provider "
                f"ignored max_tokens (overrun={over})",
                UsageOverrunWarning, stacklevel=2,
            )

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation without charging it (idempotent)."""
        with self._cursor() as cur:
            cur.execute(sql.RELEASE_SQL, {"id": reservation.id})

    def renew(self, reservation: Reservation) -> datetime | None:
        """Extend a lease by ``lease_s`` from now; ``None`` if it was already reclaimed."""
        with self._cursor() as cur:
            row = cur.execute(sql.RENEW_SQL, {"id": reservation.id,
                                           "lease_s": self.lease_s}).fetchone()
        return None if row is None else row[0]

    def __repr__(self) -> str:
        return f"PostgresMeter(scope={self.key!r}, lease_s={self.lease_s})"
