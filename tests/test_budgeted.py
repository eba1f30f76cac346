import asyncio

import pytest
from langchain_core.tools import tool

from budget_graph import Budget, BudgetExceededError, Meter, budgeted
from tests.core_fakes import BillingFakeChat, ExplodingChat

TEXT = "one two three four five six seven eight nine ten"


def test_commits_real_usage_and_clamps_max_tokens():
    fake = BillingFakeChat(texts=[TEXT])
    meter = Meter(Budget(max_tokens=30))
    llm = budgeted(fake, meter=meter)
    msg = llm.invoke("hi")
    assert meter.spent == fake.billed[0] == msg.usage_metadata["total_tokens"]
    # The second call can only get what is left after its prompt: output is clamped.
    msg2 = llm.invoke("hi")
    assert meter.spent <= 30
    assert msg2.usage_metadata["output_tokens"] < msg.usage_metadata["output_tokens"]
    with pytest.raises(BudgetExceededError, match="would exceed the run budget of 30 tokens"):
        llm.invoke("hi")
    assert meter.spent == sum(fake.billed) and meter.reserved == 0
    assert meter.refused == 1  # one refused call counts once


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream"])
async def test_sync_async_and_stream_commit_the_same(mode):
    fake = BillingFakeChat(texts=[TEXT])
    meter = Meter(Budget(max_tokens=1_000))
    llm = budgeted(fake, meter=meter)
    if mode == "invoke":
        llm.invoke("hello")
    elif mode == "ainvoke":
        await llm.ainvoke("hello")
    elif mode == "stream":
        for _ in llm.stream("hello"):
            pass
    else:
        async for _ in llm.astream("hello"):
            pass
    assert meter.spent == fake.billed[0] == meter.spend.total_tokens
    assert meter.spend.estimated_calls == 0


def test_no_usage_is_counted_locally_and_marked_estimated():
    fake = BillingFakeChat(texts=[TEXT], report_usage=False)
    meter = Meter(Budget(max_tokens=1_000))
    budgeted(fake, meter=meter).invoke("hello")
    assert meter.spend.estimated_calls == 1
    assert meter.spent == fake.billed[0]  # our count matches the OpenAI framing exactly


def test_failed_call_releases_its_reservation():
    meter = Meter(Budget(max_tokens=100))
    with pytest.raises(ConnectionError):
        budgeted(ExplodingChat(), meter=meter).invoke("hi")
    assert (meter.spent, meter.reserved, meter.open_reservations) == (0, 0, 0)


def test_output_mode_counts_only_generated_tokens():
    fake = BillingFakeChat(texts=[TEXT])
    meter = Meter(Budget(max_tokens=5, count="output"))
    msg = budgeted(fake, meter=meter).invoke("a long prompt " * 50)
    assert msg.usage_metadata["output_tokens"] == 5 == meter.spent


def test_per_call_cap_and_final_reserve():
    fake = BillingFakeChat(texts=[TEXT])
    meter = Meter(Budget(max_tokens=100, per_call_max_tokens=3, reserve=60))
    msg = budgeted(fake, meter=meter).invoke("hi")
    assert msg.usage_metadata["output_tokens"] == 3
    with pytest.raises(BudgetExceededError):  # 40 - 11 left for ordinary calls after two
        for _ in range(5):
            budgeted(fake, meter=meter).invoke("hi")
    final = budgeted(fake, meter=meter, final=True).invoke("hi")  # may use the reserve
    assert final.usage_metadata["output_tokens"] == 3
    assert meter.spent <= 100


