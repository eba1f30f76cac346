"""Shared budgets in PostgreSQL: the meters' throughput beside a plain-SQL baseline, and overshoot.

Starts its own throwaway PostgreSQL (same helper as the test fixture). Usage:

    python benchmarks/shared_meter.py [--concurrency 8] [--seconds 1.5] [--rounds 7] [--durable]

Throughput: at the same concurrency (``--concurrency`` threads, or coroutines for
the async meter), each contender runs reserve+commit cycles (reserve 10, commit 8)
on one hot key of a large budget for ``--seconds``, in ``--rounds`` interleaved
rounds, so the machine's load falls on all of them alike; a contender's rate is
the median of its rounds. The contenders, on the same server, pool settings and
threads:

- ``baseline``: the simplest correct reservation in plain SQL, one statement each way:
  ``UPDATE budget ... WHERE spent + reserved + n <= limit`` plus the insert of a
  lease row (so a crashed worker's hold can expire), and ``DELETE lease`` plus
  ``UPDATE budget`` to commit, on a budget table of the meter's shape and a lease
  table of its own (the shape of the meter's lease table before leases and ledger
  were merged: primary key and expiry index).
- ``nofk``: the baseline on tables without the lease table's foreign key (for
  reference: the meter's charge rows have none since migration 17); not in the last line.
- ``abaseline``: the same two statements from coroutines on psycopg's async pool.
- ``PostgresMeter`` (sync) and ``AsyncPostgresMeter`` (asyncio): the meters'
  ``reserve``/``commit`` (``areserve``/``acommit``), with ledger, idempotent ids,
  retries and lease renewal on; each is compared with the baseline on its own
  driver (threads on the sync pool, coroutines on the async pool).
- ``ChunkedMeter``: the sync meter behind local chunks of ``--chunk`` units.

Overshoot: ``--processes`` processes (sync, async and chunked meters in turn)
hammer one small budget until it is exhausted while a watcher samples
``spent + reserved``; overshoot is how far the peak or the final spend went past
the limit (must be 0), and the ledger must equal ``spent``.

CPU per cycle: for each contender, this process's CPU time and the server's (the
temporary cluster's backends, read from ``/proc``) over its rounds, divided by its
cycles; both cores serve client and server alike, so the ratios follow these sums.

Last line: ``pg_cycles_per_s=<x> baseline_per_s=<y> ratio=<x/y> chunked_per_s=<z>
overshoot_tokens=<o>``, where ``x`` is the sync meter and ``y`` the sync baseline
(the async pair's ratio is printed on the line before).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from budget_graph._internal.pg_testing import hammer, start_postgres
from budget_graph.budget import Budget
from budget_graph.postgres import (
    AsyncPostgresMeter,
    ChunkedMeter,
    PostgresMeter,
    connection_options,
    setup,
)

BASELINE_TABLES = """
CREATE TABLE bench_budgets (LIKE budget_graph_budgets INCLUDING ALL);
CREATE TABLE bench_leases (
    id BIGINT NOT NULL,
    key TEXT NOT NULL REFERENCES bench_budgets (key),
    units BIGINT NOT NULL CHECK (units >= 0),
    final BOOLEAN NOT NULL DEFAULT false,
    node TEXT,
    owner TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (id, key)
);
CREATE INDEX ON bench_leases (key, expires_at);
INSERT INTO bench_budgets (key, limit_units) VALUES ('hot', 1000000000000000);
CREATE TABLE bench_budgets_nofk (LIKE bench_budgets INCLUDING ALL);
CREATE TABLE bench_leases_nofk (LIKE bench_leases INCLUDING ALL);
INSERT INTO bench_budgets_nofk (key, limit_units) VALUES ('hot', 1000000000000000);
"""
BASELINE_RESERVE = """
WITH b AS (
    UPDATE bench_budgets SET reserved = reserved + %(units)s
    WHERE key = %(key)s AND spent + reserved + %(units)s <= limit_units RETURNING key)
