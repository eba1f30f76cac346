"""Shared helpers of the reliability suite (tests/test_reliability_*.py, benchmarks/soak.py).

Everything here talks to a real :class:`~budget_graph.replay.server.ReplayServer` over
localhost through ``langchain_openai.ChatOpenAI``; the server's billing ledger is the
ground truth every test compares the client's accounting with.
"""

from __future__ import annotations

from typing import Any

import httpx

from budget_graph.replay.server import ReplayServer
from budget_graph.retry import RetryPolicy
from budget_graph.tasks.game24 import Game24Task

__all__ = [
    "FAST_RETRY",
    "PROMPTS",
    "assert_accounted",
    "billed_requests",
    "billed_tokens",
    "openai_chat",
]

_TASK = Game24Task()
PROMPTS: list[str] = [_TASK.cot_prompt(item) for item in _TASK.items()[:20]]
"""Recorded Game of 24 chain-of-thought prompts (the server answers each of them)."""

FAST_RETRY = RetryPolicy(max_attempts=6, initial_wait_s=0.005, max_wait_s=0.03)
"""Our retries, with short waits so the suite stays fast (Retry-After still honoured)."""


def openai_chat(
    server: ReplayServer,
    fault: str | None = None,
    *,
    max_retries: int = 0,
    async_client: bool = False,
    **kwargs: Any,
) -> Any:
    """A ``ChatOpenAI`` on the replay server, optionally sending ``X-Replay-Fault: fault``.

    ``max_retries=0`` by default so the retries under test are ours (``RetryPolicy``);
    ``async_client=True`` gives it its own ``httpx.AsyncClient`` (langchain-openai caches
    one per base URL, which breaks across the per-test event loops of pytest-asyncio).
    """
    from langchain_openai import ChatOpenAI

    params: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": "replay",
        "model": "gpt-4",
        "max_retries": max_retries,
        "stream_usage": True,
    }
    if fault:
        params["default_headers"] = {"X-Replay-Fault": fault}
    # Always an own async client: a shared pooled one keeps connections of an earlier
    # test's closed event loop.
    limits = (
        httpx.Limits(max_connections=400, max_keepalive_connections=100) if async_client
        else httpx.Limits()
    )
    params["http_async_client"] = httpx.AsyncClient(limits=limits, timeout=60)
    params.update(kwargs)
    return ChatOpenAI(**params)


def billed_tokens(server: ReplayServer) -> int:
    """Prompt + completion tokens the server billed so far."""
    usage = server.usage()
    return int(usage["prompt_tokens"]) + int(usage["completion_tokens"])


def billed_requests(server: ReplayServer) -> int:
    """Requests the server billed so far."""
    return int(server.usage()["billed_requests"])


def assert_accounted(meter: Any, server: ReplayServer, *, limit: int | None = None) -> None:
    """Client spend == server billing, nothing left reserved, the cap held, no overrun."""
    assert meter.reserved == 0, f"reserved={meter.reserved} after the run"
    assert meter.open_reservations == 0, f"open_reservations={meter.open_reservations}"
    billed = billed_tokens(server)
    assert meter.spent == billed, f"meter.spent={meter.spent} != billed={billed}"
    assert meter.spend.calls == billed_requests(server)
    assert meter.overrun_units == 0
    if limit is not None:
        assert meter.spent <= limit, f"spent={meter.spent} > limit={limit}"
