"""What the sync and async Postgres meters share: settings, scope chain and every decision.

The twins (:class:`~budget_graph.postgres.PostgresMeter` and
:class:`~budget_graph.postgres.AsyncPostgresMeter`) only do I/O; they build their
statements' parameters and read their results through the methods here.
"""

from __future__ import annotations

import os
import random
import socket
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from budget_graph._internal import pg_schema as sql
from budget_graph.budget import Budget, Spend, Usage
from budget_graph.errors import BudgetExceededError, UsageOverrunWarning
from budget_graph.meter import Reservation
from budget_graph.postgres.failures import (
    LeaseExpiredWarning,
    MeterTimeoutError,
    is_transient,
    refusal_error,
    refusing_level,
    timeout_error,
)
from budget_graph.postgres.scope import BudgetScope
from budget_graph.postgres.values import BudgetSnapshot, LeasedReservation

__all__ = [
    "BudgetSnapshot",
    "LeaseExpiredWarning",
    "LeasedReservation",
    "MeterTimeoutError",
    "PostgresMeterBase",
    "is_transient",
]

Figures = tuple[int, int, int, int]  # limit, reserve, spent, reserved of one level
M = TypeVar("M", bound="PostgresMeterBase")


def _opt(value: float | None, name: str, *, allow_zero: bool = False) -> float | None:
    if value is None:
        return None
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(
            f"Invalid {name}: {value!r}. Must be {'>= 0' if allow_zero else '> 0'} or None"
        )
    return float(value)


