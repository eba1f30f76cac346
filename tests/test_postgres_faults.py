"""Faults against the real local PostgreSQL: restart, lost replies, long streams, held locks.

For each: nothing billed goes uncharged (every commit lands, once), nothing is
overshot, and no hold outlives its lease. (SIGKILLed workers: test_postgres_meter.)
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from budget_graph._internal.pg_testing import TempPostgres
from budget_graph.budget import Budget
from budget_graph.errors import BudgetExceededError
from budget_graph.postgres import (
    AsyncPostgresMeter,
    MeterTimeoutError,
    PostgresMeter,
    connection_options,
    setup,
)

pytestmark = [pytest.mark.postgres, pytest.mark.integration]


def _row(conninfo: str, key: str) -> tuple[int, int, int, int]:
    """(spent, reserved, ledger units, lease rows) of a key, read directly."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT b.spent, b.reserved, "
            "(SELECT coalesce(sum(units), 0) FROM budget_graph_charges WHERE key = b.key), "
            "(SELECT count(*) FROM budget_graph_leases WHERE key = b.key) "
            "FROM budget_graph_budgets b WHERE b.key = %s",
            (key,),
        ).fetchone()
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def test_restart_mid_run(postgres_server: TempPostgres, postgres_conninfo: str) -> None:
    limit, key = 5_000, "tenant:restart"
    meter = PostgresMeter.from_conn_string(
        postgres_conninfo, Budget(max_tokens=limit), scope=key, max_pool_size=4, retry_s=60
    )
    committed = [0] * 4
    errors: list[BaseException] = []
    started = threading.Barrier(5)
    done = threading.Event()

    def work(i: int) -> None:
        started.wait()
        try:
            while not done.is_set():
                try:
                    res = meter.reserve(7)
                except BudgetExceededError:
                    return
                meter.commit(res, 5)  # "billed": must land, across the restart
                committed[i] += 5
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in workers:
        t.start()
    started.wait()
    while sum(committed) < 200:  # mid-run: some cycles before the restart
        time.sleep(0.01)
    postgres_server.restart()
    after = sum(committed)
    while sum(committed) < after + 200 and not errors:  # and some after it
        time.sleep(0.01)
    done.set()
    for t in workers:
        t.join()
    meter.close()
    assert errors == []
    spent, reserved, ledger, leases = _row(postgres_conninfo, key)
    assert spent == ledger == sum(committed) <= limit
    assert reserved == 0 and leases == 0


class _LosesOneReply(psycopg.Cursor[Any]):
    """Runs a statement, then loses its reply once (the server has committed it)."""

    lose: set[str] = set()

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        out = super().execute(query, params, **kwargs)
        for marker in list(self.lose):
            if marker in str(query):
                self.lose.discard(marker)
                raise psycopg.OperationalError("server closed the connection unexpectedly")
        return out


def test_lost_replies_after_reserve_and_commit(postgres_conninfo: str) -> None:
    key = "user:lossy"
    with ConnectionPool(
        postgres_conninfo,
        min_size=1,
        max_size=2,
        open=True,
        kwargs={
            "autocommit": True,
            "cursor_factory": _LosesOneReply,
        },
    ) as pool:
        setup(pool)
        meter = PostgresMeter(pool, Budget(max_tokens=1_000), scope=key)
        meter.release(meter.reserve(0))  # the row exists
        _LosesOneReply.lose = {"INSERT INTO budget_graph_charges (lease_id, key, reserved_units"}
        res = meter.reserve(401)
        assert _LosesOneReply.lose == set()  # it was lost, and retried
        assert _row(postgres_conninfo, key)[1:] == (401, 0, 1)  # held once, not twice
        _LosesOneReply.lose = {"WITH done AS"}  # the commit's reply
        meter.commit(res, 380)
        assert _LosesOneReply.lose == set()
        assert _row(postgres_conninfo, key) == (380, 0, 380, 0)  # charged once


def test_stream_longer_than_its_lease(postgres_conninfo: str) -> None:
    key = "thread:stream"
    with PostgresMeter.from_conn_string(
        postgres_conninfo, Budget(max_tokens=100), scope=key, lease_s=1.0
    ) as streamer:
        other = PostgresMeter(streamer.conn, Budget(max_tokens=100), scope=key, renew=False)
        held = streamer.reserve(90)
        deadline = time.monotonic() + 3.5  # three and a half leases
        while time.monotonic() < deadline:
            # Every read reclaims expired leases: the renewed one must never come back.
            assert other.available() == 10
            with pytest.raises(BudgetExceededError):
                other.reserve(11)
            time.sleep(0.1)
        streamer.commit(held, 90)
        assert streamer.late_commits == 0
        assert _row(postgres_conninfo, key) == (90, 0, 90, 0)