def test_bind_tools_keeps_the_budget():
    from langchain_core.language_models import GenericFakeChatModel

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    class ToolFake(GenericFakeChatModel):
        def bind_tools(self, tools, **kwargs):
            return self.bind(tools=[t.name for t in tools], **kwargs)

    from langchain_core.messages import AIMessage

    fake = ToolFake(
        messages=iter(
            [
                AIMessage(
                    content="x",
                    usage_metadata={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
                )
            ]
        )
    )
    meter = Meter(Budget(max_tokens=1_000))
    bound = budgeted(fake, meter=meter).bind_tools([add])
    bound.invoke("hi")
    assert meter.spent == 2


class FlakyChat(BillingFakeChat):
    """Fails the first ``failures`` calls like a provider answering 429 (unbilled)."""

    failures: int = 2

    def _maybe_fail(self):
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("429 Too Many Requests")

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self._maybe_fail()
        return super()._generate(messages, stop, run_manager, **kwargs)

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        self._maybe_fail()
        yield from super()._stream(messages, stop, run_manager, **kwargs)


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream"])
async def test_retry_releases_failed_attempts_and_commits_once(mode):
    from budget_graph import RetryPolicy, add_observer, remove_observer

    events = []

    class Obs:
        def event(self, name, attrs):
            events.append((name, attrs["attempt"]))

    obs = Obs()
    add_observer(obs)
    try:
        fake = FlakyChat(texts=[TEXT])
        meter = Meter(Budget(max_tokens=1_000))
        llm = budgeted(fake, meter=meter, retry=RetryPolicy(initial_wait_s=0, max_wait_s=0))
        if mode == "invoke":
            llm.invoke("hi")
        elif mode == "ainvoke":
            await llm.ainvoke("hi")
        else:
            list(llm.stream("hi"))
    finally:
        remove_observer(obs)
    assert meter.spent == fake.billed[0] and len(fake.billed) == 1  # billed once, counted once
    assert meter.reserved == 0 and meter.open_reservations == 0
    assert events == [("budget.retry", 1), ("budget.retry", 2)]


def test_retry_gives_up_and_never_retries_budget_refusals():
    from budget_graph import RetryPolicy

    meter = Meter(Budget(max_tokens=1_000))
    llm = budgeted(
        FlakyChat(texts=[TEXT], failures=9),
        meter=meter,
        retry=RetryPolicy(max_attempts=3, initial_wait_s=0, max_wait_s=0),
    )
    with pytest.raises(ConnectionError):
        llm.invoke("hi")
    assert meter.spent == 0 and meter.reserved == 0
    tiny = budgeted(
        FlakyChat(texts=[TEXT], failures=0),
        meter=Meter(Budget(max_tokens=3)),
        retry=RetryPolicy(initial_wait_s=0),
    )
    with pytest.raises(BudgetExceededError):
        tiny.invoke("hi")
    with pytest.raises(ValueError, match=r"max_attempts must be >= 1 \(got 0\)"):
        RetryPolicy(max_attempts=0)


def test_retry_after_header_is_honoured():
    import httpx

    from budget_graph.retry import is_retryable, retry_after_s

    class RateLimited(Exception):
        def __init__(self):
            self.response = httpx.Response(429, headers={"retry-after": "2"})
            self.status_code = 429

    exc = RateLimited()
    assert is_retryable(exc) and retry_after_s(exc) == 2.0
    assert not is_retryable(BudgetExceededError(limit=1, spent=1, requested=1))


@pytest.mark.parametrize("report_usage", [True, False])
@pytest.mark.parametrize("budget_tokens", [1_000, 40])
def test_fast_path_commits_exactly_what_the_observed_path_commits(report_usage, budget_tokens):
    # Without an observer a call takes a one-frame fast path; with one, the full call
    # record. Both must clamp, charge and attribute a call identically.
    from budget_graph._internal import observe

    class Quiet:
        pass

    results = []
    for observer in (None, Quiet()):
        fake = BillingFakeChat(texts=[TEXT], report_usage=report_usage)
        meter = Meter(Budget(max_tokens=budget_tokens, per_call_max_tokens=30))
        llm = budgeted(fake, meter=meter, node="n")
        if observer is not None:
            observe.add_observer(observer)
        try:
            msg = llm.invoke("hello")
        finally:
            if observer is not None:
                observe.remove_observer(observer)
        results.append((msg.content, meter.spent, meter.spend, meter.reserved))
    assert results[0] == results[1]
    assert results[0][2].by_node["n"].calls == 1 and results[0][3] == 0


# --- no meter, meter=, threads ------------------------------------------------------


def test_a_call_without_a_meter_is_refused_unless_allowed():
    from budget_graph import NoMeterError
    from budget_graph.context import open_ledger

    fake = BillingFakeChat(texts=[TEXT])
    with pytest.raises(NoMeterError, match="outside a budgeted run.*require_meter=False"):
        budgeted(fake).invoke("hi")
    assert fake.billed == []  # refused before anything was sent
    with open_ledger() as ledger:
        budgeted(fake, require_meter=False).invoke("hi")
    assert ledger.spend.total_tokens == fake.billed[0]  # unbudgeted, still counted


def test_meter_takes_a_budget_or_a_meter_and_rejects_anything_else():
    fake = BillingFakeChat(texts=[TEXT])
    llm = budgeted(fake, meter=Budget(max_tokens=10))
    assert isinstance(llm.meter, Meter) and llm.meter.limit == 10
    with pytest.raises(BudgetExceededError):
        for _ in range(5):
            llm.invoke("hi")
    assert sum(fake.billed) <= 10
    with pytest.raises(TypeError, match="meter= takes a meter .* or a Budget, got int"):
        budgeted(fake, meter=300)


def _threaded_graph(fake, wrap):
    from concurrent.futures import ThreadPoolExecutor

    from langgraph.graph import END, START, StateGraph

    from budget_graph import BudgetState, guard

    llm = budgeted(fake)

    @guard
    def fan(state):
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(wrap(lambda i: llm.invoke(f"task {i}", max_tokens=5)), range(4)))
        return {}

    b = StateGraph(BudgetState)
    b.add_node("fan", fan)
    b.add_edge(START, "fan")
    b.add_edge("fan", END)
    return b.compile()


