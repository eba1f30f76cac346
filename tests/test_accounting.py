import base64
import io
import json
import math
import wave

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from budget_graph import Usage, count_messages, usage_from_message
from budget_graph._internal.media import IMAGE_TOKENS_MAX, PDF_TOKENS_PER_PAGE
from budget_graph.accounting import (
    CHAT_MESSAGE_OVERHEAD,
    CHAT_REPLY_OVERHEAD,
    EXACT,
    PromptCounting,
    count_output,
    usage_counts,
)


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


# --- multimodal parts, tool calls, provider counting (issue #20 items 2 and 3) ----------


def _png(width: int, height: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _image_message(width: int, height: int, detail: str = "auto") -> HumanMessage:
    url = f"data:image/png;base64,{_png(width, height)}"
    return HumanMessage(
        content=[
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": url, "detail": detail}},
        ]
    )


def test_image_parts_are_not_free_issue20_item2() -> None:
    text_only = count_messages([HumanMessage(content=[{"type": "text", "text": "what is this"}])])
    # OpenAI's tile formula: 1024 x 1024 -> 768 x 768 -> 4 tiles -> 85 + 4 * 170.
    assert count_messages([_image_message(1024, 1024)], model="gpt-4o") == text_only + 765
    assert count_messages([_image_message(1024, 1024, "low")], model="gpt-4o") == text_only + 85
    # 2048 x 4096 -> 1024 x 2048 -> 768 x 1536 -> 2 x 3 tiles.
    assert count_messages([_image_message(2048, 4096)], model="gpt-4o") == text_only + 85 + 6 * 170
    # gpt-4o-mini bills images at its own (much larger) constants.
    mini = count_messages([_image_message(512, 512)], model="gpt-4o-mini")
    assert mini == text_only + 2833 + 5667


def test_image_without_known_size_counts_the_upper_bound() -> None:
    by_url = HumanMessage(
        content=[{"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}]
    )
    empty = count_messages([HumanMessage(content=[])], model="gpt-4o")
    assert count_messages([by_url], model="gpt-4o") == empty + IMAGE_TOKENS_MAX["openai"]
    anthropic = PromptCounting(family="anthropic", ratio=1.0)
    std = HumanMessage(content=[{"type": "image", "url": "https://example.com/x.png"}])
    assert count_messages([std], counting=anthropic) == empty + IMAGE_TOKENS_MAX["anthropic"]


def test_anthropic_image_formula_and_source_blocks() -> None:
    anthropic = PromptCounting(family="anthropic", ratio=1.0)
    block = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": _png(600, 500)},
    }
    empty = count_messages([HumanMessage(content=[])], counting=anthropic)
    assert count_messages([HumanMessage(content=[block])], counting=anthropic) == empty + 400


def test_pdf_and_audio_parts() -> None:
    pdf = (
        b"%PDF-1.4\n1 0 obj << /Type /Pages >>\n"
        b"2 0 obj << /Type /Page >>\n3 0 obj << /Type /Page >>"
    )
    block = {
        "type": "file",
        "base64": base64.b64encode(pdf).decode(),
        "mime_type": "application/pdf",
    }
    empty = count_messages([HumanMessage(content=[])])
    assert count_messages([HumanMessage(content=[block])]) == empty + 2 * PDF_TOKENS_PER_PAGE
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000 * 2)  # 2 seconds
    audio = {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(buf.getvalue()).decode(), "format": "wav"},
    }
    assert count_messages([HumanMessage(content=[audio])]) == empty + 64


def test_output_estimate_counts_tool_call_arguments_issue20_item3() -> None:
    args = {"query": "the population of every country in Europe, by year " * 10}
    msg = AIMessage("", tool_calls=[{"name": "search", "args": args, "id": "c1"}])
    counted = count_output(msg, model="gpt-4o")
    assert counted > 100  # was 0: only the (empty) text was counted
    assert counted == count_output(json.dumps(args), model="gpt-4o") + 1
    assert count_output("hello world") == 2


def test_ratio_scales_counts_up_for_providers_without_an_offline_tokenizer() -> None:
    msgs = [HumanMessage("a fairly ordinary sentence about budgets and tokens")]
    exact = count_messages(msgs, counting=EXACT)
    assert count_messages(msgs, counting=PromptCounting(family="other", ratio=1.35)) == (
        math.ceil(exact * 1.35)
    )


def test_tool_schemas_are_counted_for_tool_objects_too() -> None:
    @tool
    def search(query: str) -> str:
        """Search the web for a query and return the top results."""
        return query

    base = count_messages([HumanMessage("hi")])
    assert count_messages([HumanMessage("hi")], tools=[search]) > base + 10
