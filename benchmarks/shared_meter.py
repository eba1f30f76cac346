"""Reservations per second of the in-process Meter and of PostgresMeter, and the
overshoot of one PostgreSQL budget hammered by 8 processes.

Starts its own throwaway PostgreSQL (same helper as the test fixture). Usage:

    python benchmarks/shared_meter.py [--processes 8] [--threads 4] [--durable]

Last line: ``pg_reserve_per_s=<x> overshoot_tokens=<y>`` (y must be 0).
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time

import psycopg

from budget_graph._internal.pg_testing import hammer, start_postgres
from budget_graph.budget import Budget
from budget_graph.meter import Meter
from budget_graph.postgres import PostgresMeter


def bench_in_process(n: int, threads: int) -> tuple[float, float]:
    """(single-thread, multi-thread) reserve+commit cycles per second."""
    meter = Meter(Budget(max_tokens=10**12))
    t0 = time.perf_counter()
    for _ in range(n):
        meter.commit(meter.reserve(10), 8)
    single = n / (time.perf_counter() - t0)

    def loop() -> None:
        for _ in range(n // threads):
            meter.commit(meter.reserve(10), 8)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    multi = (n // threads) * threads / (time.perf_counter() - t0)
    return single, multi


def bench_pg_single(conninfo: str, n: int) -> float:
    """Reserve+commit cycles per second from one process, one thread."""
    with PostgresMeter.from_conn_string(
        conninfo, Budget(max_tokens=10**12), scope="bench:single", max_pool_size=1,
    ) as meter:
        meter.commit(meter.reserve(10), 8)  # warm up: budget row, prepared statements
        t0 = time.perf_counter()
        for _ in range(n):
            meter.commit(meter.reserve(10), 8)
        return n / (time.perf_counter() - t0)


def bench_pg_shared(
    conninfo: str, processes: int, threads: int, limit: int
) -> tuple[float, int, int, int, int]:
    """Hammer one budget from ``processes`` x ``threads`` until it is exhausted.

    Returns (reservations/s, reservations, spent, peak of spent+reserved, committed
    as counted by the workers).
    """
    key = "bench:shared"
    with PostgresMeter.from_conn_string(conninfo, Budget(max_tokens=limit), scope=key) as m:
        assert m.remaining == limit
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute("SELECT spent + reserved FROM budget_graph_budgets "
                                   "WHERE key = %s", (key,)).fetchone()
                peak[0] = max(peak[0], row[0] if row else 0)
                time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["budget_graph._internal.pg_testing", "budget_graph.postgres"])
    with ctx.Pool(processes) as pool:
        pool.apply(time.sleep, (0,))  # start the workers before the clock
        t0 = time.perf_counter()
        results = pool.starmap(
            hammer, [(conninfo, key, limit, threads, 50, 20, seed) for seed in range(processes)])
        elapsed = time.perf_counter() - t0
    stop.set()
    watcher.join()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT spent FROM budget_graph_budgets WHERE key = %s",
                           (key,)).fetchone()
    assert row is not None
    reservations = sum(r["reservations"] for r in results)
    committed = sum(r["committed"] for r in results)
    return reservations / elapsed, reservations, int(row[0]), peak[0], committed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4, help="threads per process")
    parser.add_argument("--limit", type=int, default=300_000, help="shared budget, tokens")
    parser.add_argument("--single-n", type=int, default=3_000)
    parser.add_argument("--durable", action="store_true",
                        help="keep fsync and synchronous_commit on (slower, realistic disk)")
    args = parser.parse_args()

    single, multi = bench_in_process(200_000, args.threads)
    print(f"in-process Meter: {single:,.0f} reserve+commit/s (1 thread), "
          f"{multi:,.0f}/s ({args.threads} threads)")
    with start_postgres(durable=args.durable) as server:
        conninfo = server.create_database("bench")
        mode = "fsync on" if args.durable else "fsync/synchronous_commit off"
        pg_single = bench_pg_single(conninfo, args.single_n)
        print(f"PostgresMeter: {pg_single:,.0f} reserve+commit/s (1 process, 1 thread, "
              f"unix socket, {mode})")
        rate, n, spent, peak, committed = bench_pg_shared(
            conninfo, args.processes, args.threads, args.limit)
        overshoot = max(spent - args.limit, 0)
        print(f"PostgresMeter shared: {args.processes} processes x {args.threads} threads, "
              f"{n:,} reservations at {rate:,.0f}/s; limit={args.limit:,} spent={spent:,} "
              f"(workers committed {committed:,}), peak spent+reserved={peak:,}")
        assert spent == committed, "the database lost or invented a commit"
    print(f"pg_reserve_per_s={rate:.0f} overshoot_tokens={overshoot}")


if __name__ == "__main__":
    main()
