"""The meter protocol every meter implements, and the :class:`Reservation` a meter hands out.

:mod:`budget_graph.meter` re-exports both beside the in-process ``Meter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from budget_graph.budget import Budget, Spend, Usage

__all__ = ["BaseMeter", "Reservation"]


@dataclass(frozen=True, slots=True)
class Reservation:
    """Units held for one in-flight call."""

    id: int
    units: int
    final: bool = False
    """Whether the reservation may use the budget's ``reserve`` (a final answer)."""
    node: str | None = None
    parent: Reservation | None = None
    """The same units held on the meter's parent (nested budgets), if it has one."""


@runtime_checkable
class BaseMeter(Protocol):
    """What every meter implements (in-process, agent, Postgres...).

    Callers use only these members: they never branch on a meter's class. The async
    twins take the same arguments; in-process meters simply run the sync ones.
    """

    @property
    def budget(self) -> Budget:
        """The budget: its unit, count mode and prices turn usage into units."""

    @property
    def scope(self) -> str:
        """A name for what the limit applies to (``"run"``, ``"thread"``, ``"researcher"``...)."""

    @property
    def limit(self) -> int:
        """The limit in units."""

    @property
    def spent(self) -> int:
        """Units committed so far."""

    @property
    def reserved(self) -> int:
        """Units held by in-flight reservations."""

    @property
    def remaining(self) -> int:
        """Units neither spent nor reserved."""

    def available(self, *, final: bool = False) -> int:
        """Units a new reservation could take now."""

    def reserve(self, units: int, *, final: bool = False, node: str | None = None) -> Reservation:
        """Hold ``units`` for a call or raise :class:`BudgetExceededError` holding nothing."""

    def reserve_output(
        self,
        prompt_units: int,
        *,
        n: int = 1,
        max_output: int = 0,
        final: bool = False,
        node: str | None = None,
    ) -> tuple[Reservation, int] | None:
        """Atomically hold ``prompt_units`` plus the most output units per sample that fit.

        Each of the ``n`` samples gets the same output allowance, at most ``max_output``
        units (0: no bound). Returns the reservation and that per-sample allowance, or
        ``None``, holding nothing, when not one output unit per sample fits.
        """

    def commit(
        self, reservation: Reservation, units: int, *, usage: Usage | Spend | None = None
    ) -> None:
        """Replace a reservation by the real charge of the call."""

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation of a call that was not billed."""

    async def areserve(
        self, units: int, *, final: bool = False, node: str | None = None
    ) -> Reservation:
        """:meth:`reserve` for async code."""

    async def areserve_output(
        self,
        prompt_units: int,
        *,
        n: int = 1,
        max_output: int = 0,
        final: bool = False,
        node: str | None = None,
    ) -> tuple[Reservation, int] | None:
        """:meth:`reserve_output` for async code."""

    async def acommit(
        self, reservation: Reservation, units: int, *, usage: Usage | Spend | None = None
    ) -> None:
        """:meth:`commit` for async code."""

    async def arelease(self, reservation: Reservation) -> None:
        """:meth:`release` for async code."""
