"""What ``with_budget`` reads from and writes to a thread's checkpoints (sync and async twins).

Where a thread's numbers live, all in the checkpointer so any process sees them:

- the thread's spend: the ``spend`` channel of its checkpoints;
- spend the state never received (calls of a node that raised or called ``interrupt()``,
  whose writes LangGraph discards): a ``spend`` write under LangGraph's null task id on
  the thread's latest checkpoint. LangGraph applies such writes to the state that
  ``get_state`` shows and to the next run or resume, exactly once per branch;
- the thread's total over every run, forks included: each run's config metadata (which
  checkpoints copy) holds the thread total when the run started (``THREAD_UNITS_KEY``)
  and the branch spend it started from (``BASE_UNITS_KEY``); the total at the thread's
  newest checkpoint is ``thread units + (spend there - base units)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph._internal._constants import NULL_TASK_ID
from langgraph.checkpoint.base import BaseCheckpointSaver

from budget_graph.budget import Spend
from budget_graph.context import BASE_UNITS_KEY

__all__ = [
    "THREAD_UNITS_KEY",
    "ThreadView",
    "aread_thread",
    "arecord_missing",
    "checkpointer_of",
    "latest_config",
    "read_thread",
    "record_missing",
]

THREAD_UNITS_KEY = "budget_thread_units"
"""``config["metadata"]`` key: the thread's total units (every run, forks included) when
the run started."""


@dataclass(frozen=True, slots=True)
class ThreadView:
    """A thread as a run starts on it."""

    spend: Spend
    """Spend in the state the run starts from (pending writes applied)."""
    base_units: int
    """``BASE_UNITS_KEY`` of that checkpoint (the resumed run's base)."""
    thread_base: int
    """``THREAD_UNITS_KEY`` of that checkpoint (the resumed run's thread total at start)."""
    thread_units: int
    """The thread's total over every run and fork, at its newest checkpoint."""
    stop_reason: Any
    """The ``stop_reason`` in the state the run starts from."""


def checkpointer_of(graph: Any) -> BaseCheckpointSaver | None:
    """The graph's own checkpointer, if it has one (not inherited from a parent)."""
    saver = getattr(graph, "checkpointer", None)
    return saver if isinstance(saver, BaseCheckpointSaver) else None


def _thread_id(config: Any) -> Any:
    return ((config or {}).get("configurable") or {}).get("thread_id")


def _forked(config: Any) -> bool:
    return ((config or {}).get("configurable") or {}).get("checkpoint_id") is not None


def latest_config(config: Any) -> dict[str, Any]:
    """``config`` without its checkpoint id: the thread's newest checkpoint."""
    conf = dict((config or {}).get("configurable") or {})
    conf.pop("checkpoint_id", None)
    return {"configurable": conf}


def _units(snapshot: Any) -> int:
    spend = (snapshot.values or {}).get("spend") if snapshot is not None else None
    return spend.units if isinstance(spend, Spend) else 0


def _meta(snapshot: Any, key: str) -> int | None:
    value = (snapshot.metadata or {}).get(key) if snapshot is not None else None
    return int(value) if isinstance(value, int) else None


def _total(snapshot: Any) -> int:
    """The thread's total at ``snapshot`` (see the module docstring)."""
    thread = _meta(snapshot, THREAD_UNITS_KEY)
    if thread is None:
        return _units(snapshot)
    return thread + _units(snapshot) - (_meta(snapshot, BASE_UNITS_KEY) or 0)


def _view(here: Any, latest: Any) -> ThreadView:
    values = here.values or {}
    spend = values.get("spend")
    return ThreadView(
        spend=spend if isinstance(spend, Spend) else Spend(),
        base_units=_meta(here, BASE_UNITS_KEY) or 0,
        thread_base=_meta(here, THREAD_UNITS_KEY) or _meta(here, BASE_UNITS_KEY) or 0,
        thread_units=_total(latest),
        stop_reason=values.get("stop_reason"),
    )


def read_thread(graph: Any, config: Any) -> ThreadView | None:
    """The thread a run of ``graph`` under ``config`` starts on (``None``: no thread)."""
    if checkpointer_of(graph) is None or _thread_id(config) is None:
        return None
    here = graph.get_state(config)
    latest = graph.get_state(latest_config(config)) if _forked(config) else here
    return _view(here, latest)


async def aread_thread(graph: Any, config: Any) -> ThreadView | None:
    """Async :func:`read_thread` (for async checkpointers)."""
    if checkpointer_of(graph) is None or _thread_id(config) is None:
        return None
    here = await graph.aget_state(config)
    latest = await graph.aget_state(latest_config(config)) if _forked(config) else here
    return _view(here, latest)


def _missing(snapshot: Any, tup: Any, start: Spend, committed: Spend) -> Spend | None:
    values = snapshot.values or {}
    now = values.get("spend")
    recorded = (now if isinstance(now, Spend) else Spend()) - start
    # Tasks that finished in a step another task failed keep their writes pending on the
    # checkpoint; LangGraph applies them on resume, so they are recorded already.
    for task, channel, value in tup.pending_writes or ():
        if task != NULL_TASK_ID and channel == "spend" and isinstance(value, Spend):
            recorded = recorded + value
    missing = committed - recorded
    return missing if missing.calls > 0 or missing.units > 0 else None


def _null_writes(saver: BaseCheckpointSaver, tup: Any, missing: Spend) -> list[tuple[str, Any]]:
    # Rewrite the checkpoint's null-task writes with ours appended: writes are stored by
    # (task id, index), and a lone write at index 0 would replace (SQLite) or be dropped
    # beside (in memory) a write already there.
    existing = [(c, v) for t, c, v in (tup.pending_writes or ()) if t == NULL_TASK_ID]
    return [*existing, ("spend", missing)]


def _is_older(snapshot: Any, since: str) -> bool:
    created = getattr(snapshot, "created_at", None)
    return created is None or str(created) < since


def record_missing(
    graph: Any, config: Any, start: Spend, committed: Spend, since: str
) -> Spend | None:
    """Write spend the run committed but its checkpoint lacks; return it (``None``: none).

    ``since`` is when the run started (ISO time): a run that forked from an earlier
    checkpoint and wrote none of its own records on the checkpoint it started from.
    """
    saver = checkpointer_of(graph)
    if saver is None:
        return None
    snapshot = graph.get_state(latest_config(config))
    if _forked(config) and _is_older(snapshot, since):
        snapshot = graph.get_state(config)
    if snapshot.config is None:
        return None
    tup = saver.get_tuple(snapshot.config)
    if tup is None:
        return None
    missing = _missing(snapshot, tup, start, committed)
    if missing is None:
        return None
    saver.put_writes(tup.config, _null_writes(saver, tup, missing), NULL_TASK_ID)
    return missing


async def arecord_missing(
    graph: Any, config: Any, start: Spend, committed: Spend, since: str
) -> Spend | None:
    """Async :func:`record_missing`."""
    saver = checkpointer_of(graph)
    if saver is None:
        return None
    snapshot = await graph.aget_state(latest_config(config))
    if _forked(config) and _is_older(snapshot, since):
        snapshot = await graph.aget_state(config)
    if snapshot.config is None:
        return None
    tup = await saver.aget_tuple(snapshot.config)
    if tup is None:
        return None
    missing = _missing(snapshot, tup, start, committed)
    if missing is None:
        return None
    await saver.aput_writes(tup.config, _null_writes(saver, tup, missing), NULL_TASK_ID)
    return missing
