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
  newest checkpoint is ``thread units + (spend there - base units)``. (An agent's
  middleware keeps its thread total in its state instead: :func:`thread_counter`.)

A budgeted graph nested in a step of a checkpointed parent (a subgraph with no
checkpointer of its own) keeps its checkpoints in the parent's checkpointer under the
step's namespace. :func:`read_nested` reads its spend there, so a child resumed after an
``interrupt()`` counts what it spent before it, and :func:`record_missing` writes the
spend of its interrupted node there, as for a top-level thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph._internal._constants import (
    CONFIG_KEY_CHECKPOINT_MAP,
    CONFIG_KEY_CHECKPOINT_NS,
    CONFIG_KEY_CHECKPOINTER,
    CONFIG_KEY_RESUMING,
    NS_SEP,
    NULL_TASK_ID,
)
from langgraph.checkpoint.base import BaseCheckpointSaver

from budget_graph.budget import Spend
from budget_graph.context import BASE_UNITS_KEY

__all__ = [
    "THREAD_UNITS_KEY",
    "ThreadView",
    "aread_nested",
    "aread_thread",
    "arecord_missing",
    "checkpointer_of",
    "latest_config",
    "read_nested",
    "read_thread",
    "record_missing",
    "record_step_spend",
    "arecord_step_spend",
    "athread_counter",
    "thread_counter",
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
    resuming: bool = False
    """A nested run that resumes its checkpoint (its parent step is being resumed)."""


def checkpointer_of(graph: Any) -> BaseCheckpointSaver | None:
    """The graph's own checkpointer, if it has one (not inherited from a parent)."""
    saver = getattr(graph, "checkpointer", None)
    return saver if isinstance(saver, BaseCheckpointSaver) else None


def _lent(graph: Any, config: Any) -> dict[str, Any] | None:
    """For a graph with no checkpointer running in a checkpointed parent's step: the
    config that reads and writes its checkpoints (``None`` otherwise)."""
    if getattr(graph, "checkpointer", None) is not None:
        return None
    conf = (config or {}).get("configurable") or {}
    saver, ns, thread = (
        conf.get(CONFIG_KEY_CHECKPOINTER),
        conf.get(CONFIG_KEY_CHECKPOINT_NS),
        conf.get("thread_id"),
    )
    if not isinstance(saver, BaseCheckpointSaver) or not ns or thread is None:
        return None
    return {
        "configurable": {
            "thread_id": thread,
            CONFIG_KEY_CHECKPOINT_NS: ns,
            CONFIG_KEY_CHECKPOINTER: saver,
        }
    }


def _saver(graph: Any, config: Any) -> tuple[BaseCheckpointSaver, dict[str, Any]] | None:
    """The checkpointer of the run's checkpoints and the config of its newest one."""
    own = checkpointer_of(graph)
    if own is not None:
        return own, latest_config(config)
    lent = _lent(graph, config)
    if lent is None:
        return None
    return lent["configurable"][CONFIG_KEY_CHECKPOINTER], lent


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


def _nested_view(snapshot: Any, config: Any) -> ThreadView:
    # The child's spend channel holds its own spend since it started (a nested run's
    # input leaves the parent's out), so a resumed child's meter starts from all of it.
    values = snapshot.values or {}
    spend = values.get("spend")
    spend = spend if isinstance(spend, Spend) else Spend()
    resuming = bool(((config or {}).get("configurable") or {}).get(CONFIG_KEY_RESUMING))
    return ThreadView(
        spend=spend,
        base_units=0,
        thread_base=0,
        thread_units=spend.units,
        stop_reason=values.get("stop_reason"),
        resuming=resuming and snapshot.config is not None,
    )


def read_nested(graph: Any, config: Any) -> ThreadView | None:
    """The checkpoint a nested run of ``graph`` starts on, in its parent's checkpointer.

    ``None`` when ``graph`` has its own checkpointer or its parent has none. A run
    whose parent step is not being resumed starts on an empty namespace.
    """
    lent = _lent(graph, config)
    return None if lent is None else _nested_view(graph.get_state(lent), config)


async def aread_nested(graph: Any, config: Any) -> ThreadView | None:
    """Async :func:`read_nested`."""
    lent = _lent(graph, config)
    return None if lent is None else _nested_view(await graph.aget_state(lent), config)


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
    found = _saver(graph, config)
    if found is None:
        return None
    saver, newest = found
    snapshot = graph.get_state(newest)
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
    saver.put_writes(tup.config, _null_writes(tup, {"spend": missing}), NULL_TASK_ID)
    return missing


async def arecord_missing(
    graph: Any, config: Any, start: Spend, committed: Spend, since: str
) -> Spend | None:
    """Async :func:`record_missing`."""
    found = _saver(graph, config)
    if found is None:
        return None
    saver, newest = found
    snapshot = await graph.aget_state(newest)
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
    await saver.aput_writes(tup.config, _null_writes(tup, {"spend": missing}), NULL_TASK_ID)
    return missing


def _step_checkpoint(config: Any) -> tuple[BaseCheckpointSaver, RunnableConfig] | None:
    """The checkpointer and checkpoint the task running under ``config`` started from."""
    conf = (config or {}).get("configurable") or {}
    saver, thread = conf.get(CONFIG_KEY_CHECKPOINTER), conf.get("thread_id")
    if not isinstance(saver, BaseCheckpointSaver) or thread is None:
        return None
    graph_ns = str(conf.get(CONFIG_KEY_CHECKPOINT_NS) or "").rpartition(NS_SEP)[0]
    checkpoint_id = (conf.get(CONFIG_KEY_CHECKPOINT_MAP) or {}).get(graph_ns)
    if checkpoint_id is None:
        return None
    target = {"thread_id": thread, CONFIG_KEY_CHECKPOINT_NS: graph_ns}
    return saver, RunnableConfig(configurable={**target, "checkpoint_id": checkpoint_id})


def record_step_spend(config: Any, writes: dict[str, Any]) -> bool:
    """Write ``writes`` (e.g. spend deltas) as applied on resume to the checkpoint the
    task running under ``config`` started from; ``False`` when it has no checkpointer.

    A task paused by ``interrupt()`` loses its writes, and reruns on resume: what it
    spent before pausing reaches its graph's state this way, exactly once.
    """
    found = _step_checkpoint(config)
    if found is None:
        return False
    saver, target = found
    # With LangGraph's default async durability the checkpoint may not be saved yet;
    # its writes can be stored before it (they are keyed by its id).
    tup = saver.get_tuple(target)
    saver.put_writes(target, _null_writes(tup, writes), NULL_TASK_ID)
    return True


async def arecord_step_spend(config: Any, writes: dict[str, Any]) -> bool:
    """Async :func:`record_step_spend`."""
    found = _step_checkpoint(config)
    if found is None:
        return False
    saver, target = found
    tup = await saver.aget_tuple(target)
    await saver.aput_writes(target, _null_writes(tup, writes), NULL_TASK_ID)
    return True


def _null_writes(tup: Any, writes: dict[str, Any]) -> list[tuple[str, Any]]:
    # Ours appended to the checkpoint's null-task writes: writes are stored by (task id,
    # index); a lone one at index 0 would replace (SQLite) or be dropped beside one there.
    pending = (tup.pending_writes if tup is not None else None) or ()
    existing = [(c, v) for t, c, v in pending if t == NULL_TASK_ID]
    return [*existing, *writes.items()]


def _counter(tup: Any, key: str) -> int:
    # The channel plus every delta pending on it (new input drops a failed step's ones).
    value = (tup.checkpoint.get("channel_values") or {}).get(key)
    total = value if isinstance(value, int) else 0
    for _task, channel, delta in tup.pending_writes or ():
        if channel == key and isinstance(delta, int):
            total += delta
    return total


class _HeadScan:
    """Folds checkpoints, newest first, into the largest ``key`` up to the run's head.

    For a summed thread total in state that each run raises to the thread's total as it
    starts (``thread_token_spend``): the head holds every branch's total, no checkpoint
    more. A run's own come first, down to its start (``"input"``, ``"fork"``; or an update).
    """

    STARTS = ("input", "fork", "update")
    LIMIT = 32  # checkpoints read back, at most, to find the head before a run

    def __init__(self, key: str) -> None:
        self.key, self.best, self.past_input = key, 0, False

    def add(self, tup: Any) -> bool:
        """Take one checkpoint; ``False`` once the head has been read."""
        self.best = max(self.best, _counter(tup, self.key))
        if self.past_input:
            return False
        self.past_input = (tup.metadata or {}).get("source") in self.STARTS
        return True


def thread_counter(config: Any, key: str) -> int | None:
    """The largest ``key`` (a summed counter) up to the thread's head before the run of the
    task running under ``config`` (``None`` without a checkpointer; see :class:`_HeadScan`)."""
    found = _step_checkpoint(config)
    if found is None:
        return None
    saver, step = found
    scan = _HeadScan(key)
    thread = RunnableConfig(configurable=latest_config(step)["configurable"])
    for tup in saver.list(thread, before=step, limit=_HeadScan.LIMIT):
        if not scan.add(tup):
            break
    return scan.best


async def athread_counter(config: Any, key: str) -> int | None:
    """Async :func:`thread_counter`."""
    found = _step_checkpoint(config)
    if found is None:
        return None
    saver, step = found
    scan = _HeadScan(key)
    thread = RunnableConfig(configurable=latest_config(step)["configurable"])
    async for tup in saver.alist(thread, before=step, limit=_HeadScan.LIMIT):
        if not scan.add(tup):
            break
    return scan.best
