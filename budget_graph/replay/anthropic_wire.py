"""The replay server's Anthropic Messages protocol (``POST /v1/messages``, SSE streaming)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from typing_extensions import override

from budget_graph.replay.chat_model import split_stream_chunks
from budget_graph.replay.store import ReplayChoice, ReplayResponse
from budget_graph.replay.wire import (
    InvalidFieldError,
    Protocol,
    Request,
    error_type,
    messages_of,
    plain_messages,
    sse_event,
    stop_list,
    text_of,
)

__all__ = ["AnthropicMessages"]


_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens"}


def _stop_reason(choice: ReplayChoice) -> str:
    return _ANTHROPIC_STOP.get(choice.finish_reason, "end_turn")


def _message(
    rid: str, model: str, content: list[dict[str, Any]], stop: str | None, usage: dict[str, int]
) -> dict[str, Any]:
    """A Messages API ``message``: the response body, or the one ``message_start`` carries."""
    return {
        "id": rid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


class AnthropicMessages(Protocol):
    """``POST /v1/messages`` (what ``langchain-anthropic``'s ``ChatAnthropic`` calls)."""

    name = "anthropic"

    @override
    def parse(self, body: Mapping[str, Any]) -> Request:
        messages = messages_of(body)
        if not isinstance(body.get("max_tokens"), int):
            raise InvalidFieldError(
                "max_tokens", f"max_tokens: Field required (got {body.get('max_tokens')!r})"
            )
        system = text_of(body.get("system"))
        chat = plain_messages(messages)
        if system:
            chat.insert(0, {"role": "system", "content": system})
        return Request(
            messages=chat,
            n=1,
            max_tokens=body["max_tokens"],
            cap_param="max_tokens",
            stop=stop_list(body.get("stop_sequences")),
            stream=bool(body.get("stream")),
            include_usage=True,
            model=body.get("model"),
        )

    @staticmethod
    def _usage(resp: ReplayResponse) -> dict[str, int]:
        return {
            "input_tokens": resp.prompt_tokens,
            "output_tokens": resp.completion_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }

    @override
    def body(self, rid: str, model: str, resp: ReplayResponse) -> dict[str, Any]:
        choice = resp.choices[0]
        content = [{"type": "text", "text": choice.text}]
        return _message(rid, model, content, _stop_reason(choice), self._usage(resp))

    @override
    def events(self, rid: str, model: str, resp: ReplayResponse, req: Request) -> list[bytes]:
        choice = resp.choices[0]
        start = _message(rid, model, [], None, {**self._usage(resp), "output_tokens": 1})
        out = [
            sse_event({"type": "message_start", "message": start}, "message_start"),
            sse_event(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            sse_event({"type": "ping"}, "ping"),
        ]
        for piece in split_stream_chunks(choice.text):
            out.append(
                sse_event(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                    "content_block_delta",
                )
            )
        out.append(sse_event({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        # As the real API does: message_delta carries the final, cumulative usage.
        out.append(
            sse_event(
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": _stop_reason(choice),
                        "stop_sequence": None,
                    },
                    "usage": self._usage(resp),
                },
                "message_delta",
            )
        )
        out.append(sse_event({"type": "message_stop"}, "message_stop"))
        return out

    @override
    def error(
        self, status: int, message: str, code: str, param: str | None = None
    ) -> dict[str, Any]:
        return {"type": "error", "error": {"type": error_type(status), "message": message}}
