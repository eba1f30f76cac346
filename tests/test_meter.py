import asyncio
import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budget_graph import (
    Budget,
    BudgetExceededError,
    Meter,
    ModelPrice,
    Spend,
    Usage,
    UsageOverrunWarning,
)


def test_reserve_commit_release():
    m = Meter(Budget(max_tokens=100))
    r = m.reserve(60)
    assert (m.reserved, m.remaining) == (60, 40)
    with pytest.raises(BudgetExceededError) as err:
        m.reserve(41)
    assert (err.value.limit, err.value.spent, err.value.requested, err.value.scope) == (
        100,
        0,
        41,
        "run",
    )
    assert str(err.value) == (
        "The next call would exceed the run budget of 100 tokens "
        "(spent=0, reserved=60, requested=41, remaining=40)"
    )
    m.commit(r, 42, usage=Usage(input_tokens=30, output_tokens=12, calls=1, units=42))
    assert (m.spent, m.reserved, m.remaining) == (42, 0, 58)
    assert m.spend.calls == 1
    r2 = m.reserve(58)
    m.release(r2)
    m.release(r2)  # idempotent
    assert m.remaining == 58 and m.open_reservations == 0


def test_reserve_is_held_back_for_final_calls():
    m = Meter(Budget(max_tokens=100, reserve=20))
    with pytest.raises(BudgetExceededError):
        m.reserve(81)
    assert m.reserve(100, final=True).units == 100


def test_overrun_is_committed_and_warned():
    m = Meter(Budget(max_tokens=100))
    r = m.reserve(10)
    with pytest.warns(
        UsageOverrunWarning,
        match=re.escape(
            "Call charged 15 units but reserved 10: the provider ignored max_tokens (overrun=5)"
        ),
    ):
        m.commit(r, 15)
    assert m.spent == 15 and m.overrun_units == 5


def test_rebuilt_from_spend():
    m = Meter.from_spend(Budget(max_tokens=100), Spend(units=90))
    with pytest.raises(BudgetExceededError):
        m.reserve(11)
    with pytest.raises(ValueError, match="spent_units must be >= 0"):
        Meter(Budget(max_tokens=10), spent_units=-1)
    with pytest.raises(ValueError, match="units must be >= 0"):
        m.reserve(-1)


@settings(max_examples=30, deadline=None)
@given(
    limit=st.integers(1, 2_000),
    sizes=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), min_size=1, max_size=60),
)
def test_threads_never_overshoot(limit, sizes):
    m = Meter(Budget(max_tokens=limit))
    committed: list[int] = []
    lock = threading.Lock()

    def worker(req: int, actual: int) -> None:
        try:
            r = m.reserve(req)
        except BudgetExceededError:
            return
        charge = min(actual, req)  # a provider that honours max_tokens
        m.commit(r, charge)
        with lock:
            committed.append(charge)

    threads = [threading.Thread(target=worker, args=s) for s in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.spent == sum(committed) <= limit
    assert m.reserved == 0


@settings(max_examples=30, deadline=None)
@given(
    limit=st.integers(1, 2_000),
    sizes=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), min_size=1, max_size=60),
)
def test_asyncio_never_overshoots(limit, sizes):
    m = Meter(Budget(max_tokens=limit))

    async def worker(req: int, actual: int) -> int:
        try:
            r = m.reserve(req)
        except BudgetExceededError:
            return 0
        await asyncio.sleep(0)  # interleave with other tasks while holding the reservation
        m.commit(r, min(actual, req))
        return min(actual, req)

    async def main() -> list[int]:
        return await asyncio.gather(*(worker(*s) for s in sizes))

    results = asyncio.run(main())
    assert m.spent == sum(results) <= limit


def test_reserve_output_clamps_atomically_and_refuses_without_holding() -> None:
    m = Meter(Budget(max_tokens=100, reserve=10))
    assert m.counts_tokens
    prices = {"m": ModelPrice(input_per_mtok=1, output_per_mtok=1)}
    assert not Meter(Budget(count="cost", max_cost_usd=1, prices=prices)).counts_tokens
    held = m.reserve_output(30, n=2, max_output=50)
    assert held is not None
    res, cap = held
    assert cap == 30 and res.units == 30 + 2 * 30  # (90 - 30) // 2 per sample
    assert m.reserve_output(0) is None and m.reserved == 90  # the reserve is for finals
    final = m.reserve_output(0, final=True)
    assert final is not None and final[1] == 10
    assert m.reserve_output(0, final=True) is None and m.refused == 0  # None is no error
    m.commit(res, 70)
    assert m.reserve_output(10, max_output=3) is None  # 100 - 70 - 10 held - 10 reserve - 10 < 1
    m.release(final[0])
    assert m.reserve_output(5, max_output=3)[1] == 3


# --- nested budgets -----------------------------------------------------------------


def _nested() -> tuple[Meter, Meter, Meter]:
    request = Meter(Budget(max_tokens=100), scope="request")
    agent = Meter(Budget(max_tokens=60), scope="researcher", parent=request)
    tool = Meter(Budget(max_tokens=1_000), scope="tool", parent=agent)
    return request, agent, tool


