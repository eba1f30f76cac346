"""Start a throwaway PostgreSQL server (tests and benchmarks), and a load worker.

Not part of the public API. Uses the server binaries of the local PostgreSQL
install (Debian's ``postgresql`` package: ``initdb`` and ``pg_ctl``, found on
``PATH`` or under ``/usr/lib/postgresql/<version>/bin``). ``initdb`` refuses to
run as root, so as root the data directory is handed to the ``postgres`` user
and the binaries run through ``runuser``.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PostgresNotInstalledError",
    "TempPostgres",
    "find_pg_binary",
    "hammer",
    "hold_until_killed",
    "start_postgres",
]


class PostgresNotInstalledError(RuntimeError):
    """The PostgreSQL server binaries are missing."""


def find_pg_binary(name: str) -> str:
    """Path of a PostgreSQL server binary (``initdb``, ``pg_ctl``) or raise."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    raise PostgresNotInstalledError(
        f"PostgreSQL server binary {name!r} not found on PATH nor in "
        "/usr/lib/postgresql/*/bin; install it (Debian/Ubuntu: apt-get install -y postgresql)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TempPostgres:
    """A running throwaway server; :meth:`stop` shuts it down and deletes its files."""

    base_dir: Path
    port: int
    user: str
    pg_ctl: str
    run_as: list[str] = field(default_factory=list)
    _stopped: bool = False

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq connection string for ``dbname`` over the Unix socket."""
        return f"host={self.socket_dir} port={self.port} user={self.user} dbname={dbname}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its connection string."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.conninfo(name)

    def restart(self) -> None:
        """Restart the server (fast mode: open connections are cut, as in a failover)."""
        _run(
            [
                *self.run_as,
                self.pg_ctl,
                "-D",
                str(self.data_dir),
                "-l",
                str(self.base_dir / "server.log"),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "restart",
            ]
        )

    def stop(self) -> None:
        """Stop the server (immediate mode: it is throwaway) and remove its files."""
        if self._stopped:
            return
        self._stopped = True
        subprocess.run(
            [*self.run_as, self.pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            check=False,
            timeout=60,
        )
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> TempPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_postgres(*, durable: bool = False, max_connections: int = 200) -> TempPostgres:
    """Initialise a data directory in a temp dir and start a server on a free port.

    Args:
        durable: Keep ``fsync`` and ``synchronous_commit`` on. Off by default: the
            server is thrown away, and tests run faster without flushing.
        max_connections: The server's ``max_connections``.

    Raises:
        PostgresNotInstalledError: The server binaries are not installed.
    """
    initdb = find_pg_binary("initdb")
    pg_ctl = find_pg_binary("pg_ctl")
    base = Path(tempfile.mkdtemp(prefix="budget_graph_pg_"))
    run_as: list[str] = []
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.geteuid() == 0:
        try:
            pg_user = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresNotInstalledError(
                "running as root, and there is no 'postgres' user to run initdb as"
            ) from exc
        os.chown(base, pg_user.pw_uid, pg_user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
        user = "postgres"
    (base / "sock").mkdir()
    if run_as:
        os.chown(base / "sock", pwd.getpwnam("postgres").pw_uid, -1)
    server = TempPostgres(base_dir=base, port=_free_port(), user=user, pg_ctl=pg_ctl, run_as=run_as)
    try:
        _run(
            [
                *run_as,
                initdb,
                "-D",
                str(server.data_dir),
                "-U",
                user,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-locale",
            ]
        )
        opts = [
            f"-p {server.port}",
            f"-k {server.socket_dir}",
            "-c listen_addresses=''",
            f"-c max_connections={max_connections}",
        ]
        if not durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        _run(
            [
                *run_as,
                pg_ctl,
                "-D",
                str(server.data_dir),
                "-l",
                str(base / "server.log"),
                "-o",
                " ".join(opts),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
    except BaseException:
        log = base / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        server.stop()
        if tail:
            raise RuntimeError(f"PostgreSQL failed to start; server log tail:\n{tail}") from None
        raise
    return server


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )


def hammer(
    conninfo: str,
    scope_key: str,
    limit: int,
    threads: int = 4,
    max_units: int = 50,
    stop_after_refusals: int = 20,
    seed: int = 0,
    kind: str = "sync",
    chunk_units: int = 500,
) -> dict[str, int]:
    """Load worker: reserve/commit on one shared budget until it is exhausted.

    Runs in a child process (it opens its own pool). Each of ``threads`` workers
    (threads; coroutines for ``kind="async"``) reserves a random 1..``max_units``
    units, then commits a random part of it (sometimes releases), and stops after
    ``stop_after_refusals`` refusals. ``kind`` is ``"sync"`` (PostgresMeter),
    ``"async"`` (AsyncPostgresMeter) or ``"chunked"`` (ChunkedMeter of
    ``chunk_units``). Returns what this process committed and how many reservations
    it made, for the caller to check against the database.
    """
    if kind == "async":
        return asyncio.run(
            _ahammer(conninfo, scope_key, limit, threads, max_units, stop_after_refusals, seed)
        )
    from budget_graph.budget import Budget
    from budget_graph.errors import BudgetExceededError
    from budget_graph.postgres import ChunkedMeter, PostgresMeter

    totals = {"committed": 0, "reservations": 0, "refused": 0, "released": 0}
    lock = threading.Lock()
    inner = PostgresMeter.from_conn_string(
        conninfo,
        Budget(max_tokens=limit),
        scope=scope_key,
        max_pool_size=threads,
        setup=False,
    )
    meter: Any = ChunkedMeter(inner, chunk_units=chunk_units) if kind == "chunked" else inner

    def work(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        committed = reservations = refused = released = 0
        while refused < stop_after_refusals:
            want = rng.randint(1, max_units)
            try:
                res = meter.reserve(want)
            except BudgetExceededError:
                refused += 1
                continue
            reservations += 1
            if rng.random() < 0.1:
                meter.release(res)
                released += 1
            else:
                used = rng.randint(max(want // 2, 1), want)
                meter.commit(res, used)
                committed += used
        with lock:
            totals["committed"] += committed
            totals["reservations"] += reservations
            totals["refused"] += refused
            totals["released"] += released

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if kind == "chunked":
        meter.close()
    totals["elapsed_us"] = int((time.perf_counter() - started) * 1e6)
    inner.close()
    return totals


async def _ahammer(
    conninfo: str,
    scope_key: str,
    limit: int,
    tasks: int,
    max_units: int,
    stop_after_refusals: int,
    seed: int,
) -> dict[str, int]:
    from budget_graph.budget import Budget
    from budget_graph.errors import BudgetExceededError
    from budget_graph.postgres import AsyncPostgresMeter

    totals = {"committed": 0, "reservations": 0, "refused": 0, "released": 0}
    meter = await AsyncPostgresMeter.from_conn_string(
        conninfo, Budget(max_tokens=limit), scope=scope_key, max_pool_size=tasks, setup=False
    )

    async def work(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        refused = 0
        while refused < stop_after_refusals:
            want = rng.randint(1, max_units)
            try:
                res = await meter.areserve(want)
            except BudgetExceededError:
                refused += 1
                totals["refused"] += 1
                continue
            totals["reservations"] += 1
            if rng.random() < 0.1:
                await meter.arelease(res)
                totals["released"] += 1
            else:
                used = rng.randint(max(want // 2, 1), want)
                await meter.acommit(res, used)
                totals["committed"] += used

    started = time.perf_counter()
    await asyncio.gather(*(work(i) for i in range(tasks)))
    totals["elapsed_us"] = int((time.perf_counter() - started) * 1e6)
    await meter.aclose()
    return totals


def hold_until_killed(
    conninfo: str,
    scope_key: str,
    limit: int,
    commit_units: int,
    hold_units: int,
    lease_s: float,
    ready: Any,
) -> None:
    """Worker to be SIGKILLed: commit ``commit_units``, then hold ``hold_units`` forever.

    Sends ``(lease_id, committed)`` through the ``ready`` pipe end once it holds
    the reservation.
    """
    from budget_graph.budget import Budget
    from budget_graph.postgres import PostgresMeter

    meter = PostgresMeter.from_conn_string(
        conninfo,
        Budget(max_tokens=limit),
        scope=scope_key,
        lease_s=lease_s,
        setup=False,
    )
    done = meter.reserve(commit_units)
    meter.commit(done, commit_units)
    held = meter.reserve(hold_units)
    ready.send((held.id, commit_units))
    while True:
        time.sleep(60)
