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
