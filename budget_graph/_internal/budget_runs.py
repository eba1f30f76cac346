"""One ``with_budget`` run's record and the decisions about it that need no graph method."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from budget_graph._internal import observe, threads
from budget_graph._internal.run_flags import RunFlags
from budget_graph.budget import Budget, Spend
from budget_graph.meter import Meter

__all__ = [
    "Run",
    "apersist_ending",
    "as_child_output",
    "run_meter",
    "committed",
    "is_resume",
    "now",
    "persist_ending",
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
    used: int = 0
    """Units the meter counted as spent when the run started."""
    latest: Any = None
    """The last full state the run streamed."""
    ended: dict[str, Any] | None = field(default=None)
    """The update the run ended with when the budget refused a call outside a guard."""


def committed(run: Run) -> Spend:
    """What the run committed: its calls' spend, plus units charged without usage (tool costs)."""
    spend = run.meter.spend
    bare = run.meter.spent - run.used - spend.units
    return spend + Spend(units=bare) if bare > 0 else spend


def run_meter(budget: Budget, used: int, scope: str, parent: Any) -> Meter:
    return Meter(budget, spent_units=used, scope=scope, parent=parent)


def as_child_output(values: dict[str, Any], parent: Any, scope: str) -> dict[str, Any]:
    """A nested run's final state as its parent receives it.

    The child's ``spend`` is its own (the delta the parent adds once); its budget stays
    its own; a stop for the child's own limit is reported under ``stop_reasons`` and
    does not end the parent, unless the parent's budget has no room left either.
    """
    out = dict(values)
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
    """Record a budget ending in the thread, as the refused node (sync)."""
    if run.ended is None or not run.threaded:
        return
    snapshot = graph.get_state(threads.latest_config(run.config))
    ending = _ending_update(graph, run, snapshot)
    if ending is not None:
        graph.update_state(snapshot.config, ending[0], as_node=ending[1])


async def apersist_ending(graph: Any, run: Run) -> None:
    """Async :func:`persist_ending`."""
    if run.ended is None or not run.threaded:
        return
    snapshot = await graph.aget_state(threads.latest_config(run.config))
    ending = _ending_update(graph, run, snapshot)
    if ending is not None:
        await graph.aupdate_state(snapshot.config, ending[0], as_node=ending[1])