INSERT INTO bench_leases (id, key, units, expires_at)
SELECT %(id)s, key, %(units)s, now() + interval '300 seconds' FROM b RETURNING id"""
BASELINE_COMMIT = """
WITH gone AS (DELETE FROM bench_leases WHERE id = %(id)s RETURNING key, units)
UPDATE bench_budgets b SET spent = b.spent + %(used)s, reserved = b.reserved - g.units
FROM gone g WHERE b.key = g.key"""
BASELINE_NOFK_RESERVE, BASELINE_NOFK_COMMIT = (
    q.replace("bench_budgets", "bench_budgets_nofk").replace("bench_leases ", "bench_leases_nofk ")
    for q in (BASELINE_RESERVE, BASELINE_COMMIT)
)
BIG = Budget(max_tokens=10**15)


def cpu_s(data_dir: Path | None) -> tuple[float, float]:
    """CPU seconds so far of this process and of the server's processes (postmaster + children).

    A backend's time counts while it lives, and in the postmaster's children's time
    once it exits, so the pool's long-lived connections are counted either way.
    """
    me = os.times()
    client = me.user + me.system
    if data_dir is None:
        return client, 0.0
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    server = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(pid) == postmaster:
            server += int(fields[13]) + int(fields[14])  # waited-for children
        if int(pid) == postmaster or int(fields[1]) == postmaster:
            server += int(fields[11]) + int(fields[12])
    return client, server / tick


def run_threads(cycle: Callable[[], None], workers: int, seconds: float) -> float:
    """Cycles per second of ``workers`` threads looping on ``cycle`` for ``seconds``."""
    counts = [0] * workers
    start = threading.Barrier(workers + 1)
    stop = [0.0]

    def loop(i: int) -> None:
        start.wait()
        n = 0
        while time.perf_counter() < stop[0]:
            cycle()
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


async def run_tasks(cycle: Callable[[], Awaitable[None]], workers: int, seconds: float) -> float:
    """Cycles per second of ``workers`` coroutines looping on ``cycle`` for ``seconds``."""
    stop = time.perf_counter() + seconds
    t0 = time.perf_counter()

    async def loop() -> int:
        n = 0
        while time.perf_counter() < stop:
            await cycle()
            n += 1
        return n

    counts = await asyncio.gather(*(loop() for _ in range(workers)))
    return sum(counts) / (time.perf_counter() - t0)


def throughput(
    conninfo: str,
    workers: int,
    seconds: float,
    rounds: int,
    chunk: int,
    data_dir: Path | None = None,
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Median cycles/s per contender over interleaved rounds, and its CPU per cycle.

    The CPU is ``(client_us, server_us)`` per cycle over all of a contender's rounds.
    """
    kwargs = {"autocommit": True, "options": connection_options()}
    pool = ConnectionPool(conninfo, min_size=workers, max_size=workers, open=True, kwargs=kwargs)
    setup(pool)
    with pool.connection() as conn:
        for stmt in BASELINE_TABLES.strip().split(";\n"):
            conn.execute(stmt)

    def plain(reserve: str, commit: str) -> Callable[[], None]:
        def cycle() -> None:
            lease = secrets.randbits(63)
            with pool.connection() as conn:
                row = conn.execute(reserve, {"units": 10, "key": "hot", "id": lease})
                assert row.fetchone() is not None
            with pool.connection() as conn:
                conn.execute(commit, {"id": lease, "used": 8})

        return cycle

    baseline = plain(BASELINE_RESERVE, BASELINE_COMMIT)
    baseline_nofk = plain(BASELINE_NOFK_RESERVE, BASELINE_NOFK_COMMIT)

    sync_meter = PostgresMeter(pool, BIG, scope="bench:sync")
    chunked = ChunkedMeter(PostgresMeter(pool, BIG, scope="bench:chunked"), chunk_units=chunk)

    def sync_cycle() -> None:
        sync_meter.commit(sync_meter.reserve(10), 8)

    def chunked_cycle() -> None:
        chunked.commit(chunked.reserve(10), 8)

    loop = asyncio.new_event_loop()
    apool = AsyncConnectionPool(
        conninfo, min_size=workers, max_size=workers, open=False, kwargs=kwargs
    )
    loop.run_until_complete(apool.open())
    async_meter = AsyncPostgresMeter(apool, BIG, scope="bench:async")

    async def abaseline() -> None:
        lease = secrets.randbits(63)
        async with apool.connection() as conn:
            cur = await conn.execute(BASELINE_RESERVE, {"units": 10, "key": "hot", "id": lease})
            assert await cur.fetchone() is not None
        async with apool.connection() as conn:
            await conn.execute(BASELINE_COMMIT, {"id": lease, "used": 8})

    async def async_cycle() -> None:
        await async_meter.acommit(await async_meter.areserve(10), 8)

    for cycle in (baseline, baseline_nofk, sync_cycle, chunked_cycle):  # warm up
        run_threads(cycle, workers, 0.2)
    for acycle in (abaseline, async_cycle):
        loop.run_until_complete(run_tasks(acycle, workers, 0.2))

    rates: dict[str, list[float]] = {
        "baseline": [],
        "nofk": [],
        "sync": [],
        "abaseline": [],
        "async": [],
        "chunked": [],
    }
    runs: dict[str, Callable[[], float]] = {
        "baseline": lambda: run_threads(baseline, workers, seconds),
        "nofk": lambda: run_threads(baseline_nofk, workers, seconds),
        "sync": lambda: run_threads(sync_cycle, workers, seconds),
        "abaseline": lambda: loop.run_until_complete(run_tasks(abaseline, workers, seconds)),
        "async": lambda: loop.run_until_complete(run_tasks(async_cycle, workers, seconds)),
        "chunked": lambda: run_threads(chunked_cycle, workers, seconds),
    }
    used = {name: [0.0, 0.0, 0.0] for name in runs}  # client s, server s, cycles
    for r in range(rounds):
        for name, run in runs.items():
            (c0, s0), t0 = cpu_s(data_dir), time.perf_counter()
            rates[name].append(run())
            (c1, s1), t1 = cpu_s(data_dir), time.perf_counter()
            total = used[name]
            total[0] += c1 - c0
            total[1] += s1 - s0
            total[2] += rates[name][-1] * (t1 - t0)
        print(
            f"round {r + 1}: " + ", ".join(f"{k}={v[-1]:,.0f}/s" for k, v in rates.items()),
            flush=True,
        )
    chunked.close()
    loop.run_until_complete(apool.close())
    pending = asyncio.all_tasks(loop)  # the lease renewer idles a few seconds before ending
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()
    with pool.connection() as conn:
        left = conn.execute("SELECT sum(reserved) FROM budget_graph_budgets").fetchone()
    pool.close()
    assert left is not None and left[0] == 0, f"holds left after the runs: {left}"
    cpu = {k: (c / n * 1e6, srv / n * 1e6) for k, (c, srv, n) in used.items()}
    return {k: statistics.median(v) for k, v in rates.items()}, cpu


