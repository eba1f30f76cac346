"""Drop-in budgeting for existing graphs: ``with_budget``, ``guard`` and ``budget_edge``."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, Overwrite

from budget_graph._internal import observe
from budget_graph.budget import Budget, Spend
from budget_graph.context import BASE_UNITS_KEY, Ledger, budget_config, current_meter, use_meter
from budget_graph.errors import BudgetExceededError
from budget_graph.meter import Meter

__all__ = ["BudgetedGraph", "budget_edge", "guard", "with_budget"]

OnExhausted = Literal["end", "error"]


def _merge_update(result: Any, spend: Spend, stop_reason: str | None) -> Any:
    extra: dict[str, Any] = {}
    if spend:
        extra["spend"] = spend
    if stop_reason is not None:
        extra["stop_reason"] = stop_reason
    if not extra:
        return result
    if result is None:
        return extra
    if isinstance(result, dict):
        if "spend" in result and "spend" in extra:
            extra["spend"] = result["spend"] + extra["spend"]
        return {**result, **extra}
    if isinstance(result, Command):
        update = result.update
        if update is None:
            new_update: Any = extra
        elif isinstance(update, dict):
            new_update = _merge_update(update, spend, stop_reason)
        else:  # list of (key, value) writes
            new_update = [*update, *extra.items()]
        return Command(
            graph=result.graph, update=new_update, resume=result.resume, goto=result.goto
        )
    if isinstance(result, list):  # e.g. a list of Commands / Sends: append an update
        return [*result, Command(update=extra)]
    return result


def guard(
    node: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    on_exhausted: OnExhausted = "end",
) -> Any:
    """Wrap a node so the spend of its budgeted calls lands in state as a ``spend`` delta.

    When a call inside the node is refused for budget, the node ends gracefully with
    ``stop_reason="budget"`` (and the spend it made so far) instead of raising; pass
    ``on_exhausted="error"`` to let :class:`BudgetExceededError` propagate. Pair it
    with :func:`budget_edge` to route out of the loop. Works on sync and async nodes
    and as a decorator (``@guard`` or ``@guard(name="plan")``).

    Example:
        >>> @guard
        ... def plan(state):
        ...     return {"plan": "..."}

    """
    if on_exhausted not in ("end", "error"):
        raise ValueError(f"Invalid on_exhausted: {on_exhausted!r}. Must be 'end' or 'error'")
    if node is None:
        return functools.partial(guard, name=name, on_exhausted=on_exhausted)
    label: str = name or str(getattr(node, "__name__", "node"))

    def _done(ledger: Any, info: observe.NodeInfo | None, result: Any, reason: str | None) -> Any:
        if reason is None and isinstance(result, dict):
            reason = result.get("stop_reason")
        if not ledger and reason is None and info is None:
            return result  # no budgeted call, nothing to report
        spend = ledger.spend  # summed once: the ledger adds up its calls on read
        if info is not None:
            info.usage, info.stop_reason = spend.usage, reason
            observe.notify("node_finished", info)
        return _merge_update(result, spend, reason)

    def _failed(ledger: Any, info: observe.NodeInfo | None, exc: BaseException) -> None:
        if info is not None:
            info.error, info.usage = exc, ledger.spend.usage
            observe.notify("node_finished", info)

    def _exhausted(ledger: Any, info: observe.NodeInfo | None, exc: BudgetExceededError) -> Any:
        observe.emit(
            "budget.exhausted",
            node=label,
            limit=exc.limit,
            spent=exc.spent,
            requested=exc.requested,
        )
        if on_exhausted == "error":
            if info is not None:
                info.error = exc
                observe.notify("node_finished", info)
            raise exc
        return _done(ledger, info, None, "budget")

    def _start() -> observe.NodeInfo | None:
        if not observe.state.active:  # hot path: no observer, no record
            return None
        info = observe.NodeInfo(name=label)
        observe.notify("node_started", info)
        return info

    if inspect.iscoroutinefunction(node):

        @functools.wraps(node)
        async def _awrapped(*args: Any, **kwargs: Any) -> Any:
            info = _start()
            with Ledger() as ledger:
                try:
                    result = await node(*args, **kwargs)
                except BudgetExceededError as exc:
                    return _exhausted(ledger, info, exc)
                except BaseException as exc:
                    _failed(ledger, info, exc)
                    raise
                return _done(ledger, info, result, None)

        return _awrapped

    @functools.wraps(node)
    def _wrapped(*args: Any, **kwargs: Any) -> Any:
        info = _start()
        with Ledger() as ledger:
            try:
                result = node(*args, **kwargs)
            except BudgetExceededError as exc:
                return _exhausted(ledger, info, exc)
            except BaseException as exc:
                _failed(ledger, info, exc)
                raise
            return _done(ledger, info, result, None)

    return _wrapped


def budget_edge(
    *,
    ok: str,
    low: str,
    min_remaining: int | Callable[[Any], int] = 1,
) -> Callable[[Any, RunnableConfig], str]:
    """A conditional edge: go to ``ok`` while the budget can pay for the next step, else ``low``.

    Routes to ``low`` when a node stopped for budget (``stop_reason == "budget"``) or
    the run's meter has fewer than ``min_remaining`` units left (an int, or a
    function of the state, e.g. the expected cost of the next step).

    Example:
        >>> edge = budget_edge(ok="agent", low="summarize", min_remaining=500)
        >>> # builder.add_conditional_edges("tools", edge, ["agent", "summarize"])

    """

    def route(state: Any, config: RunnableConfig) -> str:
        if isinstance(state, dict) and state.get("stop_reason") == "budget":
            return low
        meter = current_meter(config)
        if meter is None:
            return ok
        need = min_remaining(state) if callable(min_remaining) else min_remaining
        return ok if meter.available() >= need else low

    route.__name__ = f"budget_edge_{ok}_{low}"
    return route


def _is_resume(input: Any) -> bool:
    return input is None or isinstance(input, Command)


class BudgetedGraph:
    """A compiled graph whose every run gets a fresh meter for its budget.

    Built by :func:`with_budget`; everything but the run methods is delegated to the
    wrapped graph.
    """

    def __init__(
        self, graph: Any, budget: Budget, *, scope: Literal["run", "thread"] = "run"
    ) -> None:
        """Wrap ``graph`` with ``budget``; ``scope="thread"`` caps the thread's total spend."""
        if scope not in ("run", "thread"):
            raise ValueError(f"Invalid scope: {scope!r}. Must be 'run' or 'thread'")
        self.graph = graph
        self.budget = budget
        self.scope = scope
        self.last_meter: Meter | None = None
        """The meter of the most recent run (for inspection)."""
        self._unrecorded: dict[str, Spend] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.graph, name)

    def unrecorded_spend(self, thread_id: str) -> Spend:
        """Spend committed on a thread's meter but not (yet) in its checkpointed state.

        LangGraph drops the writes of a node that raised or called ``interrupt()``, yet
        the calls it made were billed. Such spend is kept here and written into state
        when the thread's next run starts, and counts against that run's meter.
        """
        with self._lock:
            return self._unrecorded.get(thread_id, Spend())

    def _prepare(self, input: Any, config: RunnableConfig | None) -> tuple[Any, _Run]:
        thread = (config or {}).get("configurable", {}).get("thread_id")
        if getattr(self.graph, "checkpointer", None) is None:
            thread = None
        start, base, stale = Spend(), 0, False
        if thread is not None:
            snapshot = self.graph.get_state(config)
            values = snapshot.values or {}
            stale = values.get("stop_reason") is not None
            if isinstance(values.get("spend"), Spend):
                start = values["spend"]
            base = int((snapshot.metadata or {}).get(BASE_UNITS_KEY) or 0)
            with self._lock:
                pending = self._unrecorded.pop(str(thread), None)
            if pending is not None:
                input = _with_spend_update(input, pending)
                start = start + pending
        if _is_resume(input):
            used = start.units - (0 if self.scope == "thread" else base)
        else:
            used = 0 if self.scope == "run" else start.units
            base = start.units
            if isinstance(input, dict):
                # Every key written: a state channel never written is empty, and LangGraph
                # pays an EmptyChannelError each time a task reads it (measured: 1% of a
                # cheap run). A new run also clears the reason the thread's last run
                # stopped for, past its reducer (keep_reason ignores None); Overwrite only
                # then, as an empty channel would store the Overwrite itself.
                input = {
                    **input,
                    "budget": self.budget,
                    "stop_reason": Overwrite(None) if stale else None,
                }
        meter = Meter(self.budget, spent_units=max(used, 0), scope=self.scope)
        self.last_meter = meter
        # Without a caller config, the meter travels in a context variable only (LangGraph
        # copies the context into its task threads): a config would cost a merge per task.
        run_config = None
        if config is not None:
            run_config = budget_config(meter, config)
            if thread is not None:
                # The run's base rides in the config metadata, which checkpoints keep (a
                # state key would cost every task a channel read).
                meta = {**(config.get("metadata") or {}), BASE_UNITS_KEY: base}
                run_config["metadata"] = meta
        return input, _Run(meter, run_config, thread, start)

    def _settle(self, run: _Run) -> None:
        """Keep spend the run committed that its checkpointed state does not show."""
        if run.thread is None:
            return
        values = self.graph.get_state(run.config).values or {}
        spend = values.get("spend")
        now = spend if isinstance(spend, Spend) else Spend()
        missing = run.meter.spend - (now - run.start)
        if missing.calls > 0 or missing.units > 0:
            with self._lock:
                key = str(run.thread)
                self._unrecorded[key] = self._unrecorded.get(key, Spend()) + missing

    def _run_info(self, run: _Run) -> observe.RunInfo:
        info = observe.RunInfo(
            name=str(getattr(self.graph, "name", None) or "graph"), meter=run.meter
        )
        observe.notify("run_started", info)
        return info

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run the graph under a fresh meter (rebuilt from state on resume)."""
        input, run = self._prepare(input, config)
        info = self._run_info(run)
        with use_meter(run.meter):
            try:
                info.state = self.graph.invoke(input, run.config, **kwargs)
            except BaseException as exc:
                info.error = exc
                raise
            finally:
                self._settle(run)
                observe.notify("run_finished", info)
        return info.state

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Async :meth:`invoke`."""
        input, run = self._prepare(input, config)
        info = self._run_info(run)
        with use_meter(run.meter):
            try:
                info.state = await self.graph.ainvoke(input, run.config, **kwargs)
            except BaseException as exc:
                info.error = exc
                raise
            finally:
                self._settle(run)
                observe.notify("run_finished", info)
        return info.state

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """Stream the graph under a fresh meter."""
        input, run = self._prepare(input, config)
        it = iter(self.graph.stream(input, run.config, **kwargs))
        try:
            while True:
                with use_meter(run.meter):
                    try:
                        item = next(it)
                    except StopIteration:
                        return
                yield item
        finally:
            self._settle(run)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Async :meth:`stream`."""
        input, run = self._prepare(input, config)
        try:
            with use_meter(run.meter):
                async for item in self.graph.astream(input, run.config, **kwargs):
                    yield item
        finally:
            self._settle(run)


@dataclass(frozen=True, slots=True)
class _Run:
    meter: Meter
    config: RunnableConfig | None
    thread: Any
    start: Spend
    """The thread's spend in state when the run started (pending spend included)."""