def test_a_nested_reservation_holds_on_every_level_and_commits_once_at_each() -> None:
    request, agent, tool = _nested()
    assert tool.levels == [tool, agent, request]
    r = tool.reserve(50, node="search")
    assert (tool.reserved, agent.reserved, request.reserved) == (50, 50, 50)
    assert tool.available() == 10  # the agent's 60 binds, not the tool's own 1000
    tool.commit(r, 40, usage=Usage(input_tokens=30, output_tokens=10, calls=1, units=40))
    assert [m.spent for m in (tool, agent, request)] == [40, 40, 40]
    assert [m.reserved for m in (tool, agent, request)] == [0, 0, 0]
    for m in (tool, agent, request):
        assert m.spend.calls == 1 and m.spend.by_node["search"].units == 40
    # Spend outside the child reaches the parent only.
    request.commit(request.reserve(30), 30)
    assert (request.spent, agent.spent) == (70, 40)
    r = tool.reserve(5)
    tool.release(r)
    assert [m.reserved for m in (tool, agent, request)] == [0, 0, 0]
    assert [m.open_reservations for m in (tool, agent, request)] == [0, 0, 0]


@pytest.mark.parametrize(
    ("outside", "inside", "scope", "limit", "spent"),
    [(80, 10, "request", 100, 90), (0, 40, "researcher", 60, 40)],
)
def test_the_refusing_level_is_named_and_nothing_is_held(outside, inside, scope, limit, spent):
    request, agent, tool = _nested()
    tool.commit(tool.reserve(inside), inside)  # spent on every level
    request.commit(request.reserve(outside), outside)  # spent on the request only
    with pytest.raises(BudgetExceededError) as err:
        tool.reserve(25)  # fits the tool; one ancestor refuses
    e = err.value
    assert (e.scope, e.limit, e.spent, e.requested) == (scope, limit, spent, 25)
    assert f"the {scope} budget of {limit} tokens" in str(e)
    assert [m.reserved for m in (tool, agent, request)] == [0, 0, 0]  # all or none
    assert [m.refused for m in (tool, agent, request)].count(1) == 1


def test_reserve_output_clamps_to_the_tightest_level() -> None:
    request, agent, tool = _nested()
    request.commit(request.reserve(70), 70)  # request: 30 left; agent: 60 left
    held = tool.reserve_output(10, n=2, max_output=100)
    assert held is not None
    res, out = held
    assert out == 10 and res.units == 30  # (30 - 10) // 2 per sample, from the request
    assert [m.reserved for m in (tool, agent, request)] == [30, 30, 30]
    assert tool.reserve_output(1) is None
    assert [m.reserved for m in (tool, agent, request)] == [30, 30, 30]  # nothing more held
    tool.commit(res, 25)
    assert [m.spent for m in (tool, agent, request)] == [25, 25, 95]


async def test_async_twins_reach_every_level() -> None:
    request, agent, tool = _nested()
    r = await tool.areserve(20)
    held = await tool.areserve_output(5, max_output=7)
    assert held is not None and held[1] == 7
    await tool.acommit(r, 10)
    await tool.arelease(held[0])
    assert [m.spent for m in (tool, agent, request)] == [10, 10, 10]
    assert [m.reserved for m in (tool, agent, request)] == [0, 0, 0]
    with pytest.raises(BudgetExceededError, match="researcher"):
        await tool.areserve(51)


def test_nested_levels_never_overshoot_under_threads() -> None:
    request = Meter(Budget(max_tokens=500), scope="request")
    children = [Meter(Budget(max_tokens=200), scope=f"agent{i}", parent=request) for i in range(4)]

    def work(meter: Meter) -> None:
        for _ in range(200):
            held = meter.reserve_output(3, max_output=5)
            if held is not None:
                meter.commit(held[0], held[0].units)

    threads = [threading.Thread(target=work, args=(c,)) for c in children for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(c.spent <= 200 for c in children)
    assert request.spent == sum(c.spent for c in children) <= 500
    assert request.reserved == 0 and all(c.reserved == 0 for c in children)


def test_commit_rejects_negative_units_and_a_second_commit() -> None:
    m = Meter(Budget(max_tokens=100))
    r = m.reserve(10)
    with pytest.raises(ValueError, match="units must be >= 0"):
        m.commit(r, -1)
    m.commit(r, 5)
    with pytest.raises(ValueError, match="not open"):
        m.commit(r, 5)
    assert m.spent == 5


def test_agent_meter_levels_nest_inside_an_outer_run() -> None:
    from budget_graph.middleware._meters import AgentMeter

    outer = Meter(Budget(max_tokens=100), scope="request")
    agent = AgentMeter.chain(
        [("thread", Budget(max_tokens=500), 300), ("run", Budget(max_tokens=80), 10)],
        parent=outer,
    )
    assert [m.scope for m in agent.meters] == ["run", "thread", "request"]
    assert agent.available() == 70 and agent.binding.scope == "run"
    r = agent.reserve(60)
    agent.commit(r, 50)
    assert agent.committed == 50 and outer.spent == 50 and agent.meters[1].spent == 350
    assert agent.binding.scope == "run"  # 20 left in the run, 50 outside
    with pytest.raises(BudgetExceededError, match="run budget of 80"):
        agent.reserve(21)
    outer.commit(outer.reserve(40), 40)  # the outer run spends elsewhere: 10 left there
    assert agent.binding.scope == "request" and agent.available() == 10
    with pytest.raises(BudgetExceededError, match="request budget of 100"):
        agent.reserve(15)
    assert outer.reserved == 0 and agent.reserved == 0


def test_the_in_process_and_agent_meters_implement_the_protocol() -> None:
    from budget_graph import BaseMeter
    from budget_graph.middleware._meters import AgentMeter

    assert isinstance(Meter(Budget(max_tokens=10)), BaseMeter)
    assert isinstance(AgentMeter.chain([("run", Budget(max_tokens=10), 0)]), BaseMeter)
    assert not isinstance(Budget(max_tokens=10), BaseMeter)
