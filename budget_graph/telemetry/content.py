"""Prompt and completion content as the GenAI conventions' JSON messages (opt-in only).

``gen_ai.input.messages`` and ``gen_ai.output.messages`` hold JSON arrays of messages,
each with a ``role`` and a list of ``parts`` (``text``, ``tool_call``,
``tool_call_response``, ``reasoning``); every output message has its ``finish_reason``,
which the schema requires (a backend may drop the whole list without it). Truncation
cuts each text part, never the serialized JSON, so the attribute always parses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from opentelemetry.util.types import AttributeValue

from budget_graph._internal.observe import CallInfo
from budget_graph.telemetry import attributes as A

__all__ = [
    "TRUNCATION_MARK",
    "content_attributes",
    "finish_reason",
    "input_messages",
    "output_messages",
    "run_io_attributes",
]

TRUNCATION_MARK = "…"
"""Appended to a text part cut at the configured length."""

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}

# Provider finish reasons -> the GenAI schema's FinishReason values.
_FINISH = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "max_tokens": "length",
    "content_filter": "content_filter",
    "safety": "content_filter",
    "tool_calls": "tool_call",
    "tool_call": "tool_call",
    "tool_use": "tool_call",
    "function_call": "tool_call",
    "error": "error",
}


def finish_reason(reason: str | None, *, failed: bool = False) -> str:
    """A provider's finish reason as the schema's value (unknown ones kept, lowercased).

    ``""`` when the provider reported none (the field is required, its value is not
    made up), ``"error"`` for a failed call.

    Example:
        >>> finish_reason("tool_calls"), finish_reason("end_turn"), finish_reason(None)
        ('tool_call', 'stop', '')

    """
    if failed:
        return "error"
    if not reason:
        return ""
    value = str(reason).lower()
    return _FINISH.get(value, value)


def _cut(text: str, max_chars: int | None) -> str:
    if max_chars is None or len(text) <= max_chars:
        return text
    return text[:max_chars] + TRUNCATION_MARK


def _text_parts(content: Any, max_chars: int | None) -> list[dict[str, Any]]:
    """A LangChain message content (a string or a list of blocks) as parts."""
    if isinstance(content, str):
        return [{"type": "text", "content": _cut(content, max_chars)}] if content else []
    parts: list[dict[str, Any]] = []
    for block in content or ():
        if isinstance(block, str):
            parts.append({"type": "text", "content": _cut(block, max_chars)})
        elif isinstance(block, dict):
            kind = block.get("type")
            if kind == "text":
                parts.append(
                    {"type": "text", "content": _cut(str(block.get("text", "")), max_chars)}
                )
            elif kind in ("reasoning", "thinking"):
                text = block.get("reasoning") or block.get("thinking") or ""
                parts.append({"type": "reasoning", "content": _cut(str(text), max_chars)})
            else:  # images, files...: named, not copied (they can be megabytes)
                parts.append({"type": str(kind or "unknown")})
    return parts


def _tool_call_parts(message: Any) -> list[dict[str, Any]]:
    return [
        {
            "type": "tool_call",
            "id": call.get("id"),
            "name": call.get("name"),
            "arguments": call.get("args"),
        }
        for call in getattr(message, "tool_calls", None) or ()
    ]


def input_messages(messages: Iterable[Any], max_chars: int | None) -> list[dict[str, Any]]:
    """LangChain messages (or plain strings) as the schema's input messages."""
    out: list[dict[str, Any]] = []
    for msg in messages or ():
        if isinstance(msg, str):
            out.append({"role": "user", "parts": _text_parts(msg, max_chars)})
            continue
        kind = getattr(msg, "type", None) or "user"
        role = _ROLES.get(kind, kind)
        content = getattr(msg, "content", "")
        if role == "tool":
            text = content if isinstance(content, str) else json.dumps(content, default=str)
            parts: list[dict[str, Any]] = [
                {
                    "type": "tool_call_response",
                    "id": getattr(msg, "tool_call_id", None),
                    "response": _cut(text, max_chars),
                }
            ]
        else:
            parts = _text_parts(content, max_chars) + _tool_call_parts(msg)
        out.append({"role": role, "parts": parts})
    return out


def output_messages(call: CallInfo, max_chars: int | None) -> list[dict[str, Any]]:
    """The call's completions as the schema's output messages, one per choice."""
    failed = call.error is not None
    generations = getattr(call.response, "generations", None)
    if generations:
        out = []
        for gen in generations:
            msg = gen.message
            reason = (gen.generation_info or {}).get("finish_reason") or (
                msg.response_metadata.get("finish_reason")
            )
            parts = _text_parts(msg.content, max_chars) + _tool_call_parts(msg)
            out.append(
                {
                    "role": "assistant",
                    "parts": parts,
                    "finish_reason": finish_reason(reason, failed=failed),
                }
            )
        return out
    if call.output_text is None:
        return []
    reason = call.finish_reasons[0] if call.finish_reasons else None
    return [
        {
            "role": "assistant",
            "parts": _text_parts(call.output_text, max_chars),
            "finish_reason": finish_reason(reason, failed=failed),
        }
    ]


def content_attributes(call: CallInfo, max_chars: int | None) -> dict[str, AttributeValue]:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages`` (only when opted in)."""
    attrs: dict[str, AttributeValue] = {}
    if call.input_messages is not None:
        attrs[A.GEN_AI_INPUT_MESSAGES] = json.dumps(
            input_messages(call.input_messages, max_chars), ensure_ascii=False, default=str
        )
    out = output_messages(call, max_chars)
    if out:
        attrs[A.GEN_AI_OUTPUT_MESSAGES] = json.dumps(out, ensure_ascii=False, default=str)
    return attrs


def _json_value(value: Any, max_chars: int | None) -> tuple[str, str]:
    """A run input or output as (text, mime type): JSON when it fits, else cut text."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if max_chars is not None and len(text) > max_chars:
        return _cut(text, max_chars), "text/plain"
    return text, "application/json"


def run_io_attributes(
    run_input: Any, state: Any, max_chars: int | None
) -> dict[str, AttributeValue]:
    """A run's input and final state as OpenInference ``input.value`` / ``output.value``.

    What a backend's trace list shows for the run (only when content capture is on).
    """
    attrs: dict[str, AttributeValue] = {}
    if run_input is not None:
        attrs[A.INPUT_VALUE], attrs[A.INPUT_MIME_TYPE] = _json_value(run_input, max_chars)
    if state is not None:
        attrs[A.OUTPUT_VALUE], attrs[A.OUTPUT_MIME_TYPE] = _json_value(state, max_chars)
    return attrs
