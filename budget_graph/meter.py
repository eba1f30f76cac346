"""The run-scoped :class:`Meter`: reserve before a call, commit after it (a hard cap)."""

from __future__ import annotations

import itertools
import threading
import warnings
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from budget_graph.budget import Budget, Spend, Usage, _tighter_cap, _usage, _with_margin
from budget_graph.errors import BudgetExceededError, UsageOverrunWarning

__all__ = ["BaseMeter", "Meter", "Reservation"]

_ids = itertools.count(1)
_new = object.__new__
_setattr = object.__setattr__


@dataclass(frozen=True)  # no slots: ``_hold`` sets the instance dict in one step (hot path)
class Reservation:
    """Units held for one in-flight call."""

    id: int
    units: int
    final: bool = False
    """Whether the reservation may use the budget's ``reserve`` (a final answer)."""
    node: str | None = None


@runtime_checkable
class BaseMeter(Protocol):
    """What every meter implements (in-process, Postgres...)."""

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

    def reserve(self, units: int, *, final: bool = False, node: str | None = None) -> Reservation:
        """Hold ``units`` for a call or raise :class:`BudgetExceededError`."""

    def commit(
        self, reservation: Reservation, units: int, *, usage: Usage | Spend | None = None
    ) -> None:
        """Replace a reservation by the real charge of the call."""

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation of a call that was not billed."""


class Meter:
    """Hard cap for one run, safe under threads and asyncio.

    ``reserve`` refuses a reservation that does not fit *before* the call is made;
    ``commit`` replaces it by the real charge; ``release`` drops it when the call
    failed unbilled. Units are tokens (or micro-USD in cost mode, see :class:`Budget`).

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
    ) -> None:
        """Create a meter; ``spend``/``spent_units`` (from a checkpoint) count as spent."""
        self.budget = budget
        self.scope = scope
        self._lock = threading.Lock()
        self._limit = budget.limit
        # Plain copies of what every call reads from the (frozen) budget: an attribute read
        # on a pydantic model goes through its ``__getattr__`` hook, six times a plain read.
        self._call_limit = self._limit - budget.reserve
        self.counts_tokens = budget.count != "cost"
        """Whether the budget counts tokens (not cost), so units are tokens."""
        self._counts_input = budget.count == "input+output"
        self._prompt_margin = budget.prompt_margin
        self._per_call_max = budget.per_call_max_tokens or 0
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
        """Reservations refused so far."""
        # Calls are kept as (usage, node) records and folded into a Spend on read.
        self._spends: list[Spend | tuple[Usage, str | None]] = [spend] if spend else []

    @property
    def spend(self) -> Spend:
        """Everything committed through this meter, with its per-node breakdown."""
        with self._lock:
            if not self._spends:
                return Spend()
            folded = Spend.fold(self._spends)
            self._spends = [folded]  # so reading stays cheap as calls accumulate
            return folded

    @classmethod
    def from_spend(cls, budget: Budget, spend: Spend | None) -> Meter:
        """Rebuild a meter for a resumed run from the spend already in state."""
        return cls(budget, spend=spend)

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

    def available(self, *, final: bool = False) -> int:
        """Units a new reservation could take now."""
        return max(self._room(final), 0)

    def _room(self, final: bool) -> int:
        """Units left for a new reservation (negative after an overrun)."""
        return (self._limit if final else self._call_limit) - self._spent - self._reserved

    def _hold(self, units: int, final: bool, node: str | None) -> Reservation:
        res = _new(Reservation)  # Reservation(...) without the frozen dataclass __init__
        _setattr(res, "__dict__", {"id": next(_ids), "units": units, "final": final, "node": node})
        self._reserved += units
        self._open[res.id] = res
        return res

    def reserve(self, units: int, *, final: bool = False, node: str | None = None) -> Reservation:
        """Hold ``units`` or raise :class:`BudgetExceededError` without holding anything."""
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
            return self._hold(units, final, node)

    def reserve_output(
        self,
        prompt_units: int,
        *,
        n: int = 1,
        max_output: int = 0,
        final: bool = False,
        node: str | None = None,
    ) -> tuple[Reservation, int] | None:
        """Atomically hold ``prompt_units`` plus as many output units as fit (token budgets).

        Each of the ``n`` samples gets the same output cap, at most ``max_output`` (0: no
        bound). Returns the reservation and the per-sample cap, or ``None`` (holding
        nothing) when not even one output token per sample fits.
        """
        with self._lock:
            out = (self._room(final) - prompt_units) // n
            if max_output and max_output < out:
                out = max_output
            if out < 1:
                self.refused += 1
                return None
            return self._hold(prompt_units + out * n, final, node), out

    def _prompt_units(self, prompt_tokens: int) -> int:
        """Units to hold for a prompt of ``prompt_tokens`` counted locally (token budgets)."""
        return _with_margin(prompt_tokens, self._prompt_margin) if self._counts_input else 0

    def _reserve_prompt(
        self, prompt_tokens: int, n: int, max_output: int, final: bool, node: str | None
    ) -> tuple[Reservation, int] | None:
        """:meth:`reserve_output` for a locally counted prompt (token budgets).

        Adds the budget's ``prompt_margin`` to the prompt and caps each sample's output at
        ``per_call_max_tokens`` as well as at ``max_output``.
        """
        return self.reserve_output(
            self._prompt_units(prompt_tokens),
            n=n,
            max_output=_tighter_cap(max_output, self._per_call_max),
            final=final,
            node=node,
        )

    def commit(
        self, reservation: Reservation, units: int, *, usage: Usage | Spend | None = None
    ) -> None:
        """Charge the real ``units`` of a call and drop its reservation.

        ``usage`` (a :class:`Usage`, or a ready :class:`Spend`) is added to ``spend``.

        A charge larger than the reservation (the provider ignored ``max_tokens``)
        is still committed, since it was billed, and warns with
        :class:`UsageOverrunWarning`.
        """
        with self._lock:
            self._drop(reservation)
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
                stacklevel=2,
            )

    def _commit_tokens(
        self,
        reservation: Reservation,
        input_tokens: int,
        output_tokens: int,
        reasoning_tokens: int,
        cached_tokens: int,
    ) -> Usage:
        """Commit one call's reported token usage (token budgets) and return it."""
        units = input_tokens + output_tokens if self._counts_input else output_tokens
        usage = _usage(input_tokens, output_tokens, reasoning_tokens, cached_tokens, 1, 0, units)
        self.commit(reservation, units, usage=usage)
        return usage

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation without charging it (idempotent)."""
        with self._lock:
            self._drop(reservation)

    def _drop(self, reservation: Reservation) -> None:
        if self._open.pop(reservation.id, None) is not None:
            self._reserved -= reservation.units

    @property
    def open_reservations(self) -> int:
        """How many reservations are neither committed nor released."""
        return len(self._open)

    def __repr__(self) -> str:
        return (
            f"Meter(limit={self._limit}, spent={self._spent}, reserved={self._reserved}, "
            f"remaining={self.remaining}, unit={self.budget.unit!r})"
        )
