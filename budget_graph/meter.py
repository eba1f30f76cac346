"""The in-process :class:`Meter` (a hard cap, nestable), and the meter protocol it implements."""

from __future__ import annotations

import itertools
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from budget_graph.budget import Budget, Spend, Usage
from budget_graph.errors import BudgetExceededError, UsageOverrunWarning
from budget_graph.protocol import BaseMeter, Reservation

__all__ = ["BaseMeter", "Meter", "Reservation"]

_ids = itertools.count(1)


class Meter:
    """Hard cap for one run (or one level of nested budgets), safe under threads and asyncio.

    ``reserve`` refuses a reservation that does not fit *before* the call is made;
    ``commit`` replaces it by the real charge; ``release`` drops it when the call
    failed unbilled. Units are tokens (or micro-USD in cost mode, see :class:`Budget`).

    A meter with a ``parent`` is one level of nested budgets: every reservation is
    held on it and on every ancestor (all levels or none), commits and releases reach
    every level, and each level records the spend once. A refusal names the level
    that refused (its ``scope``, ``limit`` and ``spent``).

    Example:
        >>> m = Meter(Budget(max_tokens=100))
        >>> r = m.reserve(60)
        >>> m.commit(r, 42); m.spent, m.remaining
        (42, 58)

    """

    def __init__(
        self,
        budget: Budget,
        *,
        spend: Spend | None = None,
        spent_units: int | None = None,
        scope: str = "run",
        parent: BaseMeter | None = None,
    ) -> None:
        """Create a meter; ``spend``/``spent_units`` (from a checkpoint) count as spent."""
        self.budget = budget
        self.scope = scope
        self.parent = parent
        """The enclosing budget's meter, if this one is nested in it."""
        self._lock = threading.Lock()
        self._limit = budget.limit
        self._call_limit = budget.available_for_calls
        if spent_units is None:
            spent_units = spend.units if spend is not None else 0
        if spent_units < 0:
            raise ValueError(f"spent_units must be >= 0 (got {spent_units})")
        self._spent = spent_units
        self._reserved = 0
        self._open: dict[int, Reservation] = {}
        self.overrun_units = 0
        """Units committed beyond their reservation (providers that ignore max_tokens)."""
        self.refused = 0
        """Reservations :meth:`reserve` refused on this level so far."""
        # Calls are kept as (usage, node) records and folded into a Spend on read.
        self._spends: list[Spend | tuple[Usage, str | None]] = [spend] if spend else []

    @classmethod
    def from_spend(cls, budget: Budget, spend: Spend | None) -> Meter:
        """Rebuild a meter for a resumed run from the spend already in state."""
        return cls(budget, spend=spend)

    @property
    def spend(self) -> Spend:
        """Everything committed through this meter, with its per-node breakdown."""
        with self._lock:
            folded = Spend.fold(self._spends)
            self._spends = [folded]  # so reading stays cheap as calls accumulate
            return folded

    @property
    def counts_tokens(self) -> bool:
        """Whether the budget counts tokens (not cost), so units are tokens."""
        return self.budget.count != "cost"

    @property
    def limit(self) -> int:
        """The limit in units."""
        return self._limit

    @property
    def spent(self) -> int:
        """Units committed so far."""
        return self._spent

    @property
    def reserved(self) -> int:
        """Units held by in-flight reservations."""
        return self._reserved

    @property
    def remaining(self) -> int:
        """Units neither spent nor reserved (the reserve for final answers included)."""
        return max(self._limit - self._spent - self._reserved, 0)

    @property
    def levels(self) -> list[BaseMeter]:
        """The levels a reservation holds on: this meter, then each ancestor."""
        out: list[BaseMeter] = [self]
        parent = self.parent
        while parent is not None:
            out.append(parent)
            parent = getattr(parent, "parent", None)
        return out

    def available(self, *, final: bool = False) -> int:
        """Units a new reservation could take now, on this level and every ancestor."""
        own = max(self._room(final), 0)
        if self.parent is None:
            return own
        return min(own, self.parent.available(final=final))

    def _room(self, final: bool) -> int:
        """Units left on this level for a new reservation (negative after an overrun)."""
        return (self._limit if final else self._call_limit) - self._spent - self._reserved

    # --- reserve ------------------------------------------------------------------

    def _hold(self, units: int, final: bool, node: str | None) -> Reservation:
        """Hold ``units`` on this level only, or raise (counted as refused)."""
        if units < 0:
            raise ValueError(f"units must be >= 0 (got {units})")
        with self._lock:
            if units > self._room(final):
                self.refused += 1
                raise BudgetExceededError(
                    limit=self._limit,
                    spent=self._spent,
                    requested=units,
                    scope=self.scope,
                    reserved=self._reserved,
                    unit=self.budget.unit,
                )
            return self._open_reservation(units, final, node)

    def _hold_output(
        self, prompt_units: int, n: int, max_output: int, final: bool, node: str | None
    ) -> tuple[Reservation, int] | None:
        """The clamp on this level only: prompt plus the most output per sample that fits."""
        if n < 1:
            raise ValueError(f"n must be >= 1 (got {n})")
        with self._lock:
            out = (self._room(final) - prompt_units) // n
            if max_output and max_output < out:
                out = max_output
            if out < 1:  # not counted in ``refused``: the caller decides whether to raise
                return None
            return self._open_reservation(prompt_units + out * n, final, node), out

    def _open_reservation(self, units: int, final: bool, node: str | None) -> Reservation:
        res = Reservation(next(_ids), units, final, node)
        self._reserved += units
        self._open[res.id] = res
        return res

    @contextmanager
    def _undone_on_error(self, own: Reservation) -> Iterator[None]:
        """Drop this level's hold if the parent's raises (all levels or none)."""
        try:
            yield
        except BaseException:
            self._drop(own)
            raise

    def _linked(self, own: Reservation, units: int, parent: Reservation) -> Reservation:
        """``own`` resized to ``units`` and linked to the parent's reservation."""
        res = Reservation(own.id, units, own.final, own.node, parent)
        with self._lock:
            self._reserved += units - own.units
            self._open[res.id] = res
        return res

    def _linked_output(
        self, own: Reservation, prompt_units: int, n: int, up: tuple[Reservation, int] | None
    ) -> tuple[Reservation, int] | None:
        if up is None:  # an ancestor has no room: hold nothing here either
            self._drop(own)
            return None
        return self._linked(own, prompt_units + up[1] * n, up[0]), up[1]

    def reserve(self, units: int, *, final: bool = False, node: str | None = None) -> Reservation:
        """Hold ``units`` on every level or raise :class:`BudgetExceededError` holding none."""
        own = self._hold(units, final, node)
        if self.parent is None:
            return own
        with self._undone_on_error(own):
            up = self.parent.reserve(units, final=final, node=node)
        return self._linked(own, units, up)

    async def areserve(
        self, units: int, *, final: bool = False, node: str | None = None
    ) -> Reservation:
        """:meth:`reserve` for async code (awaits an async parent)."""
        own = self._hold(units, final, node)
        if self.parent is None:
            return own
        with self._undone_on_error(own):
            up = await self.parent.areserve(units, final=final, node=node)
        return self._linked(own, units, up)

    def reserve_output(
        self,
        prompt_units: int,
        *,
        n: int = 1,
        max_output: int = 0,
        final: bool = False,
        node: str | None = None,
    ) -> tuple[Reservation, int] | None:
        """Atomically hold ``prompt_units`` plus as many output units per sample as fit.

        Each of the ``n`` samples gets the same allowance, at most ``max_output`` (0: no
        bound), and no more than every ancestor can hold. Returns the reservation and
        the per-sample allowance, or ``None`` (holding nothing on any level) when not
        even one output unit per sample fits.
        """
        held = self._hold_output(prompt_units, n, max_output, final, node)
        if held is None or self.parent is None:
            return held
        own, out = held
        with self._undone_on_error(own):
            up = self.parent.reserve_output(
                prompt_units, n=n, max_output=out, final=final, node=node
            )
        return self._linked_output(own, prompt_units, n, up)

    async def areserve_output(
        self,
        prompt_units: int,
        *,
        n: int = 1,
        max_output: int = 0,
        final: bool = False,
        node: str | None = None,
    ) -> tuple[Reservation, int] | None:
        """:meth:`reserve_output` for async code (awaits an async parent)."""
        held = self._hold_output(prompt_units, n, max_output, final, node)
        if held is None or self.parent is None:
            return held
        own, out = held
        with self._undone_on_error(own):
            up = await self.parent.areserve_output(
                prompt_units, n=n, max_output=out, final=final, node=node
            )
        return self._linked_output(own, prompt_units, n, up)

    # --- commit / release ---------------------------------------------------------

    def _commit_here(
        self, reservation: Reservation, units: int, usage: Usage | Spend | None
    ) -> None:
        if units < 0:
            raise ValueError(f"units must be >= 0 (got {units})")
        with self._lock:
            if self._open.pop(reservation.id, None) is None:
                raise ValueError(
                    f"reservation {reservation.id} is not open on the {self.scope!r} meter "
                    "(already committed or released, or made on another meter)"
                )
            self._reserved -= reservation.units
            self._spent += units
            if usage is not None:
                self._spends.append(
                    usage if isinstance(usage, Spend) else (usage, reservation.node)
                )
            over = units - reservation.units
            if over > 0:
                self.overrun_units += over
        if over > 0:
            warnings.warn(
                f"Call charged {units} units but reserved {reservation.units}: the provider "
                f"ignored max_tokens (overrun={over})",
                UsageOverrunWarning,
                stacklevel=3,
            )

    def commit(
        self, reservation: Reservation, units: int, *, usage: Usage | Spend | None = None
    ) -> None:
        """Charge the real ``units`` of a call on every level and drop its reservation.

        ``usage`` (a :class:`Usage`, or a ready :class:`Spend`) is added to ``spend``.
        A charge larger than the reservation (the provider ignored ``max_tokens``) is
        still committed, since it was billed, and warns with
        :class:`UsageOverrunWarning`. Negative units, or a reservation that is not
        open (committed twice, released, or another meter's), raise ``ValueError``.
        """
        self._commit_here(reservation, units, usage)
        if self.parent is not None and reservation.parent is not None:
            self.parent.commit(reservation.parent, units, usage=usage)

    async def acommit(
        self, reservation: Reservation, units: int, *, usage: Usage | Spend | None = None
    ) -> None:
        """:meth:`commit` for async code (awaits an async parent)."""
        self._commit_here(reservation, units, usage)
        if self.parent is not None and reservation.parent is not None:
            await self.parent.acommit(reservation.parent, units, usage=usage)

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation on every level without charging it (idempotent)."""
        self._drop(reservation)
        if self.parent is not None and reservation.parent is not None:
            self.parent.release(reservation.parent)

    async def arelease(self, reservation: Reservation) -> None:
        """:meth:`release` for async code (awaits an async parent)."""
        self._drop(reservation)
        if self.parent is not None and reservation.parent is not None:
            await self.parent.arelease(reservation.parent)

    def _drop(self, reservation: Reservation) -> None:
        with self._lock:
            held = self._open.pop(reservation.id, None)
            if held is not None:
                self._reserved -= held.units

    @property
    def open_reservations(self) -> int:
        """How many reservations are neither committed nor released."""
        return len(self._open)

    def __repr__(self) -> str:
        return (
            f"Meter(scope={self.scope!r}, limit={self._limit}, spent={self._spent}, "
            f"reserved={self._reserved}, remaining={self.remaining}, unit={self.budget.unit!r})"
        )
