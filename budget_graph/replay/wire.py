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

__all__ = [
    "InvalidFieldError",
    "Protocol",
    "Request",
    "error_type",
    "messages_of",
    "plain_messages",
    "sse_event",
    "stop_list",
    "text_of",
]


class InvalidFieldError(ValueError):
    """A request field the server cannot read; ``param`` names it (OpenAI's ``error.param``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.param, str(self)))


_JSON_TYPES = {
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def messages_of(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A request's ``messages``: a non-empty array of message objects.

    The one check of every protocol, so all say the same thing about the same mistake.

    Raises:
        InvalidFieldError: Naming the field and the JSON type it got, e.g.
            ``'messages' must be a non-empty array of message objects (got a string)``.

    """
    value = body.get("messages")
    if not isinstance(value, list) or not value:
        if "messages" not in body:
            got = "nothing"
        else:
            got = "an empty array" if value == [] else _json_type(value)
        raise InvalidFieldError(
            "messages", f"'messages' must be a non-empty array of message objects (got {got})"
        )
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise InvalidFieldError(
                "messages",
                f"'messages[{i}]' must be a message object (got {_json_type(message)})",
            )
    return value


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

    def error(
        self, status: int, message: str, code: str, param: str | None = None
    ) -> dict[str, Any]:
        """An error body in this protocol's shape (``param``: the request field at fault)."""
        return {
            "error": {"message": message, "type": error_type(status), "param": param, "code": code}
        }


def error_type(status: int) -> str:
    """The ``error.type`` OpenAI and Anthropic give an HTTP status."""
    if status == 429:
        return "rate_limit_error"
    return "api_error" if status >= 500 else "invalid_request_error"


def plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as OpenAI ``{"role", "content"}`` dicts with text content (blocks joined)."""
    return [{"role": m.get("role", "user"), "content": text_of(m.get("content"))} for m in messages]


def text_of(content: Any) -> str:
    """A message's text: a string, or the ``text`` of its content blocks joined."""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or () if isinstance(b, dict))
