"""Scopes of shared budgets: what a budget row covers (a run, a thread, a user...)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

__all__ = ["BudgetScope", "Period"]

Period = Literal["hour", "day", "week", "month"]
"""Length of a periodic budget; the scope key names the period's start."""

_KIND = re.compile(r"^[a-z][a-z0-9_-]*$")


def _period_start(period: Period, now: datetime) -> datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "hour":
        return now.replace(minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


@dataclass(frozen=True, kw_only=True)
class BudgetScope:
    """What one shared budget covers: a run, a thread, a user, a tenant...

    The scope's :meth:`key` names its row in ``budget_graph_budgets``. With a
    ``period``, the key also names the period's start, so each day (say) gets a
    fresh budget: ``user:alice@day:2025-01-31``.

    Example:
        >>> BudgetScope.user("alice", period="day").key(datetime(2025, 1, 31, 17, 5))
        'user:alice@day:2025-01-31'

    """

    kind: str
    """``"run"``, ``"thread"``, ``"user"``, ``"tenant"`` or your own (lowercase word)."""
    id: str
    """The run id, thread id, user id... within the kind."""
    period: Period | None = None
    """Renew the budget every hour, day, week (from Monday) or month; ``None``: never."""
    tz: str = "UTC"
    """Time zone the periods start in (an IANA name)."""

    def __post_init__(self) -> None:
        if not _KIND.match(self.kind):
            raise ValueError(f"Invalid kind: {self.kind!r}. Must match {_KIND.pattern}")
        if not self.id:
            raise ValueError(f"Invalid id: {self.id!r}. Must be a non-empty string")
        if self.period not in (None, "hour", "day", "week", "month"):
            raise ValueError(
                f"Invalid period: {self.period!r}. Must be None, 'hour', 'day', 'week' or 'month'"
            )
        ZoneInfo(self.tz)  # raises for an unknown zone

    @classmethod
    def run(cls, run_id: object) -> BudgetScope:
        """One run of a graph."""
        return cls(kind="run", id=str(run_id))

    @classmethod
    def thread(cls, thread_id: object, *, period: Period | None = None) -> BudgetScope:
        """Every run on one LangGraph thread (conversation)."""
        return cls(kind="thread", id=str(thread_id), period=period)

    @classmethod
    def user(cls, user_id: object, *, period: Period | None = None, tz: str = "UTC") -> BudgetScope:
        """Everything one user spends, optionally per period."""
        return cls(kind="user", id=str(user_id), period=period, tz=tz)

    @classmethod
    def tenant(
        cls, tenant_id: object, *, period: Period | None = None, tz: str = "UTC"
    ) -> BudgetScope:
        """Everything one tenant (team, customer) spends, optionally per period."""
        return cls(kind="tenant", id=str(tenant_id), period=period, tz=tz)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        kind: Literal["thread", "run"] = "thread",
        *,
        period: Period | None = None,
    ) -> BudgetScope:
        """Scope the thread (``configurable.thread_id``) or run (``run_id``) of a config."""
        value = (
            config.get("run_id")
            if kind == "run"
            else config.get("configurable", {}).get("thread_id")
        )
        if value is None:
            where = "run_id" if kind == "run" else "configurable.thread_id"
            raise ValueError(f"Invalid config: no {where} in {dict(config)!r}")
        return cls(kind=kind, id=str(value), period=period)

    def key(self, now: datetime | None = None) -> str:
        """Return the budget row's key at ``now`` (default: the current time)."""
        base = f"{self.kind}:{self.id}"
        if self.period is None:
            return base
        zone = ZoneInfo(self.tz)
        moment = (
            datetime.now(zone)
            if now is None
            else (now.replace(tzinfo=zone) if now.tzinfo is None else now.astimezone(zone))
        )
        start = _period_start(self.period, moment)
        stamp = start.strftime("%Y-%m-%dT%H:00" if self.period == "hour" else "%Y-%m-%d")
        return f"{base}@{self.period}:{stamp}"
