"""Connections of the Postgres meters: server timeouts, table setup, cursors and lease renewers.

Sync and asyncio twins side by side (``setup``/``asetup``, ``cursor_of``/``acursor_of``,
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
    "arenewer_for",
    "asetup",
    "connection_options",
    "cursor_of",
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
                    with cursor_of(c) as cur:
                        rows = cur.execute(sql.RENEW_SQL, {"ids": ids, "lease_s": lease_s})
                        return {r[0] for r in rows.fetchall()}
                except PoolClosed:
                    return set()

            renewer = _thread_renewers[conn] = ThreadRenewer(renew)
        return renewer


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
                async with acursor_of(c) as cur:
                    rows = await cur.execute(sql.RENEW_SQL, {"ids": ids, "lease_s": lease_s})
                    return {r[0] for r in await rows.fetchall()}
            except PoolClosed:
                return set()

        renewer = _task_renewers[conn] = TaskRenewer(renew)
    return renewer
