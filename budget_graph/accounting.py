"""Counting tokens: real usage from ``AIMessage.usage_metadata``, offline tokenizer fallback."""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from langchain_core.messages import AIMessage, BaseMessage

from budget_graph._internal.media import media_tokens
from budget_graph.budget import Usage

__all__ = [
    "CHAT_REPLY_OVERHEAD",
    "CHAT_MESSAGE_OVERHEAD",
    "EXACT",
    "Encoding",
    "PromptCounting",
    "count_messages",
    "count_output",
    "count_tokens",
    "encoding_for_model",
    "get_encoding",
    "model_field",
    "model_name",
    "usage_counts",
    "usage_from_message",
]

CHAT_MESSAGE_OVERHEAD = 3
"""Framing tokens OpenAI-style chat formats add per message."""
CHAT_REPLY_OVERHEAD = 3
"""Framing tokens that prime the assistant's reply."""


Family = Literal["openai", "anthropic", "google", "other"]
"""Provider families with their own rules for images, audio and files."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptCounting:
    """How prompts of one provider client are counted offline.

    OpenAI models are counted exactly with their own BPE (o200k_base or cl100k_base,
    shipped offline by bpe-openai). Providers whose tokenizer does not ship offline are
    counted with cl100k_base times ``ratio``, a documented upper bound of how many more
    tokens their tokenizers produce (see ``docs/providers.md``); the reservation adds the
    budget's ``prompt_margin`` on top, and the real usage replaces it at commit.
    """

    family: Family = "openai"
    """Whose rules apply to images, audio and files."""
    ratio: float = 1.0
    """Multiplier on the BPE count (1.0: the count is exact for the model)."""

    def scale(self, tokens: int) -> int:
        """``tokens`` counted with the BPE, scaled up by ``ratio``."""
        return tokens if self.ratio == 1.0 else math.ceil(tokens * self.ratio)


EXACT = PromptCounting()
"""OpenAI's exact counting (the default)."""


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


_SKIP_KEYS = frozenset({"type", "id", "index", "cache_control", "signature", "extras"})
_CALL_BLOCKS = frozenset({"tool_use", "tool_call", "tool_call_chunk", "function_call"})
"""Blocks that repeat an ``AIMessage``'s ``tool_calls`` (counted from those instead)."""


def _content_tokens(
    content: Any, encoding: str, counting: PromptCounting, model: str | None
) -> tuple[str, int]:
    """A content list's text, and the tokens of its other parts (media, tool blocks)."""
    parts: list[str] = []
    other = 0
    for block in content or ():
        if isinstance(block, str):
            parts.append(block)
            continue
        if not isinstance(block, dict) or block.get("type") in _CALL_BLOCKS:
            continue
        if isinstance(block.get("text"), str):
            parts.append(block["text"])
            continue
        media = media_tokens(block, counting.family, model)
        if media is not None:
            other += media
            continue
        source = block.get("source")
        if isinstance(source, dict) and isinstance(source.get("data"), str):
            parts.append(source["data"])  # a text document
            continue
        # Tool use/results, reasoning, citations...: their JSON text (an upper bound).
        rest = {k: v for k, v in block.items() if k not in _SKIP_KEYS}
        if rest:
            other += counting.scale(_count(encoding, json.dumps(rest, default=str)))
    return "".join(parts), other


_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def _tool_schemas(tools: Sequence[Any]) -> str:
    """Tool schemas as JSON text (tools given as objects are converted to OpenAI form)."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    out = []
    for tool in tools:
        if not isinstance(tool, dict):
            try:
                tool = convert_to_openai_tool(tool)
            except Exception:  # noqa: BLE001 - not convertible: counted on its repr
                tool = {"tool": repr(tool)}
        out.append(tool)
    return json.dumps(out, default=str)


def count_messages(
    messages: Sequence[BaseMessage | dict[str, Any]],
    *,
    model: str | None = None,
    tools: Sequence[Any] | None = None,
    counting: PromptCounting = EXACT,
) -> int:
    """Prompt tokens of a chat request, counted the way OpenAI-style chat formats bill it.

    Each message costs its role and content plus ``CHAT_MESSAGE_OVERHEAD`` framing
    tokens, the reply is primed with ``CHAT_REPLY_OVERHEAD`` more; tool calls and
    tool schemas are counted on their JSON text; image, audio and file parts by the
    rules of ``counting.family`` (see ``docs/providers.md``). With a ``counting``
    ratio above 1 (providers whose tokenizer does not ship offline), text counts are
    scaled up by it.
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
        if type(content) is str:
            # Hot path (every budgeted call): one cached lookup per plain-text message.
            total += _count_message(encoding, role, content)
        else:
            text, media = _content_tokens(content, encoding, counting, model)
            total += _count_message(encoding, role, text) + media
        if name:
            total += 1 + _count(encoding, name)
        if extra:
            total += _count(encoding, json.dumps(extra, default=str))
    if tools:
        total += _count(encoding, _tool_schemas(tools))
    return counting.scale(total)


def count_output(
    message: BaseMessage | str, *, model: str | None = None, counting: PromptCounting = EXACT
) -> int:
    """Generated tokens of a reply, counted locally (when a provider reports no usage).

    Counts the text plus each tool call's name and arguments.
    """
    encoding = _encoding_name(model)
    if isinstance(message, str):
        return counting.scale(_count(encoding, message)) if message else 0
    text, other = _content_tokens(
        [message.content] if isinstance(message.content, str) else message.content,
        encoding,
        counting,
        model,
    )
    total = (_count(encoding, text) if text else 0) + other
    calls = message.tool_calls if isinstance(message, AIMessage) else []
    for call in calls:
        total += _count(encoding, str(call.get("name") or ""))
        total += _count(encoding, json.dumps(call.get("args") or {}, default=str))
    if not calls and isinstance(message, AIMessage):
        for chunk in getattr(message, "tool_call_chunks", None) or ():
            total += _count(encoding, str(chunk.get("name") or ""))
            total += _count(encoding, str(chunk.get("args") or ""))
    return counting.scale(total)


@functools.lru_cache(maxsize=8192)
def _count_message(encoding: str, role: str, text: str) -> int:
    role = _ROLES.get(role, role)
    return (
        CHAT_MESSAGE_OVERHEAD
        + (_count(encoding, role) if role else 0)
        + (_count(encoding, text) if text else 0)
    )


def model_field(model: Any, name: str) -> Any:
    """``model.<name>``, or ``None`` when the model has no such attribute.

    ``getattr(model, name, None)`` without its cost on a miss: a pydantic model raises
    and catches an exception for each missing name, and every budgeted call asks a few
    names a given client does not have (its fields are in the instance dict, anything
    else is found on its class).
    """
    fields = getattr(model, "__dict__", None)
    if fields is not None and name in fields:
        return fields[name]
    if name in _class_names(model.__class__):
        return getattr(model, name, None)
    return None


@functools.cache
def _class_names(cls: Any) -> frozenset[str]:
    return frozenset(dir(cls))


def model_name(model: Any) -> str | None:
    """A chat model's model name (``model_name``, ``model`` or ``model_id``), if it has one."""
    for attr in ("model_name", "model", "model_id"):
        value = model_field(model, attr)
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
