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
