"""PostgresMeter against a real PostgreSQL server (started by tests/fixtures/postgres.py)."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from budget_graph._internal.pg_testing import hammer, hold_until_killed
from budget_graph.budget import Budget, Usage
from budget_graph.errors import BudgetExceededError, UsageOverrunWarning
from budget_graph.meter import BaseMeter
from budget_graph.postgres import (
    MIGRATIONS,
    BudgetScope,
    LeasedReservation,
    LeaseExpiredWarning,
    PostgresMeter,
)


def _mp() -> Any:
    # forkserver: children start from a clean process (no inherited pool threads
    # or locks) and the preloaded modules are imported once, not per child.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["budget_graph._internal.pg_testing", "budget_graph.postgres"])
    return ctx


def _one(conninfo: str, sql: str, *args: Any) -> Any:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(sql, args).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


@pytest.fixture
def meter(postgres_conninfo: str) -> Iterator[PostgresMeter]:
    with PostgresMeter.from_conn_string(
        postgres_conninfo,
        Budget(max_tokens=100, reserve=10),
        scope=BudgetScope.thread("t1"),
    ) as m:
        yield m


# --- scopes (no database) -------------------------------------------------------------


def test_scope_keys() -> None:
    at = datetime(2025, 1, 29, 17, 5)  # a Wednesday
    assert BudgetScope.run("r1").key(at) == "run:r1"
    assert BudgetScope.thread("t9").key(at) == "thread:t9"
    assert BudgetScope.user("alice", period="day").key(at) == "user:alice@day:2025-01-29"
    assert BudgetScope.tenant("acme", period="week").key(at) == "tenant:acme@week:2025-01-27"
    assert BudgetScope.tenant("acme", period="month").key(at) == "tenant:acme@month:2025-01-01"
    assert BudgetScope.user("bob", period="hour").key(at) == "user:bob@hour:2025-01-29T17:00"
    # A new day is a new budget; the zone decides when the day starts.
    late = datetime(2025, 1, 29, 23, 30)
    assert BudgetScope.user("a", period="day").key(late) == "user:a@day:2025-01-29"
    tokyo = BudgetScope.user("a", period="day", tz="Asia/Tokyo")
    assert tokyo.key(datetime.fromisoformat("2025-01-29T23:30+00:00")) == "user:a@day:2025-01-30"


def test_scope_from_config() -> None:
    config = {"configurable": {"thread_id": "abc"}, "run_id": "r-1"}
    assert BudgetScope.from_config(config).key() == "thread:abc"
    assert BudgetScope.from_config(config, "run").key() == "run:r-1"
    with pytest.raises(ValueError, match=re.escape("Invalid config: no configurable.thread_id")):
        BudgetScope.from_config({})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "Team", "id": "x"}, "Invalid kind: 'Team'"),
        ({"kind": "team", "id": ""}, "Invalid id: ''"),
        ({"kind": "team", "id": "x", "period": "year"}, "Invalid period: 'year'"),
    ],
)
def test_scope_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        BudgetScope(**kwargs)


def test_meter_validation() -> None:
    pool = ConnectionPool("dbname=unused", open=False)
    with pytest.raises(ValueError, match=re.escape("Invalid lease_s: 0")):
        PostgresMeter(pool, Budget(max_tokens=10), scope="k", lease_s=0)
    with pytest.raises(ValueError, match=re.escape("Invalid scope: ''")):
        PostgresMeter(pool, Budget(max_tokens=10), scope="")


# --- one process ----------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.integration
def test_reserve_commit_release(meter: PostgresMeter) -> None:
    assert isinstance(meter, BaseMeter)
    r = meter.reserve(50, node="plan")
    assert (meter.limit, meter.spent, meter.reserved, meter.remaining) == (100, 0, 50, 50)
    assert meter.available() == 40 and meter.available(final=True) == 50
    with pytest.raises(BudgetExceededError) as info:
        meter.reserve(41)
    assert str(info.value) == (
        "The next call would exceed the thread:t1 budget of 100 tokens "
        "(spent=0, reserved=50, requested=41, remaining=50)"
    )
    assert (info.value.limit, info.value.spent, info.value.requested, info.value.scope) == (
        100,
        0,
        41,
        "thread:t1",
    )
    final = meter.reserve(50, final=True)  # the reserve is for final answers
    meter.commit(r, 30, usage=Usage(input_tokens=10, output_tokens=20, calls=1, units=30))
    meter.commit(r, 30)  # a repeated commit charges nothing
    meter.release(final)
    meter.release(final)
    assert (meter.spent, meter.reserved, meter.refused) == (30, 0, 1)
    assert meter.spend.by_node["plan"].output_tokens == 20
    with pytest.raises(ValueError, match=re.escape("units must be >= 0 (got -1)")):
        meter.reserve(-1)


@pytest.mark.postgres
@pytest.mark.integration
def test_overrun_is_charged_and_warns(meter: PostgresMeter) -> None:
    r = meter.reserve(10)
    with pytest.warns(UsageOverrunWarning, match=re.escape("(overrun=5)")):
        meter.commit(r, 15)
    assert meter.spent == 15 and meter.overrun_units == 5


@pytest.mark.postgres
@pytest.mark.integration
def test_scopes_are_separate_budgets(meter: PostgresMeter) -> None:
    other = meter.for_scope(BudgetScope.thread("t2"))
    meter.commit(meter.reserve(80), 80)
    assert other.remaining == 100
    with pytest.raises(BudgetExceededError):
        meter.reserve(20)
    other.reserve(20)


def test_update_limit_false_keeps_the_rows_limit(meter: PostgresMeter) -> None:
    meter.release(meter.reserve(0))  # the row: limit 100, reserve 10
    # the row's limit rules, not this budget's
    fixed = PostgresMeter(meter.conn, Budget(max_tokens=1_000), scope=meter.key, update_limit=False)
    held = fixed.reserve_output(5, max_output=500)
    assert held is not None and held[1] == 85  # 100 - 10 (reserve) - 5: the row's room
    assert (fixed.limit, meter.snapshot().limit) == (100, 100)
    with pytest.raises(BudgetExceededError, match="budget of 100 tokens"):
        fixed.reserve(1)
    final = fixed.reserve(10, final=True)  # the reserve, for a final answer
    fixed.commit(final, 10)
    fixed.commit(held[0], 90)
    assert (meter.snapshot().spent, meter.snapshot().reserved) == (100, 0)


@pytest.mark.postgres
def test_a_meter_writes_its_limit_with_its_first_reservation_of_a_key(
    postgres_conninfo: str,
) -> None:
    """The hot reservation sends no limits: a meter writes its budget's once per key."""
    limit = "SELECT limit_units, reserve_units FROM budget_graph_budgets WHERE key = %s"
    with PostgresMeter.from_conn_string(
        postgres_conninfo, Budget(max_tokens=100), scope="project:limits"
    ) as old:
        old.release(old.reserve(1))
        assert _one(postgres_conninfo, limit, old.key) == (100, 0)
        new = PostgresMeter(old.conn, Budget(max_tokens=300, reserve=20), scope=old.key)
        new.release(new.reserve(1))  # a deploy's new meter writes its budget
        assert _one(postgres_conninfo, limit, old.key) == (300, 20)
        old.commit(old.reserve(150), 150)  # the old meter does not write 100 back...
        assert _one(postgres_conninfo, limit, old.key) == (300, 20)
        with pytest.raises(BudgetExceededError, match="budget of 300 tokens"):
            old.reserve(140)  # ...and follows the row: 300 - 20 - 150 leaves 130
        held = old.reserve(130)
        lease = held.expires_at
        assert lease is not None and 290 < (lease - datetime.now(UTC)).total_seconds() <= 300
        old.release(held)


