from langchain_core.messages import AIMessage, HumanMessage

from budget_graph import Usage, count_messages, usage_from_message
from budget_graph.accounting import CHAT_MESSAGE_OVERHEAD, CHAT_REPLY_OVERHEAD, usage_counts


def test_usage_counts_reads_reasoning_and_cached_tokens() -> None:
    meta = {
        "input_tokens": 100,
        "output_tokens": 40,
        "total_tokens": 140,
        "input_token_details": {"cache_read": 64},
        "output_token_details": {"reasoning": 25},
    }
    assert usage_counts(meta) == (100, 40, 25, 64)
    assert usage_counts({"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}) == (3, 2, 0, 0)
    msg = AIMessage("ok", usage_metadata=meta)
    assert usage_from_message(msg) == Usage(100, 40, 25, 64, calls=1)
    assert usage_from_message(AIMessage("no usage")) is None


def test_count_messages_frames_each_message_and_counts_tool_calls() -> None:
    one = count_messages([HumanMessage("hello")])
    assert one == CHAT_REPLY_OVERHEAD + CHAT_MESSAGE_OVERHEAD + 1 + 1  # "user" + "hello"
    assert count_messages([{"role": "user", "content": "hello"}]) == one
    call = AIMessage("", tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "1"}])
    assert count_messages([call]) > count_messages([AIMessage("")])
