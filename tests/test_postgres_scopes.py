"""Nested scopes (user ⊂ tenant ⊂ global), the atomic clamp and local chunks, on PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from budget_graph.budget import Budget
from budget_graph.errors import BudgetExceededError
from budget_graph.meter import BaseMeter
from budget_graph.postgres import (
    AsyncPostgresMeter,
    BudgetScope,
    ChunkedMeter,
    PostgresMeter,
    setup,
)

pytestmark = [pytest.mark.postgres, pytest.mark.integration]


@pytest.fixture
def pool(postgres_conninfo: str) -> Iterator[ConnectionPool]:
    with ConnectionPool(
        postgres_conninfo, min_size=1, max_size=8, open=True, kwargs={"autocommit": True}
    ) as p:
        setup(p)
        yield p


def _rows(pool: ConnectionPool) -> dict[str, tuple[int, int]]:
    with pool.connection() as conn:
        rows = conn.execute("SELECT key, spent, reserved FROM budget_graph_budgets").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _chain(pool: ConnectionPool, user: str = "alice") -> PostgresMeter:
    return PostgresMeter.nested(
        pool,
        [
            ("global", Budget(max_tokens=1_000)),
            (BudgetScope.tenant("acme"), Budget(max_tokens=300)),
            (BudgetScope.user(user), Budget(max_tokens=200, reserve=20)),
        ],
    )


def test_a_reservation_holds_on_every_level(pool: ConnectionPool) -> None:
    alice = _chain(pool)
    assert isinstance(alice, BaseMeter)
    assert [m.key for m in alice.chain] == ["user:alice", "tenant:acme", "global"]
    res = alice.reserve(150, node="plan")
    assert _rows(pool) == {"user:alice": (0, 150), "tenant:acme": (0, 150), "global": (0, 150)}
    alice.commit(res, 120)
    assert _rows(pool) == {"user:alice": (120, 0), "tenant:acme": (120, 0), "global": (120, 0)}
    assert (alice.spent, alice.limit, alice.parent.spent) == (120, 200, 120)  # type: ignore[union-attr]
    alice.release(alice.reserve(10))
    assert _rows(pool)["tenant:acme"] == (120, 0)


def test_the_refusal_names_the_level_that_refused(pool: ConnectionPool) -> None:
    alice, bob = _chain(pool, "alice"), _chain(pool, "bob")
    alice.commit(alice.reserve(170), 170)
    with pytest.raises(BudgetExceededError) as info:
        alice.reserve(11)  # alice's own budget: 200 less the reserve of 20
    assert (info.value.scope, info.value.limit, info.value.spent) == ("user:alice", 200, 170)
    with pytest.raises(BudgetExceededError) as info:
        bob.reserve(131)  # bob has 180 to call with, but the tenant only 130 left
    assert str(info.value) == (
        "The next call would exceed the tenant:acme budget of 300 tokens "
        "(spent=170, reserved=0, requested=131, remaining=130)"
    )
    assert _rows(pool)["user:bob"] == (0, 0)  # all or nothing: bob's level holds nothing
    bob.commit(bob.reserve(130), 130)
    assert alice.available() == 0 and bob.available() == 0


def test_the_clamp_is_atomic_and_per_sample(pool: ConnectionPool) -> None:
    alice = _chain(pool)
    got = alice.reserve_output(30, n=3, max_output=100)  # room 180: (180 - 30) // 3 = 50 each
    assert got is not None
    res, per_sample = got
    assert (res.units, per_sample) == (180, 50)
    assert alice.reserve_output(0) is None  # not one unit left: refused, nothing held
    alice.release(res)
    got = alice.reserve_output(30, n=3, max_output=20)
    assert got is not None and (got[0].units, got[1]) == (90, 20)
    final = alice.reserve_output(0, final=True)  # a final answer may use the reserve
    assert final is not None and final[1] == 110


def test_two_users_of_one_tenant_never_overshoot_it(pool: ConnectionPool) -> None:
    users = [_chain(pool, f"u{i}") for i in range(4)]
    spent = [0] * 4

    def work(i: int) -> None:
        for _ in range(40):
            try:
                res = users[i].reserve(9)
            except BudgetExceededError:
                continue
            users[i].commit(res, 9)
            spent[i] += 9

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = _rows(pool)
    assert rows["tenant:acme"] == (sum(spent), 0) and sum(spent) <= 300
    assert 300 - sum(spent) < 9  # ran the tenant down
    assert all(rows[f"user:u{i}"] == (spent[i], 0) for i in range(4))


def test_parents_must_share_the_pool(pool: ConnectionPool, postgres_conninfo: str) -> None:
    with psycopg.connect(postgres_conninfo, autocommit=True) as other:
        parent = PostgresMeter(other, Budget(max_tokens=10), scope="t")
        with pytest.raises(ValueError, match=re.escape("Invalid parent: it must use the same")):
            PostgresMeter(pool, Budget(max_tokens=10), scope="u", parent=parent)
    with pytest.raises(ValueError, match=re.escape("repeats a key")):
        PostgresMeter(
            pool,
            Budget(max_tokens=10),
            scope="t",
            parent=PostgresMeter(pool, Budget(max_tokens=10), scope="t"),
        )


async def test_async_chain(postgres_conninfo: str) -> None:
    meter = await AsyncPostgresMeter.from_conn_string(
        postgres_conninfo, Budget(max_tokens=100), scope="tenant:a"
    )
    try:
        user = meter.child(BudgetScope.user("x"), Budget(max_tokens=50))
        got = await user.areserve_output(10, max_output=100)
        assert got is not None and got[1] == 40
        other = user.for_scope(BudgetScope.user("y"), Budget(max_tokens=80))  # same tenant
        with pytest.raises(BudgetExceededError) as info:
            await other.areserve(51)  # user y has 80, the tenant 50 left
        assert info.value.scope == "tenant:a"
        await user.acommit(got[0], 30)
        assert (user.spent, user.reserved) == (30, 0)  # figures of the last round trip
        assert [s.spent for s in await user.asnapshots()] == [30, 30]
        with pytest.raises(RuntimeError, match=re.escape("would block its event loop")):
            user.reserve(1)
        res = await asyncio.to_thread(user.reserve, 1)  # from a worker thread: fine
        await user.arelease(res)
    finally:
        await meter.aclose()


def test_chunks_hold_the_cap_across_meters(postgres_conninfo: str) -> None:
    key, budget = "tenant:hot", Budget(max_tokens=250)
    meters = [
        PostgresMeter.from_conn_string(postgres_conninfo, budget, scope=key, max_pool_size=2)
        for _ in range(3)
    ]
    a, b, c = (ChunkedMeter(m, chunk_units=100) for m in meters)
    ra = [a.reserve(10) for _ in range(10)]  # one chunk of 100, served locally
    rb = b.reserve(10)
    assert (a.chunks_leased, b.chunks_leased) == (1, 1)
    rc = c.reserve(40)  # only 50 left in the database: a smaller chunk
    with pytest.raises(BudgetExceededError):
        c.reserve(11)  # c's chunk has 10 left and the database nothing
    assert meters[0].snapshot().reserved == 250  # chunks count as held
    for r in ra:
        a.commit(r, 7)
    b.release(rb)
    c.commit(rc, 40)
    for m in (a, b, c):
        m.close()  # settle: charge what was used, return the rest
    snap = meters[0].snapshot()
    assert (snap.spent, snap.reserved) == (110, 0)
    with psycopg.connect(postgres_conninfo, autocommit=True) as conn:
        ledger = conn.execute("SELECT sum(units) FROM budget_graph_charges").fetchone()
    assert ledger is not None and ledger[0] == 110
    for m in meters:
        m.close()


def test_chunked_final_and_clamp(pool: ConnectionPool) -> None:
    inner = PostgresMeter(pool, Budget(max_tokens=100, reserve=10), scope="run:r")
    hot: Any = ChunkedMeter(inner, chunk_units=40)
    first = hot.reserve_output(5, max_output=20)  # leases a chunk of 40
    assert first is not None and (first[0].units, first[1]) == (25, 20)
    second = hot.reserve_output(5, max_output=100)  # clamped to the chunk's 15 left
    assert second is not None and (second[0].units, second[1]) == (15, 10)
    assert hot.chunks_leased == 1
    final = hot.reserve(10, final=True)  # straight to the database
    assert inner.snapshot().reserved == 50
    hot.commit(first[0], 20)
    hot.release(second[0])
    hot.commit(final, 10)
    hot.close()
    assert (inner.spent, inner.reserved) == (30, 0)


async def test_async_graph_on_a_nested_async_meter(postgres_conninfo: str) -> None:
    from langchain_core.messages import HumanMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    from budget_graph.budgeted import budgeted
    from budget_graph.context import budget_config
    from budget_graph.testing import BillingFakeChat

    fake = BillingFakeChat(texts=["one two three four five six seven eight nine ten"])
    llm = budgeted(fake)

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await llm.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    app = builder.compile()
    tenant = await AsyncPostgresMeter.from_conn_string(
        postgres_conninfo, Budget(max_tokens=80), scope=BudgetScope.tenant("acme")
    )
    try:
        user = tenant.child(BudgetScope.user("ann"), Budget(max_tokens=1_000))
        config = budget_config(user, {"configurable": {"thread_id": "t"}})
        with pytest.raises(BudgetExceededError) as info:
            while True:  # until the tenant (the tighter level) refuses a call
                await app.ainvoke({"messages": [HumanMessage("hello")]}, config)
        assert info.value.scope == "tenant:acme"
        levels = await user.asnapshots()
        assert [s.spent for s in levels] == [sum(fake.billed)] * 2
        assert 0 < sum(fake.billed) <= 80 and [s.reserved for s in levels] == [0, 0]
    finally:
        await tenant.aclose()