@pytest.mark.postgres
@pytest.mark.integration
def test_expired_lease_is_reclaimed_and_late_commit_charged(postgres_conninfo: str) -> None:
    # ``m`` never renews (a worker that stopped renewing); ``live`` renews in the background.
    with PostgresMeter.from_conn_string(
        postgres_conninfo,
        Budget(max_tokens=100),
        scope="user:u",
        lease_s=0.2,
        renew=False,
    ) as m:
        live = PostgresMeter(m.conn, Budget(max_tokens=100), scope="user:u", lease_s=1.0)
        stale = m.reserve(80)
        kept = live.reserve(10)
        deadline = time.monotonic() + 30
        while m.available() < 80 and time.monotonic() < deadline:
            time.sleep(0.05)
        fresh = m.reserve(80)  # the stale lease's units came back, the renewed one's did not
        assert m.snapshot().reserved == 90
        with pytest.warns(LeaseExpiredWarning, match=re.escape("after lease")):
            m.commit(stale, 40)  # billed, so charged even though reclaimed
        m.commit(fresh, 50)
        live.commit(kept, 10)  # renewed all along: not late
        assert m.snapshot().spent == 100 and m.late_commits >= 1 and live.late_commits == 0
        assert not m.renew(stale)
        late = _one(postgres_conninfo, "SELECT count(*) FROM budget_graph_charges WHERE late")
        assert late >= 1


@pytest.mark.postgres
@pytest.mark.integration
def test_plain_connection_needs_autocommit(postgres_conninfo: str) -> None:
    with psycopg.connect(postgres_conninfo) as conn:
        with pytest.raises(ValueError, match="autocommit=True"):
            PostgresMeter(conn, Budget(max_tokens=10), scope="k")
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        m = PostgresMeter(conn, Budget(max_tokens=10), scope="k")
        m.setup()
        m.commit(m.reserve(7), 7)
        assert m.remaining == 3


