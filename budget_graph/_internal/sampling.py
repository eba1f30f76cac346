"""How the self-consistency graph sizes and draws its batches: chain estimate, batch fit.

Pure functions of the meter's room and the chains seen so far, used by
:func:`budget_graph.consistency.build_self_consistency`'s ``decide`` node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.runnables import RunnableLambda

from budget_graph.budget import Budget
from budget_graph.meter import BaseMeter

__all__ = [
    "CHAIN_QUANTILE",
    "DEFAULT_SAMPLE_TOKENS",
    "FIRST_CHAIN_SHARE",
    "batch_fit",
    "chain_estimate",
    "sample_kwargs",
    "sample_node",
]

DEFAULT_SAMPLE_TOKENS = 256
CHAIN_QUANTILE = 0.9
"""Chains seen so far are sized by this quantile of their lengths (a high one)."""
FIRST_CHAIN_SHARE = 4
"""Before any chain is seen, one chain is still drawn if the room left after the prompt is
at least the starting estimate divided by this (its cap is clamped to that room)."""


def chain_estimate(seen: list[int], start: int, quantile: float = CHAIN_QUANTILE) -> int:
    """Expected tokens of the next chain: a high quantile of the chains seen, else ``start``.

    Example:
        >>> chain_estimate([], 1000), chain_estimate([80, 95, 60, 300], 1000)
        (1000, 300)
        >>> chain_estimate(list(range(1, 101)), 1000)
        90

    """
    if not seen:
        return start
    ordered = sorted(seen)
    return max(ordered[max(math.ceil(quantile * len(ordered)) - 1, 0)], 1)


def batch_fit(
    meter: BaseMeter,
    run_budget: Budget,
    *,
    want: int,
    seen: list[int],
    start: int,
    cap: int | None,
    prompt_tokens: int,
    parallel: bool,
    model: str | None,
) -> tuple[int, int | None]:
    """How many of ``want`` chains the meter's room pays for, and each one's cap.

    A chain is expected to cost a high quantile of the chains ``seen`` (at first
    ``start``), not the full ``cap``. Each chain's cap is then its equal share of what is
    left, at most ``cap``, so no chain (or parallel branch) takes the others' share. With
    no chain seen yet, one chain is drawn if at least a quarter of ``start`` fits.
    """
    per_chain = chain_estimate(seen, start)
    per_chain = min(per_chain, cap) if cap else per_chain
    prompt_units = run_budget.units(
        input_tokens=run_budget.prompt_reservation(prompt_tokens), model=model
    )
    chain_units = max(run_budget.units(output_tokens=per_chain, model=model), 1)
    avail = meter.available()
    if parallel:
        fit = avail // (prompt_units + chain_units)
    else:
        fit = (avail - prompt_units) // chain_units
    k = max(min(want, fit), 0)
    if k < 1 and not seen:
        floor = max(run_budget.units(output_tokens=per_chain // FIRST_CHAIN_SHARE, model=model), 1)
        k = 1 if avail - prompt_units >= floor else 0
    if k < 1:
        return 0, cap
    room = avail // k - prompt_units if parallel else (avail - prompt_units) // k
    share = run_budget.max_output_for(room, model=model)
    return k, min(share, cap) if cap else share


def sample_node(func: Callable[..., Any], afunc: Callable[..., Any]) -> Any:
    """A node with a real async twin (LangGraph's lightweight callable when available)."""
    try:
        from langgraph._internal._runnable import RunnableCallable
    except ImportError:  # pragma: no cover - private API moved: the public, heavier wrapper
        return RunnableLambda(func, afunc=afunc)
    return RunnableCallable(func, afunc, name="sample")


def sample_kwargs(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The model call's keywords for one ``sample`` payload: ``n`` and its ``max_tokens``."""
    kwargs: dict[str, Any] = {"n": int(payload["n"])}
    if payload.get("max_tokens") is not None:
        kwargs["max_tokens"] = int(payload["max_tokens"])
    return kwargs