def _with_spend_update(input: Any, pending: Spend) -> Any:
    """Add ``pending`` to the ``spend`` a run's input writes."""
    if isinstance(input, dict):
        return {**input, "spend": input.get("spend", Spend()) + pending}
    if input is None:
        return Command(update={"spend": pending})
    if isinstance(input, Command):
        update = input.update
        if update is None:
            new: Any = {"spend": pending}
        elif isinstance(update, dict):
            new = {**update, "spend": update.get("spend", Spend()) + pending}
        else:
            new = [*update, ("spend", pending)]
        return Command(graph=input.graph, update=new, resume=input.resume, goto=input.goto)
    return input


def with_budget(
    graph: Any, budget: Budget, *, scope: Literal["run", "thread"] = "run"
) -> BudgetedGraph:
    """Run a compiled graph under a token budget.

    Every ``invoke``/``stream`` gets a fresh :class:`Meter` that every
    :func:`~budget_graph.budgeted` model inside the graph reserves on. On resume
    (input ``None`` or a ``Command``) the meter is rebuilt from the spend in the
    checkpointed state, so a resumed run never spends more than its budget in total.
    ``scope="thread"`` caps the whole thread's spend instead of each run's. A new run
    (not a resume) clears the ``stop_reason`` the thread's previous run ended with.

    Example:
        >>> # app = with_budget(builder.compile(checkpointer=saver), Budget(max_tokens=5_000))
        >>> # app.invoke({"messages": [...]}, {"configurable": {"thread_id": "1"}})

    """
    return BudgetedGraph(graph, budget, scope=scope)