class PostgresMeterBase:
    """Settings, scope chain and figures of a Postgres meter; no I/O."""

    def __init__(
        self,
        budget: Budget,
        *,
        scope: BudgetScope | str,
        parent: PostgresMeterBase | None,
        lease_s: float,
        lock_timeout_s: float | None,
        retry_s: float,
        max_hold_s: float | None,
        renew: bool,
        update_limit: bool,
    ) -> None:
        if not lease_s > 0:
            raise ValueError(f"Invalid lease_s: {lease_s!r}. Must be > 0")
        if isinstance(scope, str) and not scope:
            raise ValueError("Invalid scope: ''. Must be a BudgetScope or a non-empty key")
        if parent is not None and not isinstance(parent, type(self)):
            raise ValueError(
                f"Invalid parent: {parent!r}. Must be a {type(self).__name__} "
                "on the same database (in-process parents nest through the run)"
            )
        self.budget = budget
        self.scope_spec = scope
        self.parent = parent
        """The enclosing level (e.g. the tenant of a user); reservations hold on both."""
        self.lease_s = float(lease_s)
        self.lock_timeout_s = _opt(lock_timeout_s, "lock_timeout_s")
        self.retry_s = float(_opt(retry_s, "retry_s", allow_zero=True) or 0.0)
        self.max_hold_s = _opt(max_hold_s, "max_hold_s")
        self.renew_leases = renew
        self.update_limit = update_limit
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        self._figures: Figures | None = None
        self._limits_written: set[tuple[str, ...]] = set()  # key chains whose limits we wrote
        self._refusal: tuple[str, int, int, int, int] = ("", 0, 0, 0, 0)
        self.refused = 0
        """Reservations this meter had refused."""
        self.overrun_units = 0
        """Units this meter committed beyond their reservation."""
        self.late_commits = 0
        """Commits of this meter whose lease had already been reclaimed."""
        chain: list[PostgresMeterBase] = []  # innermost first; a meter's parent is fixed
        level: PostgresMeterBase | None = self
        while level is not None:
            chain.append(level)
            level = level.parent
        self._chain = tuple(chain)
        keys = [m.key for m in chain]
        if len(set(keys)) != len(keys):
            raise ValueError(f"Invalid parent: the scope chain {keys} repeats a key")

    def _settings(self) -> dict[str, Any]:
        """The keyword settings a twin passes to the meters it derives (``child``...)."""
        return {
            "lease_s": self.lease_s,
            "lock_timeout_s": self.lock_timeout_s,
            "retry_s": self.retry_s,
            "max_hold_s": self.max_hold_s,
            "renew": self.renew_leases,
            "update_limit": self.update_limit,
        }

    # --- the chain -------------------------------------------------------------------

    @property
    def chain(self: M) -> list[M]:
        """The meter and its ancestors, innermost first."""
        return list(self._chain)  # type: ignore[arg-type]

    @property
    def key(self) -> str:
        """The budget row's key now (periodic scopes roll over)."""
        spec = self.scope_spec
        return spec if isinstance(spec, str) else spec.key()

    @property
    def scope(self) -> str:
        """The scope named in errors and telemetry: the current key."""
        return self.key

    # --- figures (as of this meter's last round trip) --------------------------------

    def _level(self) -> Figures:
        """The figures as of the last round trip (the budget's own before any)."""
        if self._figures is None:
            return (self.budget.limit, self.budget.reserve, 0, 0)
        return self._figures

    def _known(self) -> Figures:
        """The figures of this level as of the last round trip (the sync meter reads if none)."""
        return self._level()

    @property
    def limit(self) -> int:
        """The limit of this level in units, as of the last round trip."""
        return self._known()[0]

    @property
    def spent(self) -> int:
        """Units committed on this level by every worker, as of the last round trip."""
        return self._known()[2]

    @property
    def reserved(self) -> int:
        """Units held on this level by every worker, as of the last round trip."""
        return self._known()[3]

    @property
    def remaining(self) -> int:
        """Units of this level neither spent nor reserved, as of the last round trip."""
        limit, _reserve, spent, reserved = self._known()
        return max(limit - spent - reserved, 0)

    def _snapshots(self, rows: list[tuple[Any, ...]], keys: list[str]) -> list[BudgetSnapshot]:
        by_key = {r[0]: r for r in rows}
        out = []
        for meter, key in zip(self.chain, keys, strict=True):
            row = by_key.get(key)
            if row is None:  # not created yet: the budget as configured
                out.append(BudgetSnapshot(key, meter.budget.limit, meter.budget.reserve, 0, 0))
            else:
                out.append(BudgetSnapshot(key, *(int(v) for v in row[1:6])))
        first = out[0]
        self._figures = (first.limit, first.reserve, first.spent, first.reserved)
        return out

    # --- reserve ---------------------------------------------------------------------

    def _reserve_params(
        self,
        units: int,
        n: int,
        max_output: int,
        clamp: bool,
        final: bool,
        node: str | None,
    ) -> dict[str, Any]:
        if units < 0:
            raise ValueError(f"units must be >= 0 (got {units})")
        if n < 1:
            raise ValueError(f"n must be >= 1 (got {n})")
        if max_output < 0:
            raise ValueError(f"max_output must be >= 0 (got {max_output})")
        chain = self._chain
        keys = [level.key for level in chain]
        # The budgets' limits go into the rows on this meter's first hold of the keys,
        # not on every reserve: the hot statement sends fewer parameters.
        set_limits = self.update_limit and tuple(keys) not in self._limits_written
        params: dict[str, Any] = {
            # unique, not secret: the Mersenne Twister is reseeded in forked children
            # (secrets' urandom syscall costs more and lets other threads take the GIL)
            "id": random.getrandbits(63),
            "keys": keys,
            "set_limits": set_limits,
            "units": units,
            "n": n,
            "max_output": max_output,
            "clamp": clamp,
            "final": final,
            "node": node,
            "owner": self._owner,
            "lease_s": self.lease_s,
        }
        params.update(zip(sql.key_names(len(keys)), keys, strict=True))
        if set_limits:
            for i, level in enumerate(chain):
                params[f"l{i}"], params[f"r{i}"] = level.budget.limit, level.budget.reserve
        return params

    @staticmethod
    def _reserve_queries(params: dict[str, Any]) -> tuple[str, str]:
        """The reserve statement of ``params``' shape: for a first attempt, and for retries."""
        shape = (params["clamp"], params["final"], params["set_limits"])
        return sql.reserve_statements(len(params["keys"]), *shape)

    def _held(
        self,
        rows: list[tuple[Any, ...]],
        params: dict[str, Any],
        *,
        reclaimed: bool,
    ) -> LeasedReservation | Literal["missing", "expired"] | None:
        """Read a reserve statement's rows.

        Returns the reservation; ``"missing"`` when a level has no row yet (create the
        chain's rows, then retry); ``"expired"`` when refused while expired leases
        could be reclaimed (reclaim, then retry); ``None`` when refused (recorded for
        :meth:`_exceeded`).
        """
        keys: list[str] = params["keys"]
        if not rows:  # one level, no row yet
            return "missing"
        held, found = rows[0][:2]
        if found >= 0:  # (found < 0: a retry found its own lease, the first reply was lost)
            if held is None and found < len(keys):
                return "missing"
            if held is None and not reclaimed and any(r[7] for r in rows):
                return "expired"
            levels = {r[2]: r[3:7] for r in rows}  # bigint columns: ints already
            limit, reserve, spent, reserved = levels[keys[0]]
            if held is None:
                self.refused += 1
                self._figures = (limit, reserve, spent, reserved)
                self._refusal = refusing_level(levels, params)
                return None
            self._figures = (limit, reserve, spent, reserved + held)
        if params["set_limits"]:
            self._limits_written.add(tuple(keys))
        return LeasedReservation(
            params["id"],
            held,
            params["final"],
            params["node"],
            key=keys[0],
            keys=tuple(keys),
            # by this worker's clock (the database times the lease by its own)
            expires_at=datetime.fromtimestamp(time.time() + self.lease_s, UTC),
        )

    def _ensure_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Parameters of ``ENSURE_SQL``: the chain's keys of ``params`` and their budgets."""
        budgets = [level.budget for level in self._chain]
        return {
            "keys": params["keys"],
            "limits": [b.limit for b in budgets],
            "reserves": [b.reserve for b in budgets],
            "unit": self.budget.unit,
        }

    def _exceeded(self, requested: int) -> BudgetExceededError:
        """The error for the last refusal, naming the level that refused."""
        return refusal_error(self._refusal, requested, self.budget.unit)

    @staticmethod
    def _per_sample(reservation: LeasedReservation, prompt_units: int, n: int) -> int:
        return (reservation.units - prompt_units) // n

    # --- commit / release --------------------------------------------------------------

    def _keys_of(self, reservation: Reservation) -> list[str]:
        if isinstance(reservation, LeasedReservation) and reservation.keys:
            return list(reservation.keys)
        return [m.key for m in self.chain]

    def _commit_call(
        self,
        reservation: Reservation,
        units: int,
        usage: Usage | Spend | None,
    ) -> tuple[str, dict[str, Any]]:
        """The commit statement of the reservation's levels, and its parameters."""
        if units < 0:
            raise ValueError(f"units must be >= 0 (got {units})")
        keys = self._keys_of(reservation)
        params: dict[str, Any] = dict(zip(sql.key_names(len(keys)), keys, strict=True))
        params["id"], params["keys"], params["units"] = reservation.id, keys, units
        if usage is None:  # the statement writes NULLs: fewer parameters to send
            return sql.commit_sql(len(keys), usage=False), params
        params["input_tokens"] = usage.input_tokens
        params["output_tokens"] = usage.output_tokens
        params["reasoning_tokens"] = usage.reasoning_tokens
        params["cached_tokens"] = usage.cached_tokens
        params["calls"] = usage.calls
        params["estimated_calls"] = usage.estimated_calls
        return sql.commit_sql(len(keys), usage=True), params

    def _late_params(
        self, reservation: Reservation, params: dict[str, Any], rows: list[tuple[Any, ...]]
    ) -> dict[str, Any]:
        """Parameters of ``LATE_COMMIT_SQL`` for the levels a commit's statement left."""
        charged = {r[0] for r in rows}
        keys = [k for k in params["keys"] if k not in charged]
        tokens = {t: params.get(t) for t in sql.TOKEN_COLUMNS}
        late = {"reserved_units": reservation.units, "node": reservation.node, "keys": keys}
        return {**params, **tokens, **late}

    def _committed(
        self,
        rows: list[tuple[Any, ...]],
        late: list[tuple[Any, ...]],
        reservation: Reservation,
        units: int,
        key: str,
        warn: Callable[..., None] = warnings.warn,
    ) -> None:
        """Record a commit's outcome on ``key`` (this level) and warn if late or overrun."""
        if not rows and not late:  # committed before: nothing charged now
            return
        for row in rows + late:
            if row[0] == key:
                self._figures = row[1:]  # type: ignore[assignment]
        if late:
            self.late_commits += 1
            warn(
                f"Committed {units} units on {key!r} after lease "
                f"{reservation.id} expired (lease_s={self.lease_s}); the budget may be "
                "overshot by this call",
                LeaseExpiredWarning,
                stacklevel=3,
            )
        over = units - reservation.units
        if over > 0:
            self.overrun_units += over
            warn(
                f"Call charged {units} units but reserved {reservation.units}: the provider "
                f"ignored max_tokens (overrun={over})",
                UsageOverrunWarning,
                stacklevel=3,
            )

    def _release_params(self, reservation: Reservation) -> dict[str, Any]:
        return {"id": reservation.id, "keys": self._keys_of(reservation)}

    def _released(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._figures = rows[0]  # type: ignore[assignment]

    def _read_params(self) -> dict[str, Any]:
        return {"keys": [m.key for m in self.chain]}

    @staticmethod
    def _spend(rows: list[tuple[Any, ...]]) -> Spend:
        total = Spend()
        for node, *numbers in rows:
            total = total + Spend.of(Usage(*(int(n or 0) for n in numbers)), node=node)
        return total

    # --- failures ----------------------------------------------------------------------

    def _timeout(self, operation: str, exc: BaseException) -> MeterTimeoutError:
        return timeout_error(self.key, operation, exc, lock_timeout_s=self.lock_timeout_s)

    def __repr__(self) -> str:
        keys = " < ".join(m.key for m in self.chain)
        return f"{type(self).__name__}(scope={keys!r}, lease_s={self.lease_s})"
