"""Reading what a chat model returned: usage, text and finish reasons, whole or streamed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from budget_graph.accounting import usage_from_message
from budget_graph.budget import Usage

__all__ = [
    "StreamAcc",
    "as_chunk",
    "finish_reasons",
    "keep_usage_on_first_choice",
    "result_text",
    "result_usage",
    "single_reply",
]


def result_usage(result: ChatResult) -> Usage | None:
    """The usage a result reports (once for n choices that repeat it), else ``None``."""
    found = (usage_from_message(g.message) for g in result.generations)
    usages = [u for u in found if u is not None]
    if not usages:
        return None
    # OpenAI-style clients attach the whole response's usage to each of the n choices.
    if len(usages) > 1 and all(u == usages[0] for u in usages):
        return usages[0]
    return sum(usages, Usage())


def keep_usage_on_first_choice(result: ChatResult) -> None:
    """Keep a response's usage on its first choice only, where a client copied it to all n.

    langchain-openai puts the whole response's usage on each of the n choices; anything
    summing the choices (OpenLLMetry's LangChain instrumentor does) would count the call
    n times. The call was billed once, as :func:`result_usage` reads it.
    """
    gens = result.generations
    first = getattr(gens[0].message, "usage_metadata", None) if gens else None
    if first and all(getattr(g.message, "usage_metadata", None) == first for g in gens[1:]):
        for gen in gens[1:]:
            if isinstance(gen.message, AIMessage):
                gen.message.usage_metadata = None


def single_reply(result: ChatResult) -> BaseMessage | None:
    """The reply of a one-generation result, else ``None``."""
    gens = result.generations
    return gens[0].message if len(gens) == 1 else None


def result_text(result: ChatResult) -> str:
    """The text of every generation."""
    return "".join(g.message.text for g in result.generations)


def _finish_reason(generation_info: dict[str, Any] | None, message: BaseMessage) -> str | None:
    reason = (generation_info or {}).get("finish_reason") or message.response_metadata.get(
        "finish_reason"
    )
    return str(reason) if reason else None


class StreamAcc:
    """What a stream delivered so far: text, reported usage, finish reasons."""

    __slots__ = ("finish_reasons", "last", "parts", "received", "tool_chunks", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.parts: list[str] = []
        self.finish_reasons: list[str] = []
        self.received = False
        self.last: ChatGenerationChunk | None = None
        self.tool_chunks: list[Any] = []

    def add(self, chunk: ChatGenerationChunk) -> None:
        """Take in one chunk."""
        self.received = True
        self.last = chunk
        msg = chunk.message
        if isinstance(msg.content, str):
            self.parts.append(msg.content)
        calls = getattr(msg, "tool_call_chunks", None)
        if calls:
            self.tool_chunks.extend(calls)
        u = usage_from_message(msg)
        if u is not None:
            # Each chunk that reports usage counts as the same one call.
            self.usage = u if self.usage is None else self.usage + replace(u, calls=0)
        reason = _finish_reason(chunk.generation_info, msg)
        if reason:
            self.finish_reasons.append(reason)

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self.parts)

    def message(self) -> AIMessageChunk:
        """What was received so far as one message (text and tool calls), to count."""
        merged: dict[Any, dict[str, Any]] = {}
        for chunk in self.tool_chunks:  # streamed pieces of one call share its index
            call = merged.setdefault(chunk.get("index"), {"name": "", "args": "", "id": None})
            call["name"] += chunk.get("name") or ""
            call["args"] += chunk.get("args") or ""
            call["id"] = call["id"] or chunk.get("id")
        chunks = [
            {"type": "tool_call_chunk", "index": i, **c} for i, c in enumerate(merged.values())
        ]
        return AIMessageChunk(content=self.text, tool_call_chunks=chunks)  # type: ignore[arg-type]


def as_chunk(result: ChatResult) -> ChatGenerationChunk:
    """A finished result as one stream chunk (for a model that cannot stream)."""
    gen: ChatGeneration = result.generations[0]
    msg = gen.message
    chunk = AIMessageChunk(
        content=msg.content,
        id=msg.id,
        usage_metadata=getattr(msg, "usage_metadata", None),
        tool_calls=getattr(msg, "tool_calls", []) or [],
        response_metadata=msg.response_metadata,
    )
    return ChatGenerationChunk(message=chunk, generation_info=gen.generation_info)


def finish_reasons(result: ChatResult) -> list[str]:
    """The finish reason of each generation that reports one."""
    found = (_finish_reason(g.generation_info, g.message) for g in result.generations)
    return [r for r in found if r]
