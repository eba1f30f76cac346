"""What the replay server billed: one :class:`BillingEntry` per request, and the ledger of them.

A stream that a fault drops mid-response is recorded as not billed (``reason="dropped"``).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BillingEntry", "DroppedConnection", "Ledger", "guarded"]


@dataclass(frozen=True, slots=True)
class BillingEntry:
    """One request as the server saw it."""

    request_id: str
    status: int
    billed: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stream: bool = False
    reason: str = "ok"
    protocol: str = "openai"
    """``"openai"``, ``"anthropic"`` or ``"ollama"``."""
    max_tokens: int | None = None
    """The output cap the request carried (``None``: none)."""
    cap_param: str | None = None
    """The field the cap came in (``max_tokens``, ``max_completion_tokens``,
    ``options.num_predict``)."""
    model: str | None = None


class Ledger:
    """The billing entries of a server, thread-safe."""

    def __init__(self) -> None:
        self.entries: list[BillingEntry] = []
        self._lock = threading.Lock()

    def add(self, entry: BillingEntry) -> None:
        """Record one request."""
        with self._lock:
            self.entries.append(entry)

    def summary(self) -> dict[str, Any]:
        """Billed token totals, request counts and every entry."""
        with self._lock:
            billed = [e for e in self.entries if e.billed]
            return {
                "prompt_tokens": sum(e.prompt_tokens for e in billed),
                "completion_tokens": sum(e.completion_tokens for e in billed),
                "requests": len(self.entries),
                "billed_requests": len(billed),
                "entries": [asdict(e) for e in self.entries],
            }

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self.entries.clear()


class DroppedConnection(Exception):
    """Raised inside a response body to make the server close the connection mid-response."""


async def guarded(
    chunks: Sequence[bytes], drop: int | None, entry: BillingEntry, ledger: Ledger
) -> AsyncIterator[bytes]:
    """Yield ``chunks``, dropping the connection at chunk ``drop``; bill ``entry`` at the end."""
    for i, chunk in enumerate(chunks):
        if drop is not None and i >= drop:
            ledger.add(
                BillingEntry(
                    entry.request_id,
                    200,
                    False,
                    entry.prompt_tokens,
                    entry.completion_tokens,
                    entry.stream,
                    reason="dropped",
                )
            )
            raise DroppedConnection(entry.request_id)
        yield chunk
    ledger.add(entry)
