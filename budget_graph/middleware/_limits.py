"""How ``TokenBudgetMiddleware`` reads its limits: counts, units, validation, resume values.

Pure functions with no I/O, so the middleware's constructor and its interrupt hook
share one place that says what a valid limit is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from budget_graph.budget import ModelPrice
from budget_graph.middleware._common import _nonneg, _positive_int, _usd_units
from budget_graph.middleware._meters import AgentMeter

__all__ = [
    "COUNTS",
    "EXIT_BEHAVIORS",
    "CountArg",
    "ExitBehavior",
    "limits_in_units",
    "resume_limits",
]

CountArg = Literal["output", "total", "input+output", "cost"]
ExitBehavior = Literal["end", "error", "finalize", "interrupt"]
EXIT_BEHAVIORS = ("end", "error", "finalize", "interrupt")
COUNTS = {
    "output": "output",
    "total": "input+output",
    "input+output": "input+output",
    "cost": "cost",
}
"""``count`` argument -> the :class:`~budget_graph.Budget` count mode it selects."""


def limits_in_units(
    *,
    count: str,
    run_limit: int | None,
    thread_limit: int | None,
    run_limit_usd: float | None,
    thread_limit_usd: float | None,
    prices: dict[str, ModelPrice],
) -> tuple[int | None, int | None]:
    """The run and thread limits in meter units (tokens, or micro-USD with ``count="cost"``).

    Raises:
        ValueError: Naming the argument and value, for a missing limit, a limit in the
            wrong unit for ``count``, or ``count="cost"`` without prices.

    """
    if COUNTS[count] == "cost":
        if run_limit is not None or thread_limit is not None:
            raise ValueError(
                "count='cost' takes run_limit_usd/thread_limit_usd "
                f"(got run_limit={run_limit!r}, thread_limit={thread_limit!r})"
            )
        if run_limit_usd is None and thread_limit_usd is None:
            raise ValueError(
                "At least one limit must be specified (run_limit_usd or thread_limit_usd)"
            )
        if not prices:
            raise ValueError("count='cost' needs prices for at least one model (got {})")
        return (
            None if run_limit_usd is None else _usd_units("run_limit_usd", run_limit_usd),
            None if thread_limit_usd is None else _usd_units("thread_limit_usd", thread_limit_usd),
        )
    if run_limit_usd is not None or thread_limit_usd is not None:
        raise ValueError(f"run_limit_usd/thread_limit_usd need count='cost' (got count={count!r})")
    if run_limit is None and thread_limit is None:
        raise ValueError("At least one limit must be specified (run_limit or thread_limit)")
    return (
        None if run_limit is None else _positive_int("run_limit", run_limit),
        None if thread_limit is None else _positive_int("thread_limit", thread_limit),
    )


def resume_limits(value: Any, *, cost: bool) -> dict[str, int] | None:
    """State updates for a human's answer to the budget interrupt; ``None`` to end."""
    if value is None or value is False:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(
            "Resume the token budget interrupt with a dict such as {'run_limit': 5000} "
            f"or False (got {value!r})"
        )
    if value.get("approve", True) is False:
        return None
    out: dict[str, int] = {}
    for scope in ("run", "thread"):
        key = f"{scope}_limit"
        if cost:
            if value.get(f"{key}_usd") is not None:
                out[f"token_budget_{key}"] = _usd_units(f"{key}_usd", value[f"{key}_usd"])
        elif value.get(key) is not None:
            out[f"token_budget_{key}"] = _positive_int(key, value[key])
    if not out:
        suffix = "_usd" if cost else ""
        raise ValueError(
            f"Resume value must set run_limit{suffix} or thread_limit{suffix} (got {value!r})"
        )
    return out


def reserve_units(reserve: int | None, limits: tuple[int | None, ...], exit_behavior: str) -> int:
    """The units held back for the final answer: ``reserve``, checked, or its default.

    The default is a tenth of the smallest limit with ``"finalize"``, else 0.
    """
    smallest = min(x for x in limits if x is not None)
    if reserve is None:
        reserve = max(smallest // 10, 1) if exit_behavior == "finalize" else 0
    reserve = _nonneg("reserve", reserve)
    if reserve >= smallest:
        raise ValueError(f"reserve must be smaller than every limit ({smallest}) (got {reserve})")
    return reserve


def warning_note(meter: AgentMeter, *, warn_at: float | None, unit: str) -> str | None:
    """The system note for a call made past ``warn_at`` of a limit, else ``None``."""
    if warn_at is None:
        return None
    worst = max(meter.meters, key=lambda m: m.spent / m.limit)
    if worst.spent < warn_at * worst.limit:
        return None
    left = worst.available()
    return (
        f"Token budget: {left} of {worst.limit} {unit} remain for this {worst.scope} "
        f"({worst.spent} spent). Wrap up: avoid unnecessary tool calls and give your "
        "final answer soon."
    )
