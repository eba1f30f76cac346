"""One ``with_budget`` run's record and the decisions about it that need no graph method."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import (
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    patch_config,
)
from langgraph.types import Command, Overwrite

from budget_graph._internal import observe, threads
from budget_graph._internal.run_flags import RunFlags
from budget_graph.budget import Budget, Spend
from budget_graph.meter import Meter

__all__ = [
    "Run",
    "acallback_run",
    "apersist_ending",
    "as_child_output",
    "callback_run",
    "closing_update",
    "committed",
    "fresh_input",
    "is_resume",
    "now",
    "persist_ending",
    "run_meter",
]


def is_resume(input: Any) -> bool:
    return input is None or isinstance(input, Command)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


@dataclass(slots=True)
class Run:
    """One run of a budgeted graph: what its start decided, and what it saw."""

    meter: Any
    config: RunnableConfig
    input: Any
    start: Spend
    """The thread's spend in state when the run started (pending writes applied)."""
    threaded: bool
    parent: Any
    """The enclosing run's meter, when this run is nested in another budgeted run."""
    flags: RunFlags
    info: observe.RunInfo
    since: str
    """When the run started (ISO time), for a threaded run; else empty."""
    used: int = 0
    """Units the meter counted as spent when the run started."""
    latest: Any = None
    """The last full state the run streamed."""
    ended: dict[str, Any] | None = field(default=None)
    """The update the run ended with when the budget refused a call outside a guard."""


# A run's own callback run is the callback parent of the graph's run (astream_events'
# root). It is opened only when a handler would receive it (the caller's callbacks,
# LangChain's configure hooks and tracers, an instrumentor's): without one it is
# unobservable, and LangGraph does per-task work for a callback manager even when it has
# no handler. Then the caller's config passes through and the run ends on a no-op manager.


def callback_run(
    cfg: RunnableConfig, input: Any, name: str
) -> tuple[RunnableConfig, CallbackManagerForChainRun]:
    """The run's config and callback run (a no-op one when no handler would see it)."""
    callbacks = get_callback_manager_for_config(cfg)
    if not callbacks.handlers:
        return cfg, CallbackManagerForChainRun.get_noop_manager()
    manager = callbacks.on_chain_start(None, input, name=name, run_id=cfg.get("run_id"))
    return patch_config(cfg, callbacks=manager.get_child()), manager


async def acallback_run(
    cfg: RunnableConfig, input: Any, name: str
) -> tuple[RunnableConfig, AsyncCallbackManagerForChainRun]:
    """Async :func:`callback_run`."""
    callbacks = get_async_callback_manager_for_config(cfg)
    if not callbacks.handlers:
        return cfg, AsyncCallbackManagerForChainRun.get_noop_manager()
    manager = await callbacks.on_chain_start(None, input, name=name, run_id=cfg.get("run_id"))
    return patch_config(cfg, callbacks=manager.get_child()), manager


def committed(run: Run) -> Spend:
    """What the run committed: its calls' spend, plus units charged without usage (tool costs)."""
    spend = run.meter.spend
    bare = run.meter.spent - run.used - spend.units
    return spend + Spend(units=bare) if bare > 0 else spend


def run_meter(budget: Budget, used: int, scope: str, parent: Any) -> Meter:
    return Meter(budget, spent_units=used, scope=scope, parent=parent)


def fresh_input(
    input: dict[str, Any], budget: Budget, channels: Any, *, stale: bool, nested: bool
) -> dict[str, Any]:
    """A new run's input: the budget written, a stale stop reason cleared."""
    out = dict(input)
    if nested:
        # The parent's spend stays the parent's: this run's state holds its own spend,
        # which its output hands back to the parent once.
        out.pop("spend", None)
        out.pop("stop_reasons", None)
    # Every key written: a channel never written is empty, and LangGraph pays an
    # EmptyChannelError each time a task reads it. A new run also clears the reason the
    # thread's last run stopped for, past its reducer (Overwrite only then: an empty
    # channel would store the Overwrite itself).
    if "budget" in channels:
        out["budget"] = budget
    if "stop_reason" in channels:
        out["stop_reason"] = Overwrite(None) if stale else None
    return out


def closing_update(run: Run, channels: Any) -> dict[str, Any] | None:
    """The run's last word: a budget ending, and spend no node wrote to state.

    Calls made outside a guard (a prebuilt agent's model node, a node that raised or
    paused) were committed on the meter but never written to ``spend``: the run's
    final state gets them here, once. Sets ``run.latest`` to the state with the update.
    """
    latest = run.latest if isinstance(run.latest, dict) else {}
    update: dict[str, Any] = dict(run.ended or {})
    if run.flags.low_node and latest.get("stop_reason") is None:
        update.setdefault("stop_reason", "budget")
    if "spend" in channels:
        now = latest.get("spend")
        now = now if isinstance(now, Spend) else Spend()
        done = committed(run)
        # Totals first: the per-node difference is built only when something is missing.
        short = done.usage - (now.usage - run.start.usage)
        if short.calls > 0 or short.units > 0:
            update["spend"] = done - (now - run.start)
    if not update:
        return None
    values = {**latest, **update}
    if "messages" in update:
        values["messages"] = [*latest.get("messages", ()), *update["messages"]]
    if "spend" in update:
        values["spend"] = (latest.get("spend") or Spend()) + update["spend"]
    run.latest = values
    return update


def as_child_output(
    values: dict[str, Any], parent: Any, scope: str, start: Spend | None = None
) -> dict[str, Any]:
    """A nested run's final state as its parent receives it.

    The child's ``spend`` is what it spent in this run (the delta the parent adds once:
    a resumed child's spend before the interrupt reached the parent then); its budget
    stays its own; a stop for the child's own limit is reported under ``stop_reasons``
    and does not end the parent, unless the parent's budget has no room left either.
    """
    out = dict(values)
    if start and isinstance(out.get("spend"), Spend):
        out["spend"] = out["spend"] - start
    out.pop("budget", None)
    reason = out.pop("stop_reason", None)
    if reason is not None:
        out["stop_reasons"] = {**(out.get("stop_reasons") or {}), scope: reason}
        if reason == "budget" and parent.available() <= 0:
            out["stop_reason"] = "budget"
    return out


def _ending_update(graph: Any, run: Run, snapshot: Any) -> tuple[dict[str, Any], str] | None:
    """The update recording a budget ending in the thread, as the refused node."""
    if run.ended is None or snapshot is None or len(snapshot.next) != 1:
        return None
    channels = getattr(graph, "channels", None) or {}
    update = {k: v for k, v in run.ended.items() if k in channels}
    return (update, snapshot.next[0]) if update else None


def persist_ending(graph: Any, run: Run) -> None:
    """Record a budget ending in the thread, as the refused node (sync; not for nested runs)."""
    if run.ended is None or not run.threaded or run.parent is not None:
        return
    snapshot = graph.get_state(threads.latest_config(run.config))
    ending = _ending_update(graph, run, snapshot)
    if ending is not None:
        graph.update_state(snapshot.config, ending[0], as_node=ending[1])


async def apersist_ending(graph: Any, run: Run) -> None:
    """Async :func:`persist_ending`."""
    if run.ended is None or not run.threaded or run.parent is not None:
        return
    snapshot = await graph.aget_state(threads.latest_config(run.config))
    ending = _ending_update(graph, run, snapshot)
    if ending is not None:
        await graph.aupdate_state(snapshot.config, ending[0], as_node=ending[1])
