"""Connections of the Postgres meters: server timeouts, table setup, cursors and lease renewers.

Sync and asyncio twins side by side (``setup``/``asetup``, ``execute``/``aexecute``,
``cursor_of``/``acursor_of``,
``renewer_for``/``arenewer_for``); one renewer per pool or connection.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolClosed

from budget_graph._internal import pg_schema as sql
from budget_graph._internal.pg_renew import TaskRenewer, ThreadRenewer

__all__ = [
    "AConn",
    "Conn",
    "acursor_of",
    "aexecute",
    "arenewer_for",
    "asetup",
    "connection_options",
    "cursor_of",
    "execute",
    "renewer_for",
    "setup",
]


AConn = AsyncConnectionPool | psycopg.AsyncConnection[Any]
Conn = ConnectionPool | psycopg.Connection[Any]

_thread_renewers: weakref.WeakKeyDictionary[Any, ThreadRenewer] = weakref.WeakKeyDictionary()
_renewers_lock = threading.Lock()
_task_renewers: weakref.WeakKeyDictionary[Any, TaskRenewer] = weakref.WeakKeyDictionary()


def connection_options(
    *,
    statement_timeout_s: float | None = 10.0,
    lock_timeout_s: float | None = 2.0,
) -> str:
    """The libpq ``options`` setting the server timeouts of a meter's connections."""
    opts = []
    if statement_timeout_s is not None:
        opts.append(f"-c statement_timeout={max(int(statement_timeout_s * 1000), 1)}")
    if lock_timeout_s is not None:
        opts.append(f"-c lock_timeout={max(int(lock_timeout_s * 1000), 1)}")
    return " ".join(opts)


@contextmanager
def cursor_of(conn: Conn) -> Iterator[psycopg.Cursor[Any]]:
    """A tuple-row cursor on ``conn`` (a pool lends a connection for the block)."""
    if isinstance(conn, ConnectionPool):
        with conn.connection() as c, c.cursor(row_factory=tuple_row) as cur:
            yield cur
    else:
        with conn.cursor(row_factory=tuple_row) as cur:
            yield cur


def execute(
    conn: Conn, query: str, params: dict[str, Any], *, rows: bool = True
) -> list[tuple[Any, ...]]:
    """Run one meter statement on ``conn``; its rows as tuples (``[]`` without ``rows``).

    A pool lends a connection with ``getconn``/``putconn`` rather than
    ``connection()``, whose exit also commits: each meter statement is its own
    transaction (autocommit), and under many threads that extra step cost about
    25 us a statement. Results come back in binary, cheaper to write and read than
    text (both measured in ``benchmarks/shared_meter.py``'s harness).
    """
    if not isinstance(conn, ConnectionPool):
        return _execute(conn, query, params, rows)
    c = conn.getconn()
    try:
        return _execute(c, query, params, rows)
    finally:
        conn.putconn(c)


def _execute(
    c: psycopg.Connection[Any], query: str, params: dict[str, Any], rows: bool
) -> list[tuple[Any, ...]]:
    with c.cursor(row_factory=tuple_row) as cur:
        cur.execute(query, params, binary=True)
        out = cur.fetchall() if rows else []
    if not c.autocommit:  # a pool of the user's without autocommit
        c.commit()
    return out


def setup(conn: Conn) -> None:
    """Create or migrate the meter's tables; idempotent, safe from many workers at once.

    Like ``PostgresSaver.setup()``: call it once at deploy or start-up time.
    """
    with cursor_of(conn) as cur, cur.connection.transaction():
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (sql.SETUP_LOCK,))
        cur.execute(sql.MIGRATIONS[0])
        row = cur.execute("SELECT max(v) FROM budget_graph_migrations").fetchone()
        version = -1 if row is None or row[0] is None else row[0]
        for v in range(version + 1, len(sql.MIGRATIONS)):
            cur.execute(sql.MIGRATIONS[v])
            cur.execute("INSERT INTO budget_graph_migrations (v) VALUES (%s)", (v,))


def renewer_for(conn: Conn) -> ThreadRenewer:
    """The one renewer of a pool (or connection): a daemon thread while leases are open."""
    with _renewers_lock:
        renewer = _thread_renewers.get(conn)
        if renewer is None:
            ref = weakref.ref(conn)

            def renew(ids: list[int], lease_s: float) -> set[int]:
                c = ref()
                if c is None:
                    return set()
                try:
                    rows = execute(c, sql.RENEW_SQL, {"ids": ids, "lease_s": lease_s})
                    return {r[0] for r in rows}
                except PoolClosed:
                    return set()

            renewer = _thread_renewers[conn] = ThreadRenewer(renew)
        return renewer


async def aexecute(
    conn: AConn, query: str, params: dict[str, Any], *, rows: bool = True
) -> list[tuple[Any, ...]]:
    """The async twin of :func:`execute`."""
    if not isinstance(conn, AsyncConnectionPool):
        return await _aexecute(conn, query, params, rows)
    c = await conn.getconn()
    try:
        return await _aexecute(c, query, params, rows)
    finally:
        await conn.putconn(c)


async def _aexecute(
    c: psycopg.AsyncConnection[Any], query: str, params: dict[str, Any], rows: bool
) -> list[tuple[Any, ...]]:
    async with c.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, params, binary=True)
        out = await cur.fetchall() if rows else []
    if not c.autocommit:
        await c.commit()
    return out


@asynccontextmanager
async def acursor_of(conn: AConn) -> AsyncIterator[psycopg.AsyncCursor[Any]]:
    """The async twin of :func:`cursor_of`."""
    if isinstance(conn, AsyncConnectionPool):
        async with conn.connection() as c, c.cursor(row_factory=tuple_row) as cur:
            yield cur
    else:
        async with conn.cursor(row_factory=tuple_row) as cur:
            yield cur


async def asetup(conn: AConn) -> None:
    """Create or migrate the meter's tables (the async twin of :func:`setup`)."""
    async with acursor_of(conn) as cur, cur.connection.transaction():
        await cur.execute("SELECT pg_advisory_xact_lock(%s)", (sql.SETUP_LOCK,))
        await cur.execute(sql.MIGRATIONS[0])
        row = await (await cur.execute("SELECT max(v) FROM budget_graph_migrations")).fetchone()
        version = -1 if row is None or row[0] is None else row[0]
        for v in range(version + 1, len(sql.MIGRATIONS)):
            await cur.execute(sql.MIGRATIONS[v])
            await cur.execute("INSERT INTO budget_graph_migrations (v) VALUES (%s)", (v,))


def arenewer_for(conn: AConn) -> TaskRenewer:
    """The one renewer of a pool: an asyncio task on its loop while leases are open."""
    renewer = _task_renewers.get(conn)
    if renewer is None:
        ref = weakref.ref(conn)

        async def renew(ids: list[int], lease_s: float) -> set[int]:
            c = ref()
            if c is None:
                return set()
            try:
                rows = await aexecute(c, sql.RENEW_SQL, {"ids": ids, "lease_s": lease_s})
                return {r[0] for r in rows}
            except PoolClosed:
                return set()

        renewer = _task_renewers[conn] = TaskRenewer(renew)
    return renewer
