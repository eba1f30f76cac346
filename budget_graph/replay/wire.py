"""The replay server's protocol seam: one :class:`Request` shape and the :class:`Protocol` base.

Each wire protocol (:mod:`budget_graph.replay.protocols`,
:mod:`budget_graph.replay.anthropic_wire`) subclasses :class:`Protocol`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from budget_graph.replay.store import ReplayResponse

__all__ = ["Protocol", "Request", "sse_event", "stop_list", "text_of"]


@dataclass(frozen=True, slots=True)
class Request:
    """One request, whatever protocol it came in."""

    messages: list[dict[str, Any]]
    """Chat messages in OpenAI form (Anthropic's ``system`` becomes the first message)."""
    n: int
    max_tokens: int | None
    """The output cap the client sent (``None``: it sent none)."""
    cap_param: str | None
    """The field the cap came in (``max_tokens``, ``max_completion_tokens``,
    ``options.num_predict``)."""
    stop: list[str] | None
    stream: bool
    include_usage: bool
    """Whether a streamed response carries usage (always, except OpenAI without
    ``stream_options.include_usage``)."""
    model: str | None


def stop_list(value: Any) -> list[str] | None:
    """A request's ``stop`` field as a list (``None``: no stop sequences)."""
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, list) and value else None


def sse_event(obj: Mapping[str, Any], event: str | None = None) -> bytes:
    """One server-sent event carrying ``obj`` as JSON."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj)}\n\n".encode()


class Protocol:
    """How one API reads requests and writes responses."""

    name: ClassVar[str]
    stream_media_type: ClassVar[str] = "text/event-stream"

    def parse(self, body: Mapping[str, Any]) -> Request:
        """The request in a body (raises ``ValueError`` naming the bad field)."""
        raise NotImplementedError

    def body(self, rid: str, model: str, resp: ReplayResponse) -> dict[str, Any]:
        """The non-streamed response body."""
        raise NotImplementedError

    def events(self, rid: str, model: str, resp: ReplayResponse, req: Request) -> list[bytes]:
        """The streamed response, event by event."""
        raise NotImplementedError

    def error(self, status: int, message: str, code: str) -> dict[str, Any]:
        """An error body in this protocol's shape."""
        kind = (
            "rate_limit_error"
            if status == 429
            else ("api_error" if status >= 500 else "invalid_request_error")
        )
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def text_of(content: Any) -> str:
    """A message's text: a string, or the ``text`` of its content blocks joined."""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or () if isinstance(b, dict))
