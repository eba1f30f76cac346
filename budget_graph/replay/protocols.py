"""Wire protocols of the replay server: OpenAI chat completions, Anthropic Messages, Ollama chat.

Each protocol reads a request body into one :class:`Request` (the messages in OpenAI form,
the output cap and the keyword it came in) and writes a served
:class:`~budget_graph.replay.store.ReplayResponse` back in its own shape, with its own
usage fields, as one JSON body or as stream events (SSE for OpenAI and Anthropic,
NDJSON for Ollama). The billing is the same for all three: the store's usage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from typing_extensions import override

from budget_graph.replay.anthropic_wire import AnthropicMessages
from budget_graph.replay.chat_model import split_stream_chunks
from budget_graph.replay.store import ReplayResponse
from budget_graph.replay.wire import (
    Protocol,
    Request,
    messages_of,
    plain_messages,
    sse_event,
    stop_list,
)

__all__ = [
    "PROTOCOLS",
    "AnthropicMessages",
    "GroqChat",
    "OllamaChat",
    "OpenAIChat",
    "Protocol",
    "Request",
]


class OpenAIChat(Protocol):
    """``POST /v1/chat/completions``."""

    name = "openai"

    @override
    def parse(self, body: Mapping[str, Any]) -> Request:
        messages = messages_of(body)
        param = next((k for k in ("max_completion_tokens", "max_tokens") if k in body), None)
        return Request(
            messages=messages,
            n=int(body.get("n") or 1),
            max_tokens=body.get(param) if param else None,
            cap_param=param,
            stop=stop_list(body.get("stop")),
            stream=bool(body.get("stream")),
            include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
            model=body.get("model"),
        )

    @staticmethod
    def _usage(resp: ReplayResponse) -> dict[str, int]:
        return {
            "prompt_tokens": resp.prompt_tokens,
            "completion_tokens": resp.completion_tokens,
            "total_tokens": resp.total_tokens,
        }

    @override
    def body(self, rid: str, model: str, resp: ReplayResponse) -> dict[str, Any]:
        return {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason,
                    "logprobs": None,
                }
                for i, c in enumerate(resp.choices)
            ],
            "usage": self._usage(resp),
            "system_fingerprint": "replay",
        }

    @override
    def events(self, rid: str, model: str, resp: ReplayResponse, req: Request) -> list[bytes]:
        created = int(time.time())

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return sse_event(
                {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": choices,
                    **extra,
                }
            )

        out = []
        for i, choice in enumerate(resp.choices):
            out.append(
                event(
                    [
                        {
                            "index": i,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                        }
                    ]
                )
            )
            for piece in split_stream_chunks(choice.text):
                out.append(
                    event([{"index": i, "delta": {"content": piece}, "finish_reason": None}])
                )
            out.append(event([{"index": i, "delta": {}, "finish_reason": choice.finish_reason}]))
        if req.include_usage:
            out.append(event([], usage=self._usage(resp)))
        out.append(b"data: [DONE]\n\n")
        return out


class GroqChat(OpenAIChat):
    """``POST /openai/v1/chat/completions`` (what ``langchain-groq``'s ``ChatGroq`` calls).

    OpenAI's shape, except that a stream always reports its usage, in ``x_groq.usage``
    of the last chunk.
    """

    name = "groq"

    @override
    def events(self, rid: str, model: str, resp: ReplayResponse, req: Request) -> list[bytes]:
        out = super().events(rid, model, resp, replace(req, include_usage=False))
        last = json.loads(out[-2].decode()[len("data: ") :])
        last["x_groq"] = {"id": rid, "usage": self._usage(resp)}
        out[-2] = sse_event(last)
        return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


class OllamaChat(Protocol):
    """``POST /api/chat`` (what ``langchain-ollama``'s ``ChatOllama`` calls)."""

    name = "ollama"
    stream_media_type = "application/x-ndjson"

    @override
    def parse(self, body: Mapping[str, Any]) -> Request:
        messages = messages_of(body)
        options = body.get("options") or {}
        cap = options.get("num_predict")
        cap = cap if isinstance(cap, int) and cap > 0 else None  # -1/-2: no limit
        chat = plain_messages(messages)
        return Request(
            messages=chat,
            n=1,
            max_tokens=cap,
            cap_param="options.num_predict" if "num_predict" in options else None,
            stop=stop_list(options.get("stop")),
            stream=body.get("stream", True) is not False,
            include_usage=True,
            model=body.get("model"),
        )

    @staticmethod
    def _done(model: str, resp: ReplayResponse) -> dict[str, Any]:
        reason = resp.choices[0].finish_reason
        return {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "length" if reason == "length" else "stop",
            "total_duration": 0,
            "load_duration": 0,
            "prompt_eval_count": resp.prompt_tokens,
            "prompt_eval_duration": 0,
            "eval_count": resp.completion_tokens,
            "eval_duration": 0,
        }

    @override
    def body(self, rid: str, model: str, resp: ReplayResponse) -> dict[str, Any]:
        out = self._done(model, resp)
        out["message"] = {"role": "assistant", "content": resp.choices[0].text}
        return out

    @override
    def events(self, rid: str, model: str, resp: ReplayResponse, req: Request) -> list[bytes]:
        lines = [
            json.dumps(
                {
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
            )
            for piece in split_stream_chunks(resp.choices[0].text)
        ]
        lines.append(json.dumps(self._done(model, resp)))
        return [f"{line}\n".encode() for line in lines]

    @override
    def error(
        self, status: int, message: str, code: str, param: str | None = None
    ) -> dict[str, Any]:
        return {"error": message}


PROTOCOLS: dict[str, Protocol] = {
    p.name: p for p in (OpenAIChat(), GroqChat(), AnthropicMessages(), OllamaChat())
}
"""The protocols by name."""
