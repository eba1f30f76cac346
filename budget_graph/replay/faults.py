"""Fault injection for the replay server: 429 + Retry-After, 500, latency, dropped streams."""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["FAULT_HEADER", "Fault", "FaultBook", "parse_fault"]

FAULT_HEADER = "X-Replay-Fault"
"""Request header carrying a per-request fault spec (see ``parse_fault``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """What to do wrong to a request."""

    status: int | None = None
    """Answer with this HTTP error instead (429 or 500), before any completion is drawn."""
    retry_after_s: float = 0.05
    """``Retry-After`` seconds sent with a 429."""
    latency_s: float = 0.0
    """Seconds to wait before answering."""
    drop_after_chunks: int | None = None
    """Close the connection after this many body chunks (SSE events, or a cut JSON body)."""
    times: int | None = None
    """Apply to the first ``times`` requests carrying this spec only (``None``: always)."""

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in (429, 500, 503):
            raise ValueError(f"Invalid status: {self.status}. Must be 429, 500 or 503")
        if self.latency_s < 0:
            raise ValueError(f"Invalid latency_s: {self.latency_s}. Must be >= 0")
        if self.retry_after_s < 0:
            raise ValueError(f"Invalid retry_after_s: {self.retry_after_s}. Must be >= 0")
        if self.drop_after_chunks is not None and self.drop_after_chunks < 0:
            raise ValueError(f"Invalid drop_after_chunks: {self.drop_after_chunks}. Must be >= 0")
        if self.times is not None and self.times < 1:
            raise ValueError(f"Invalid times: {self.times}. Must be >= 1")


def parse_fault(spec: str) -> Fault:
    """Parse a fault spec: comma/semicolon separated parts.

    Parts: ``429`` / ``500`` / ``503`` (status), ``retry-after=<s>``, ``latency=<s>``,
    ``drop`` (after 2 chunks) or ``drop=<k>``, ``times=<n>``, ``id=<anything>`` (only makes
    the spec distinct, so ``times`` counts per test). Example: ``"429;times=1;id=t1"``.

    Raises:
        ValueError: An unknown part or a bad number, naming it.

    """
    kw: dict[str, float | int | None] = {}
    for raw in spec.replace(";", ",").split(","):
        part = raw.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        name = name.strip().lower()
        try:
            if name.isdigit():
                kw["status"] = int(name)
            elif name in ("retry-after", "retry_after"):
                kw["retry_after_s"] = float(value)
            elif name == "latency":
                kw["latency_s"] = float(value)
            elif name == "drop":
                kw["drop_after_chunks"] = int(value) if value else 2
            elif name == "times":
                kw["times"] = int(value)
            elif name == "id":
                pass
            else:
                raise ValueError(f"Unknown fault part: {part!r} in {spec!r}")
        except ValueError as exc:
            if "Unknown fault" in str(exc):
                raise
            raise ValueError(f"Invalid fault part: {part!r} in {spec!r}") from exc
    return Fault(**kw)  # type: ignore[arg-type]


class FaultBook:
    """Decides the fault of each request: header spec first, then queued, then the default.

    Args:
        default: Fault applied to every request without its own (``None``: none).

    """

    def __init__(self, default: Fault | None = None) -> None:
        self.default = default
        self._queue: list[Fault] = []
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def inject(self, fault: Fault, count: int = 1) -> None:
        """Apply ``fault`` to the next ``count`` requests that carry no header fault."""
        with self._lock:
            self._queue.extend([fault] * count)

    def clear(self) -> None:
        """Forget queued faults and per-spec counters."""
        with self._lock:
            self._queue.clear()
            self._seen.clear()

    def pick(self, header: str | None) -> Fault | None:
        """The fault for a request with this ``X-Replay-Fault`` header value (or none)."""
        with self._lock:
            if header:
                fault = parse_fault(header)
                seen = self._seen.get(header, 0)
                self._seen[header] = seen + 1
                if fault.times is None or seen < fault.times:
                    return fault
                return None
            if self._queue:
                return self._queue.pop(0)
            return self.default
