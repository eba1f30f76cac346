"""Retries for budgeted calls (tenacity): each attempt reserves anew, unbilled failures release."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, Retrying
from tenacity import wait_exponential_jitter as _wait_exp_jitter

from budget_graph._internal import observe

__all__ = [
    "RetryPolicy",
    "is_retryable",
    "retried",
    "retried_async",
    "retried_astream",
    "retried_stream",
    "retry_after_s",
]

_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_RETRY_NAMES = frozenset(
    {
        "RateLimitError",
        "APIConnectionError",
        "APITimeoutError",
        "InternalServerError",
        "ConnectError",
        "ReadTimeout",
        "ConnectTimeout",
        "RemoteProtocolError",
        "ReadError",
    }
)


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if code is None:
        code = getattr(getattr(exc, "response", None), "status_code", None)
    return code if isinstance(code, int) else None


def is_retryable(exc: BaseException) -> bool:
    """Rate limits, 5xx, timeouts and dropped connections; never budget refusals."""
    from budget_graph.errors import BudgetError

    if isinstance(exc, BudgetError):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    status = _status(exc)
    if status is not None:
        return status in _RETRY_STATUS
    return any(cls.__name__ in _RETRY_NAMES for cls in type(exc).__mro__)


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait (``Retry-After`` / ``retry-after-ms``), if any."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How budgeted calls retry transient provider failures.

    Every attempt is a fresh reservation: a failed attempt's reservation is released
    unless the provider reported usage for it (then that usage is committed), so
    unbilled failures cost nothing and billed ones are never lost.
    Leave it unset when the client already retries (``ChatOpenAI(max_retries=...)``).
    """

    max_attempts: int = 4
    """Attempts in total, the first included."""
    initial_wait_s: float = 0.5
    """First backoff wait (exponential with jitter after that)."""
    max_wait_s: float = 20.0
    """Longest wait between attempts, ``Retry-After`` included."""
    respect_retry_after: bool = True
    """Wait at least what the provider's ``Retry-After`` header asks."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 (got {self.max_attempts})")
        if self.initial_wait_s < 0 or self.max_wait_s < 0:
            raise ValueError(
                f"waits must be >= 0 (got initial_wait_s={self.initial_wait_s}, "
                f"max_wait_s={self.max_wait_s})"
            )

    def tenacity_kwargs(self) -> dict[str, Any]:
        """Arguments for ``tenacity.Retrying`` implementing this policy."""
        from tenacity import retry_if_exception, stop_after_attempt

        backoff = _wait_exp_jitter(initial=self.initial_wait_s, max=self.max_wait_s)

        def wait(state: RetryCallState) -> float:
            base = backoff(state)
            exc = state.outcome.exception() if state.outcome else None
            after = retry_after_s(exc) if exc is not None and self.respect_retry_after else None
            return min(max(base, after or 0.0), self.max_wait_s)

        return {
            "stop": stop_after_attempt(self.max_attempts),
            "wait": wait,
            "retry": retry_if_exception(is_retryable),
            "reraise": True,
        }


_T = TypeVar("_T")


def _on_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else None
    observe.emit(
        "budget.retry",
        attempt=state.attempt_number,
        wait_s=wait,
        error=type(exc).__name__ if exc else None,
        message=str(exc)[:200] if exc else None,
    )


def retried(policy: RetryPolicy | None, attempt: Callable[[], _T]) -> _T:
    """``attempt()``, tried again under ``policy`` (``None``: once)."""
    if policy is None:
        return attempt()
    for state in Retrying(**policy.tenacity_kwargs(), before_sleep=_on_retry):
        with state:
            return attempt()
    raise AssertionError("unreachable")  # pragma: no cover


async def retried_async(policy: RetryPolicy | None, attempt: Callable[[], Awaitable[_T]]) -> _T:
    """:func:`retried` for a coroutine."""
    if policy is None:
        return await attempt()
    async for state in AsyncRetrying(**policy.tenacity_kwargs(), before_sleep=_on_retry):
        with state:
            return await attempt()
    raise AssertionError("unreachable")  # pragma: no cover


_END: Any = object()


def retried_stream(policy: RetryPolicy | None, attempt: Callable[[], Iterator[_T]]) -> Iterator[_T]:
    """A stream tried again under ``policy`` only while it fails before its first item.

    Once an item reached the caller, a retry would repeat it.
    """
    if policy is None:
        yield from attempt()
        return

    def start() -> tuple[Iterator[_T], Any]:
        it = attempt()
        return it, next(it, _END)

    it, first = retried(policy, start)
    if first is not _END:
        yield first
        yield from it


async def retried_astream(
    policy: RetryPolicy | None, attempt: Callable[[], AsyncIterator[_T]]
) -> AsyncIterator[_T]:
    """:func:`retried_stream` for an async stream."""
    if policy is None:
        async for item in attempt():
            yield item
        return

    async def start() -> tuple[AsyncIterator[_T], Any]:
        ait = attempt()
        return ait, await anext(ait, _END)

    ait, first = await retried_async(policy, start)
    if first is not _END:
        yield first
        async for item in ait:
            yield item
