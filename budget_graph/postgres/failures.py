"""How the Postgres meters fail and retry: timeouts, lease warnings, transient errors.

Retries are tenacity's (``Retrying`` / ``AsyncRetrying``) with one rule written once:
transient errors always, lock and statement timeouts only for commits and releases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from budget_graph.errors import BudgetError, BudgetExceededError

__all__ = [
    "LeaseExpiredWarning",
    "MeterTimeoutError",
    "aretrying",
    "is_transient",
    "refusal_error",
    "refusing_level",
    "retrying",
    "should_retry",
    "timeout_error",
]


class LeaseExpiredWarning(UserWarning):
    """A call was committed after its lease expired and its units had been reclaimed."""


class MeterTimeoutError(BudgetError):
    """The database did not answer a meter operation in time; nothing was changed.

    Attributes:
        scope: The meter's scope key.
        operation: ``"reserve"``, ``"commit"``, ``"release"`` or ``"read"``.
        setting: The setting that ran out (``"lock_timeout"`` or ``"statement_timeout"``).

    """

    def __init__(self, *, scope: str, operation: str, setting: str, detail: str = "") -> None:
        self.scope = scope
        self.operation = operation
        self.setting = setting
        super().__init__(
            f"The {operation} on the {scope} budget ran out of {setting} (the budget row is "
            f"locked elsewhere, or the server is overloaded); nothing was changed. {detail}".strip()
        )

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_timeout, (self.scope, self.operation, self.setting))


def _rebuild_timeout(scope: str, operation: str, setting: str) -> MeterTimeoutError:
    return MeterTimeoutError(scope=scope, operation=operation, setting=setting)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: a lost connection, a restart, a deadlock (not a timeout)."""
    return isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, pg_errors.LockNotAvailable | pg_errors.QueryCanceled
    )


def _is_operational(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.OperationalError)


def should_retry(exc: BaseException, timeouts: bool) -> bool:
    """Whether a failed attempt is worth retrying (with ``timeouts``: lock waits too)."""
    return _is_operational(exc) if timeouts else is_transient(exc)


def retrying(
    retry_s: float,
    health_check: Callable[[RetryCallState], Any] | None,
    *,
    timeouts: bool = False,
) -> Retrying:
    """Retry transient errors for ``retry_s``; with ``timeouts``, lock waits too.

    A commit or release retries a lock timeout (the provider billed the call: the
    charge must land); a reserve does not (refusing fast beats blocking a call).
    """
    return Retrying(
        retry=retry_if_exception(_is_operational if timeouts else is_transient),
        stop=stop_after_delay(retry_s),
        wait=wait_exponential_jitter(initial=0.02, max=1.0),
        before_sleep=health_check,
        reraise=True,
    )


def aretrying(
    retry_s: float,
    health_check: Callable[[RetryCallState], Any] | None,
    *,
    timeouts: bool = False,
) -> AsyncRetrying:
    """The async twin of :func:`retrying`."""
    return AsyncRetrying(
        retry=retry_if_exception(_is_operational if timeouts else is_transient),
        stop=stop_after_delay(retry_s),
        wait=wait_exponential_jitter(initial=0.02, max=1.0),
        before_sleep=health_check,
        reraise=True,
    )


def timeout_error(
    scope: str, operation: str, exc: BaseException, *, lock_timeout_s: float | None
) -> MeterTimeoutError:
    """The :class:`MeterTimeoutError` for ``exc`` (a lock wait or a statement timeout)."""
    setting = "lock_timeout" if isinstance(exc, pg_errors.LockNotAvailable) else "statement_timeout"
    limit = f" (lock_timeout_s={lock_timeout_s})" if setting == "lock_timeout" else ""
    return MeterTimeoutError(
        scope=scope, operation=operation, setting=setting, detail=limit.strip()
    )


def refusing_level(
    levels: dict[str, tuple[int, ...]],
    params: dict[str, Any],
) -> tuple[str, int, int, int, int]:
    """The level a refusal names in its error: ``(key, limit, reserve, spent, reserved)``.

    The tightest level for a clamp, else the innermost one without room for the units.
    """
    final, units = params["final"], params["units"]

    def room(key: str) -> int:
        limit, reserve, spent, reserved = levels[key]
        return limit - (0 if final else reserve) - spent - reserved

    keys: list[str] = params["keys"]
    if params["clamp"]:
        key = min(keys, key=room)
    else:
        key = next((k for k in keys if units > room(k)), keys[0])
    limit, reserve, spent, reserved = levels[key]
    return (key, limit, reserve, spent, reserved)


def refusal_error(
    refusal: tuple[str, int, int, int, int], requested: int, unit: str
) -> BudgetExceededError:
    """The error of a refusal by the level :func:`refusing_level` named."""
    key, limit, _reserve, spent, reserved = refusal
    return BudgetExceededError(
        limit=limit, spent=spent, requested=requested, scope=key, reserved=reserved, unit=unit
    )