async def test_async_stream_longer_than_its_lease(postgres_conninfo: str) -> None:
    key = "thread:astream"
    async with await AsyncPostgresMeter.from_conn_string(
        postgres_conninfo,
        Budget(max_tokens=100),
        scope=key,
        lease_s=1.0,
    ) as streamer:
        other = AsyncPostgresMeter(streamer.conn, Budget(max_tokens=100), scope=key, renew=False)
        held = await streamer.areserve(90)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert await other.aavailable() == 10
            await asyncio.sleep(0.1)
        await streamer.acommit(held, 90)
        assert streamer.late_commits == 0
    assert _row(postgres_conninfo, key) == (90, 0, 90, 0)


def _hold_row_lock(conninfo: str, key: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(conninfo)  # a transaction stays open until commit()
    conn.execute("SELECT 1 FROM budget_graph_budgets WHERE key = %s FOR UPDATE", (key,))
    return conn


def test_held_row_lock(postgres_conninfo: str) -> None:
    key = "tenant:locked"
    with PostgresMeter.from_conn_string(
        postgres_conninfo, Budget(max_tokens=1_000), scope=key, lock_timeout_s=0.3
    ) as meter:
        first = meter.reserve(100)
        locker = _hold_row_lock(postgres_conninfo, key)
        # A reserve does not wait past lock_timeout_s: refused fast, nothing held.
        with pytest.raises(
            MeterTimeoutError,
            match=re.escape("The reserve on the tenant:locked budget ran out of lock_timeout"),
        ) as info:
            meter.reserve(50)
        assert (info.value.scope, info.value.setting) == (key, "lock_timeout")
        # A commit (billed) keeps retrying until the lock is gone, then lands once.
        committer = threading.Thread(target=meter.commit, args=(first, 80))
        committer.start()
        time.sleep(1.0)  # several lock timeouts
        assert committer.is_alive()
        locker.commit()
        locker.close()
        committer.join(30)
        assert not committer.is_alive()
    assert _row(postgres_conninfo, key) == (80, 0, 80, 0)


@pytest.mark.parametrize("kind", ["async", "thread"])
async def test_a_reservation_waiting_on_a_lock_leaves_the_loop_free(
    postgres_conninfo: str,
    kind: str,
) -> None:
    key = f"tenant:loop-{kind}"
    budget = Budget(max_tokens=1_000)
    if kind == "async":
        meter: Any = await AsyncPostgresMeter.from_conn_string(
            postgres_conninfo, budget, scope=key, lock_timeout_s=30
        )
    else:
        meter = PostgresMeter.from_conn_string(
            postgres_conninfo, budget, scope=key, lock_timeout_s=30
        )
    await meter.arelease(await meter.areserve(0))  # the row exists
    locker = _hold_row_lock(postgres_conninfo, key)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def release_once_waiting() -> int:
        # Runs only if the loop is free: waits until the reserve blocks on the row lock,
        # then releases it. A blocked loop would leave the reserve stuck for 30 s.
        async with await psycopg.AsyncConnection.connect(
            postgres_conninfo, autocommit=True
        ) as conn:
            while True:
                row = await (
                    await conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE '%%budget_graph_budgets%%'"
                    )
                ).fetchone()
                if row and row[0] > 0:
                    seen = ticks
                    locker.commit()
                    return seen
                await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    reserving = asyncio.create_task(meter.areserve(10))
    ticks_while_blocked = await asyncio.wait_for(release_once_waiting(), 20)
    res = await asyncio.wait_for(reserving, 20)
    ticker.cancel()
    locker.close()
    assert ticks_while_blocked > 0  # other coroutines ran while the reserve waited
    assert res.units == 10
    await meter.acommit(res, 10)
    if kind == "async":
        await meter.aclose()
    else:
        meter.close()
    assert _row(postgres_conninfo, key) == (10, 0, 10, 0)


def test_connection_options() -> None:
    assert connection_options() == "-c statement_timeout=10000 -c lock_timeout=2000"
    assert connection_options(statement_timeout_s=None, lock_timeout_s=0.25) == (
        "-c lock_timeout=250"
    )