def overshoot(conninfo: str, processes: int, threads: int, limit: int) -> tuple[int, str]:
    """Hammer one small budget from sync, async and chunked workers; the overshoot found."""
    key = "bench:shared"
    with PostgresMeter.from_conn_string(conninfo, Budget(max_tokens=limit), scope=key) as m:
        m.release(m.reserve(0))  # the row exists before the watcher starts
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT spent + reserved FROM budget_graph_budgets WHERE key = %s", (key,)
                ).fetchone()
                peak[0] = max(peak[0], row[0] if row else 0)
                time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    kinds = ["sync", "async", "chunked"]
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["budget_graph._internal.pg_testing", "budget_graph.postgres"])
    with ctx.Pool(processes) as pool:
        results: list[dict[str, Any]] = pool.starmap(
            hammer,
            [
                (conninfo, key, limit, threads, 50, 20, seed, kinds[seed % 3], 300)
                for seed in range(processes)
            ],
        )
    stop.set()
    watcher.join()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT spent, reserved FROM budget_graph_budgets WHERE key = %s", (key,)
        ).fetchone()
        ledger = conn.execute(
            "SELECT sum(units) FROM budget_graph_charges WHERE key = %s", (key,)
        ).fetchone()
    assert row is not None and ledger is not None
    spent, reserved = int(row[0]), int(row[1])
    committed = sum(r["committed"] for r in results)
    assert spent == committed == int(ledger[0]), (spent, committed, ledger)
    assert reserved == 0, f"holds left: {reserved}"
    n = sum(r["reservations"] for r in results)
    over = max(peak[0] - limit, spent - limit, 0)
    return over, (
        f"{processes} processes x {threads} workers (sync, async, chunked), "
        f"{n:,} reservations; limit={limit:,} spent={spent:,} = ledger = workers' "
        f"commits, peak spent+reserved={peak[0]:,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.5, help="per contender per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk", type=int, default=20_000, help="ChunkedMeter chunk units")
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--threads", type=int, default=4, help="workers per process")
    parser.add_argument("--limit", type=int, default=100_000, help="overshoot budget, tokens")
    parser.add_argument(
        "--durable",
        action="store_true",
        help="keep fsync and synchronous_commit on (slower, realistic disk)",
    )
    args = parser.parse_args()

    with start_postgres(durable=args.durable) as server:
        mode = "fsync on" if args.durable else "fsync/synchronous_commit off"
        print(
            f"PostgreSQL on a unix socket, {mode}; {args.concurrency} workers per contender, "
            f"{args.rounds} rounds of {args.seconds}s, medians:"
        )
        rates, cpu = throughput(
            server.create_database("bench"),
            args.concurrency,
            args.seconds,
            args.rounds,
            args.chunk,
            server.data_dir,
        )
        for name, rate in rates.items():
            client_us, server_us = cpu[name]
            print(
                f"  {name:>9}: {rate:,.0f} reserve+commit/s "
                f"({rate / rates['baseline']:.2f}x baseline); CPU per cycle: "
                f"client {client_us:,.0f} us + server {server_us:,.0f} us"
            )
        print(
            f"async meter / async baseline (psycopg's async pool, {args.concurrency} "
            f"coroutines): {rates['async'] / rates['abaseline']:.2f}"
        )
        over, summary = overshoot(
            server.create_database("shared"), args.processes, args.threads, args.limit
        )
        print(summary)
    pg = rates["sync"]
    print(
        f"pg_cycles_per_s={pg:.0f} baseline_per_s={rates['baseline']:.0f} "
        f"ratio={pg / rates['baseline']:.2f} chunked_per_s={rates['chunked']:.0f} "
        f"overshoot_tokens={over}"
    )


if __name__ == "__main__":
    main()
