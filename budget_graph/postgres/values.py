"""The values a Postgres meter hands out: its leased reservations and its budget snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from budget_graph.meter import Reservation

__all__ = ["BudgetSnapshot", "LeasedReservation"]


@dataclass(frozen=True)
class LeasedReservation(Reservation):
    """A reservation held in PostgreSQL on every level of a scope chain."""

    key: str = ""
    """The key of the meter it was made on (fixed even if the period rolls over)."""
    keys: tuple[str, ...] = ()
    """Every level held, innermost first (``key`` and its ancestors' keys)."""
    expires_at: datetime | None = None
    """When the lease lapses unless renewed (the meters renew open leases)."""


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    """One budget row as read (after reclaiming expired leases)."""

    key: str
    limit: int
    reserve: int
    spent: int
    reserved: int
    reclaimed: int = 0
    """Units of expired leases returned to the budgets by this read."""

    @property
    def remaining(self) -> int:
        """Units neither spent nor reserved."""
        return max(self.limit - self.spent - self.reserved, 0)

    def available(self, *, final: bool = False) -> int:
        """Units a new reservation could take on this level."""
        return max(self.limit - (0 if final else self.reserve) - self.spent - self.reserved, 0)