@pytest.mark.postgres
@pytest.mark.integration
def test_setup_is_versioned_and_shares_the_db_with_the_checkpointer(
    postgres_conninfo: str,
) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    with ConnectionPool(
        postgres_conninfo,
        max_size=4,
        open=True,
        kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": 0},
    ) as pool:
        PostgresSaver(pool).setup()  # type: ignore[arg-type]
        meter = PostgresMeter(pool, Budget(max_tokens=50), scope=BudgetScope.run("r"))
        threads = [threading.Thread(target=meter.setup) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        meter.setup()
        meter.commit(meter.reserve(5), 5)  # a dict_row pool works too
        assert meter.spent == 5
        with pool.connection() as conn:
            versions = [
                r["v"]
                for r in conn.execute("SELECT v FROM budget_graph_migrations ORDER BY v").fetchall()
            ]
            tables = {
                r["tablename"]
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "UNION ALL SELECT viewname FROM pg_views WHERE schemaname = 'public'"
                ).fetchall()
            }
    assert versions == list(range(len(MIGRATIONS)))
    assert {
        "checkpoints",
        "checkpoint_writes",
        "budget_graph_budgets",
        "budget_graph_leases",
        "budget_graph_charges",
    } <= tables


@pytest.mark.postgres
@pytest.mark.integration
def test_setup_migrates_open_leases_and_ledger_into_one_table(postgres_conninfo: str) -> None:
    merged = 11  # the first migration of the merged lease/charge table
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        for v, stmt in enumerate(MIGRATIONS[:merged]):  # a database set up before the merge
            conn.execute(stmt)
            conn.execute("INSERT INTO budget_graph_migrations (v) VALUES (%s)", (v,))
        conn.execute(
            "INSERT INTO budget_graph_budgets (key, limit_units, spent, reserved) "
            "VALUES ('k', 100, 30, 40)"
        )
        conn.execute(  # charged before the upgrade
            "INSERT INTO budget_graph_charges (lease_id, key, units, reserved_units, late) "
            "VALUES (1, 'k', 30, 35, false)"
        )
        conn.execute(  # in flight across the upgrade
            "INSERT INTO budget_graph_leases (id, key, units, expires_at) "
            "VALUES (2, 'k', 40, now() + interval '1 hour')"
        )
    meter = PostgresMeter.from_conn_string(postgres_conninfo, Budget(max_tokens=100), scope="k")
    with meter:
        assert _one(postgres_conninfo, "SELECT max(v) FROM budget_graph_migrations") == (
            len(MIGRATIONS) - 1
        )
        assert _one(postgres_conninfo, "SELECT id, units FROM budget_graph_leases") == (2, 40)
        with pytest.raises(BudgetExceededError):
            meter.reserve(31)  # the lease still holds its 40
        old = LeasedReservation(2, 40, False, None, key="k", keys=("k",))
        meter.commit(old, 25)
        meter.commit(old, 25)  # a repeat charges nothing
        assert (meter.spent, meter.reserved) == (55, 0)
        ledger = "SELECT sum(units), bool_or(late) FROM budget_graph_charges"
        assert _one(postgres_conninfo, ledger) == (55, False)
        assert _one(postgres_conninfo, "SELECT count(*) FROM budget_graph_leases") == 0


# --- many processes -------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.integration
def test_eight_processes_never_overspend(postgres_conninfo: str) -> None:
    limit, key = 30_000, "tenant:shared"
    with PostgresMeter.from_conn_string(
        postgres_conninfo,
        Budget(max_tokens=limit),
        scope=key,
    ) as m:
        m.release(m.reserve(0))  # setup() and the budget row
        assert m.remaining == limit
    peak = {"over": 0, "samples": 0}
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT spent, reserved FROM budget_graph_budgets WHERE key = %s", (key,)
                ).fetchone()
                if row is None:
                    peak["over"] = 1 << 62  # fail the test, visibly
                    return
                peak["over"] = max(peak["over"], row[0] + row[1] - limit)
                peak["samples"] += 1

    watcher = threading.Thread(target=watch)
    watcher.start()
    ctx = _mp()
    with ctx.Pool(8) as pool:
        results = pool.starmap(
            hammer, [(postgres_conninfo, key, limit, 4, 50, 20, seed) for seed in range(8)]
        )
    stop.set()
    watcher.join()

    committed = sum(r["committed"] for r in results)
    spent, reserved = _one(
        postgres_conninfo, "SELECT spent, reserved FROM budget_graph_budgets WHERE key = %s", key
    )
    ledger = _one(
        postgres_conninfo, "SELECT sum(units) FROM budget_graph_charges WHERE key = %s", key
    )
    open_leases = _one(postgres_conninfo, "SELECT count(*) FROM budget_graph_leases")
    assert sum(r["reservations"] for r in results) > 1000
    assert all(r["reservations"] > 0 for r in results)  # every process got some
    assert spent == committed == ledger
    assert spent <= limit and peak["over"] <= 0 and peak["samples"] > 0
    assert reserved == 0 and open_leases == 0
    assert limit - spent < 50  # it ran the budget down to less than one request


