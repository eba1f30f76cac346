"""Counting tokens: real usage from ``AIMessage.usage_metadata``, offline tokenizer fallback."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from langchain_core.messages import AIMessage, BaseMessage

from budget_graph.budget import Usage

__all__ = [
    "CHAT_REPLY_OVERHEAD",
    "CHAT_MESSAGE_OVERHEAD",
    "Encoding",
    "count_messages",
    "count_tokens",
    "encoding_for_model",
    "get_encoding",
    "model_name",
    "usage_counts",
    "usage_from_message",
]

CHAT_MESSAGE_OVERHEAD = 3
"""Framing tokens OpenAI-style chat formats add per message."""
CHAT_REPLY_OVERHEAD = 3
"""Framing tokens that prime the assistant's reply."""


class Encoding(Protocol):
    """The part of tiktoken's ``Encoding`` we use (bpe-openai implements it too)."""

    name: str

    def encode(self, text: str, *, disallowed_special: Any = ...) -> list[int]:
        """Token ids of ``text``."""

    def decode(self, tokens: list[int]) -> str:
        """Text of token ids."""


def _tiktoken_cached(name: str) -> bool:
    # tiktoken downloads encodings on first use; only use it when the file is already cached.
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    return cache is not None and Path(cache).is_dir() and any(Path(cache).iterdir())


@functools.cache
def get_encoding(name: str = "cl100k_base") -> Encoding:
    """A tokenizer by encoding name: tiktoken if its encoding is cached locally, else bpe-openai."""
    if _tiktoken_cached(name):
        try:
            import tiktoken

            return tiktoken.get_encoding(name)  # type: ignore[return-value]
        except Exception:  # noqa: BLE001 - fall back to the shipped encodings
            pass
    import bpe_openai

    return bpe_openai.get_encoding(name)  # type: ignore[no-any-return]


_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


def encoding_for_model(model: str | None) -> Encoding:
    """The tokenizer of ``model`` (o200k_base for GPT-4o and newer, else cl100k_base)."""
    return get_encoding(_encoding_name(model))


def _encoding_name(model: str | None) -> str:
    return "o200k_base" if model and model.startswith(_O200K_PREFIXES) else "cl100k_base"


@functools.lru_cache(maxsize=8192)
def _count(encoding: str, text: str) -> int:
    # Prompts repeat (few-shot prefixes, re-sent histories): counting is cached per text.
    return len(get_encoding(encoding).encode(text, disallowed_special=()))


def count_tokens(text: str, *, model: str | None = None) -> int:
    """Number of tokens of ``text`` under ``model``'s tokenizer."""
    if not text:
        return 0
    return _count(_encoding_name(model), text)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or ():
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "".join(parts)


_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def count_messages(
    messages: Sequence[BaseMessage | dict[str, Any]],
    *,
    model: str | None = None,
    tools: Sequence[Any] | None = None,
) -> int:
    """Prompt tokens of a chat request, counted the way OpenAI-style chat formats bill it.

    Each message costs its role and content plus ``CHAT_MESSAGE_OVERHEAD`` framing
    tokens, the reply is primed with ``CHAT_REPLY_OVERHEAD`` more; tool calls and
    tool schemas are counted on their JSON text.
    """
    encoding = _encoding_name(model)
    total = CHAT_REPLY_OVERHEAD
    for msg in messages:
        if isinstance(msg, dict):
            role, content = str(msg.get("role", "user")), msg.get("content", "")
            name, extra = msg.get("name"), msg.get("tool_calls")
        else:
            role, content, name = msg.type, msg.content, msg.name
            # Not getattr(msg, "tool_calls"): a miss on a pydantic model raises inside.
            extra = msg.tool_calls if isinstance(msg, AIMessage) else None
        # Hot path (every budgeted call): one cached lookup per plain-text message.
        total += _count_message(
            encoding, role, content if type(content) is str else _content_text(content)
        )
        if name:
            total += 1 + _count(encoding, name)
        if extra:
            total += _count(encoding, json.dumps(extra, default=str))
    if tools:
        total += _count(encoding, json.dumps(list(tools), default=str))
    return total


@functools.lru_cache(maxsize=8192)
def _count_message(encoding: str, role: str, text: str) -> int:
    role = _ROLES.get(role, role)
    return (
        CHAT_MESSAGE_OVERHEAD
        + (_count(encoding, role) if role else 0)
        + (_count(encoding, text) if text else 0)
    )


def model_name(model: Any) -> str | None:
    """A chat model's model name (``model_name``, ``model`` or ``model_id``), if it has one."""
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str):
            return value
    return None


def usage_from_message(message: BaseMessage) -> Usage | None:
    """Usage a provider reported on an ``AIMessage`` (or merged streamed chunks), else ``None``."""
    meta = getattr(message, "usage_metadata", None)
    if not meta:
        return None
    return Usage(*usage_counts(meta), 1)


def usage_counts(meta: Any) -> tuple[int, int, int, int]:
    """Input, output, reasoning and cached tokens of a ``usage_metadata`` dict."""
    get = meta.get
    out_details, in_details = get("output_token_details"), get("input_token_details")
    return (
        int(get("input_tokens") or 0),
        int(get("output_tokens") or 0),
        int(out_details.get("reasoning") or 0) if out_details else 0,
        int(in_details.get("cache_read") or 0) if in_details else 0,
    )