def test_threads_started_in_a_node_carry_the_run_or_fail_loudly():
    from budget_graph import NoMeterError, carry_context, with_budget

    fake = BillingFakeChat(texts=[TEXT])
    app = with_budget(_threaded_graph(fake, lambda f: f), Budget(max_tokens=1_000))
    with pytest.raises(NoMeterError, match="in thread .*carry_context"):
        app.invoke({})
    assert fake.billed == []
    app = with_budget(_threaded_graph(fake, carry_context), Budget(max_tokens=1_000))
    out = app.invoke({})
    assert out["spend"].calls == 4 and out["spend"].total_tokens == sum(fake.billed)
    assert out["spend"].by_node["fan"].calls == 4


# --- abandoned and cancelled calls ----------------------------------------------------


def test_an_abandoned_stream_is_charged_prompt_plus_what_was_received():
    fake = BillingFakeChat(texts=[TEXT])
    meter = Meter(Budget(max_tokens=1_000))
    stream = budgeted(fake, meter=meter).stream("hi")
    first = next(stream)
    stream.close()  # the consumer stops iterating
    assert meter.reserved == 0 and meter.open_reservations == 0
    spend = meter.spend
    assert spend.calls == spend.estimated_calls == 1
    assert spend.output_tokens >= 1 and first.content.strip() == "one"
    assert spend.input_tokens > 0 and meter.spent == spend.units


async def test_an_abandoned_async_stream_is_charged():
    fake = BillingFakeChat(texts=[TEXT])
    meter = Meter(Budget(max_tokens=1_000))
    stream = budgeted(fake, meter=meter).astream("hi")
    await anext(stream)
    await stream.aclose()
    # LangChain's astream drops (does not close) our inner generator: the event loop
    # closes it on its next turns, which charges the call.
    for _ in range(5):
        await asyncio.sleep(0)
    assert meter.reserved == 0 and meter.spend.estimated_calls == 1 and meter.spent > 0


class _SlowChat(BillingFakeChat):
    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        await asyncio.sleep(10)
        raise AssertionError("not reached")


async def test_a_cancelled_call_is_charged_its_reservation_as_estimated():
    meter = Meter(Budget(max_tokens=1_000))
    llm = budgeted(_SlowChat(texts=[TEXT]), meter=meter)
    task = asyncio.create_task(llm.ainvoke("hi", max_tokens=50))
    while meter.reserved == 0:
        await asyncio.sleep(0)
    held = meter.reserved
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert meter.reserved == 0 and meter.spent == held  # outcome unknown: all of it
    assert meter.spend.estimated_calls == 1 and meter.spend.output_tokens == 50
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(llm.ainvoke("hi", max_tokens=50), 0.05)
    assert meter.reserved == 0 and meter.spent == 2 * held