@pytest.mark.postgres
@pytest.mark.integration
def test_sigkilled_worker_lease_expires(postgres_conninfo: str) -> None:
    limit, key = 1_000, "tenant:acme@day:2025-01-29"
    with PostgresMeter.from_conn_string(
        postgres_conninfo,
        Budget(max_tokens=limit),
        scope=key,
    ) as meter:
        ctx = _mp()
        parent_end, child_end = ctx.Pipe()
        worker = ctx.Process(
            target=hold_until_killed,
            args=(postgres_conninfo, key, limit, 300, 500, 3.0, child_end),
        )
        worker.start()
        assert parent_end.poll(60), "worker did not reserve in time"
        lease_id, committed = parent_end.recv()
        # Read the row directly: the meter's reads would reclaim an expired lease.
        assert _one(
            postgres_conninfo,
            "SELECT spent, reserved FROM budget_graph_budgets WHERE key = %s",
            key,
        ) == (300, 500)
        os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
        worker.join(30)
        assert worker.exitcode == -signal.SIGKILL

        deadline = time.monotonic() + 60
        while meter.available() < 700 and time.monotonic() < deadline:
            time.sleep(0.1)
        r = meter.reserve(700)  # the dead worker's 500 came back
        assert meter.spent == committed == 300  # its committed spend stayed
        meter.release(r)
        assert meter.remaining == 700
        assert (
            _one(
                postgres_conninfo,
                "SELECT count(*) FROM budget_graph_leases WHERE id = %s",
                lease_id,
            )
            == 0
        )


@pytest.mark.postgres
@pytest.mark.integration
def test_graph_with_budgeted_model_on_a_shared_meter(postgres_conninfo: str) -> None:
    from langchain_core.messages import HumanMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    from budget_graph.budgeted import budgeted
    from budget_graph.context import budget_config
    from budget_graph.testing import BillingFakeChat

    fake = BillingFakeChat(texts=["one two three four five six seven eight nine ten"])
    llm = budgeted(fake)

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_edge(START, "agent")
    graph.add_edge("agent", END)
    app = graph.compile()
    scope = BudgetScope.from_config({"configurable": {"thread_id": "conv-1"}})
    with PostgresMeter.from_conn_string(
        postgres_conninfo,
        Budget(max_tokens=60),
        scope=scope,
    ) as meter:
        config = budget_config(meter, {"configurable": {"thread_id": "conv-1"}})
        app.invoke({"messages": [HumanMessage("hello")]}, config)
        assert meter.spent == sum(fake.billed) > 0
        assert meter.spend.by_node["agent"].calls == 1
        assert meter.reserved == 0
        while True:  # run until the shared budget refuses a call
            try:
                app.invoke({"messages": [HumanMessage("hello")]}, config)
            except BudgetExceededError as exc:
                assert exc.scope == "thread:conv-1"
                break
        assert meter.spent == sum(fake.billed) <= 60


@pytest.mark.postgres
@pytest.mark.integration
def test_deployment_doc_examples_run(postgres_conninfo: str) -> None:
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "deployment.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", text, flags=re.S))
    namespace: dict[str, Any] = {"DB_URI": postgres_conninfo}
    try:
        exec(compile(code, "docs/deployment.md", "exec"), namespace)
        assert namespace["alice"].spent <= 2_000
    finally:
        if "pool" in namespace:
            namespace["pool"].close()


@pytest.mark.postgres
def test_deleting_a_budget_row_deletes_its_charges(postgres_conninfo: str) -> None:
    """The charges have no foreign key (the hot path skips its check); a trigger cascades."""
    with PostgresMeter.from_conn_string(
        postgres_conninfo, Budget(max_tokens=100), scope="project:deleted"
    ) as gone:
        kept = gone.for_scope("project:kept")
        gone.commit(gone.reserve(10), 7)
        kept.commit(kept.reserve(10), 5)
        held = gone.reserve(3)
        with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
            conn.execute("DELETE FROM budget_graph_budgets WHERE key = %s", (gone.key,))
        count = "SELECT count(*) FROM budget_graph_charges WHERE key = %s"
        assert _one(postgres_conninfo, count, gone.key) == 0  # its charge and open lease
        assert _one(postgres_conninfo, count, kept.key) == 1
        gone.release(held)  # nothing left to release: a no-op
