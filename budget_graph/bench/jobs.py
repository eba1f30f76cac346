"""Run a benchmark's independent jobs in worker processes; Ctrl-C stops them at once.

Also the one rule turning ``budget_tokens`` / ``budget_fractions`` into per-item budgets,
shared by the runners and the CLI.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["resolve_budgets", "run_jobs", "validate_budgets"]

T = TypeVar("T")


def validate_budgets(
    budget_tokens: Sequence[int] | None, budget_fractions: Sequence[float] | None
) -> None:
    """Check budgets eagerly.

    Raises:
        ValueError: Both given, a token budget < 1 or not an integer, or a fraction that
            is not a finite number > 0 (the message names the field and the value).

    """
    if budget_tokens is not None and budget_fractions is not None:
        raise ValueError("Give budget_tokens or budget_fractions, not both")
    for t in budget_tokens or ():
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ValueError(f"Invalid budget_tokens entry {t!r}: must be an integer >= 1")
    for f in budget_fractions or ():
        if isinstance(f, bool) or not isinstance(f, int | float) or not math.isfinite(f) or f <= 0:
            raise ValueError(f"Invalid budget_fractions entry {f!r}: must be a finite number > 0")


def resolve_budgets(
    budget_tokens: Sequence[int] | None,
    budget_fractions: Sequence[float] | None,
    reference_mean: Callable[[], float],
) -> list[int]:
    """Per-item token budgets from tokens, or from fractions of a reference mean.

    Per-item token budgets: ``budget_tokens`` as given, or each fraction of the
    reference method's mean tokens per item (rounded, at least 1).

    ``reference_mean`` is only called when fractions are given.
    """
    validate_budgets(budget_tokens, budget_fractions)
    if budget_tokens is not None:
        return list(dict.fromkeys(budget_tokens))
    if not budget_fractions:
        return []
    mean = reference_mean()
    return list(dict.fromkeys(max(int(round(f * mean)), 1) for f in budget_fractions))


def _ignore_sigint() -> None:
    # Workers leave Ctrl-C to the parent, which terminates them; no traceback per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _call(args: tuple[Callable[..., Any], int, tuple[Any, ...]]) -> tuple[int, Any]:
    fn, index, job = args
    return index, fn(*job)


def run_jobs(
    fn: Callable[..., T],
    jobs: Sequence[tuple[Any, ...]],
    *,
    workers: int | None = None,
    done: Callable[[int, T], None] | None = None,
    order: Sequence[int] | None = None,
    context: str = "fork",
) -> list[T]:
    """``[fn(*job) for job in jobs]``, in worker processes when ``workers > 1``.

    Args:
        fn: A module-level function (workers are forked).
        jobs: Argument tuples.
        workers: Processes (default: up to 2, at most one per job).
        done: Called in the parent as ``done(index, result)`` when a job finishes.
        order: The order to start jobs in (default: as given); results keep job order.
        context: The multiprocessing start method (``"spawn"`` for callers whose process
            has threads that may hold locks).

    On ``KeyboardInterrupt`` the pending jobs are dropped and the workers terminated at
    once before it propagates.

    """
    n = workers if workers is not None else min(2, os.cpu_count() or 1)
    n = max(1, min(n, len(jobs)))
    results: dict[int, T] = {}
    sequence = list(order) if order is not None else list(range(len(jobs)))
    if n <= 1:
        for i in sequence:
            results[i] = fn(*jobs[i])
            if done is not None:
                done(i, results[i])
        return [results[i] for i in range(len(jobs))]
    ctx = multiprocessing.get_context(context)
    pool = ctx.Pool(n, initializer=_ignore_sigint)
    try:
        for i, result in pool.imap_unordered(_call, [(fn, i, jobs[i]) for i in sequence]):
            results[i] = result
            if done is not None:
                done(i, result)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    return [results[i] for i in range(len(jobs))]
