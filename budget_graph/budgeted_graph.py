"""``with_budget``: a compiled graph as a Runnable whose every run is capped by a budget."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from langgraph.pregel.protocol import PregelProtocol

from budget_graph._internal import observe, threads
from budget_graph._internal.budget_runs import (
    Run,
    acallback_run,
    apersist_ending,
    as_child_output,
    callback_run,
    closing_update,
    committed,
    fresh_input,
    is_resume,
    now,
    persist_ending,
    run_meter,
)
from budget_graph._internal.graph_facade import GraphFacade
from budget_graph._internal.run_flags import RUN_KEY, RunFlags
from budget_graph._internal.streams import Fold, Shape
from budget_graph.budget import Budget, Spend
from budget_graph.context import BASE_UNITS_KEY, budget_config, current_meter, use_meter
from budget_graph.errors import BudgetExceededError
from budget_graph.meter import Meter

__all__ = ["RAISED_BY_GUARD", "BudgetedGraph", "budget_message", "with_budget"]

Scope = Literal["run", "thread"]
OnExhausted = Literal["end", "error"]
_INTERRUPT = "__interrupt__"
RAISED_BY_GUARD = "raised by guard(on_exhausted='error') of node"
"""Note on a refusal a guard re-raised on purpose: ``with_budget`` lets it propagate."""


def budget_message(exc: BudgetExceededError) -> str:
    """The text a run ends with when its budget refused the next model call."""
    return f"Stopped before the next model call because of the budget. {exc}."


class BudgetedGraph(GraphFacade, PregelProtocol):
    """A compiled graph whose every run gets a fresh meter for its budget.

    A LangGraph ``PregelProtocol`` Runnable: ``invoke``/``ainvoke``/``stream``/``astream``
    are one run each (``batch``, ``abatch``, ``astream_events`` and ``with_config``
    come from ``Runnable`` on top of them), it can be a node of a parent graph, a
    subgraph, or a step of ``|``. Built by :func:`with_budget`.
    """

    def __init__(
        self,
        graph: Any,
        budget: Budget,
        *,
        scope: Scope = "run",
        name: str | None = None,
        on_exhausted: OnExhausted = "end",
    ) -> None:
        """Wrap ``graph`` with ``budget`` (see :func:`with_budget` for the arguments)."""
        if not isinstance(budget, Budget):
            raise TypeError(
                f"with_budget needs a Budget (got {type(budget).__name__} {budget!r}); "
                "e.g. with_budget(graph, Budget(max_tokens=5000))"
            )
        if scope not in ("run", "thread"):
            raise ValueError(f"Invalid scope: {scope!r}. Must be 'run' or 'thread'")
        if on_exhausted not in ("end", "error"):
            raise ValueError(f"Invalid on_exhausted: {on_exhausted!r}. Must be 'end' or 'error'")
        if not callable(getattr(graph, "stream", None)) or not callable(
            getattr(graph, "astream", None)
        ):
            raise TypeError(
                f"with_budget needs a compiled graph (got {type(graph).__name__}); "
                "call builder.compile() first"
            )
        self.graph = graph
        self.budget = budget
        self.scope = scope
        self.on_exhausted = on_exhausted
        self.name = name or str(getattr(graph, "name", None) or "graph")
        self.scope_name = name or scope
        """The level's name in errors and spans (``"run"``/``"thread"`` unless named)."""
        self.last_meter: Meter | None = None
        """The meter of the most recent run (for inspection)."""

    # -- one core per run ---------------------------------------------------------------

    def _open(
        self, input: Any, cfg: RunnableConfig, parent: Any, view: Any, *, own_run: bool
    ) -> Run:
        """Decide a run's meter, config and input (no I/O: the thread was read already)."""
        start, used, base, thread_units = Spend(), 0, 0, 0
        resume = is_resume(input)
        if view is not None:
            start = view.spend
            if resume or view.resuming:
                base, thread_units = view.base_units, view.thread_base
                used = start.units - base
            else:
                base, thread_units = start.units, view.thread_units
            if self.scope == "thread":
                used = view.thread_units
        if not resume and isinstance(input, dict):
            stale = view is not None and view.stop_reason is not None
            nested = parent is not None
            input = fresh_input(input, self.budget, self.channels, stale=stale, nested=nested)
        scope = self.scope_name
        if parent is not None and scope == self.scope:  # unnamed and nested: the graph's name
            scope = str(self.name)
        used = max(used, 0)
        meter = run_meter(self.budget, used, scope, parent)
        self.last_meter = meter
        flags = RunFlags()
        run_config = budget_config(meter, cfg)
        run_config["configurable"][RUN_KEY] = flags
        threaded = view is not None
        if threaded:
            # The run's bases ride in the config metadata, which checkpoints keep.
            run_config["metadata"] = {
                **(cfg.get("metadata") or {}),
                BASE_UNITS_KEY: base,
                threads.THREAD_UNITS_KEY: thread_units,
            }
        info = observe.RunInfo(name=str(self.name), meter=meter, config=cfg if own_run else None)
        since = now() if threaded else ""  # only a threaded run's end compares times with it
        return Run(meter, run_config, input, start, threaded, parent, flags, info, since, used)

    def _started(self, run: Run) -> None:
        observe.notify("run_started", run.info)

    def _finished(self, run: Run, missing: Spend | None) -> None:
        info = run.info
        if info.state is None:
            info.state = run.latest
        if missing is not None:
            observe.emit("budget.unrecorded_spend", units=missing.units, calls=missing.calls)
        observe.notify("run_finished", info)

    def _config(self, config: RunnableConfig | None) -> RunnableConfig:
        """The caller's config completed."""
        cfg = ensure_config(config)
        # ensure_config fills in LangGraph's default recursion_limit (25), which would then
        # override a limit the wrapped graph was given (graph.with_config(recursion_limit=))
        bound = (getattr(self.graph, "config", None) or {}).get("recursion_limit")
        if bound is not None and "recursion_limit" not in (config or {}):
            cfg["recursion_limit"] = bound
        return cfg

    @contextmanager
    def _session(self, input: Any, config: RunnableConfig | None) -> Iterator[Run]:
        cfg, manager = callback_run(self._config(config), input, self.get_name())
        parent = current_meter(cfg)
        if parent is None:
            view = threads.read_thread(self.graph, cfg)
        else:  # a nested run resumes its own checkpoint in its parent's checkpointer
            view = threads.read_nested(self.graph, cfg)
        run = self._open(input, cfg, parent, view, own_run=bool(manager.handlers))
        self._started(run)
        missing = None
        try:
            yield run
        except GeneratorExit:  # the consumer stopped iterating: not an error
            manager.on_chain_end(run.latest)
            raise
        except BaseException as exc:
            run.info.error = exc
            manager.on_chain_error(exc)
            raise
        finally:
            try:
                if run.threaded:
                    missing = threads.record_missing(
                        self.graph, run.config, run.start, committed(run), run.since
                    )
            finally:
                self._finished(run, missing)
        manager.on_chain_end(run.info.state)

    @asynccontextmanager
    async def _asession(self, input: Any, config: RunnableConfig | None) -> AsyncIterator[Run]:
        cfg, manager = await acallback_run(self._config(config), input, self.get_name())
        parent = current_meter(cfg)
        if parent is None:
            view = await threads.aread_thread(self.graph, cfg)
        else:
            view = await threads.aread_nested(self.graph, cfg)
        run = self._open(input, cfg, parent, view, own_run=bool(manager.handlers))
        self._started(run)
        missing = None
        try:
            yield run
        except GeneratorExit:
            await manager.on_chain_end(run.latest)
            raise
        except BaseException as exc:
            run.info.error = exc
            await manager.on_chain_error(exc)
            raise
        finally:
            try:
                if run.threaded:
                    missing = await threads.arecord_missing(
                        self.graph, run.config, run.start, committed(run), run.since
                    )
            finally:
                self._finished(run, missing)
        await manager.on_chain_end(run.info.state)

    def _end(self, run: Run, exc: BudgetExceededError) -> None:
        """End a run whose budget refused a call no guard caught: a message, a reason."""
        notes = getattr(exc, "__notes__", ())
        if self.on_exhausted == "error" or any(RAISED_BY_GUARD in n for n in notes):
            raise exc
        observe.emit("budget.exhausted", limit=exc.limit, spent=exc.spent, requested=exc.requested)
        latest = run.latest if isinstance(run.latest, dict) else {}
        run.ended = {"stop_reason": "budget"}
        if "messages" in latest:
            run.ended["messages"] = [AIMessage(content=budget_message(exc), name="budget")]

    def _closing(self, run: Run, shape: Shape) -> list[Any]:
        """Chunks of the run's last word (see :func:`closing_update`), if it has one."""
        update = closing_update(run, self.channels)
        return shape.chunks(run.latest, update, "budget") if update else []

    def _result(self, run: Run, values: Any) -> Any:
        """The run's result (a nested run's: its output for its parent)."""
        if isinstance(values, dict) and run.parent is not None:
            values = as_child_output(values, run.parent, run.meter.scope, run.start)
        return values

    # -- streaming: the core every entry point goes through --------------------------------

    def _stream(
        self, input: Any, config: RunnableConfig | None, kwargs: dict[str, Any], out: list[Run]
    ) -> Iterator[Any]:
        shape = Shape(self.graph, kwargs)
        with self._session(input, config) as run:
            out.append(run)
            it = iter(self.graph.stream(run.input, run.config, **shape.inner_kwargs(kwargs)))
            current = use_meter(run.meter)  # entered around each step, never across a yield
            try:
                while True:
                    with current:
                        try:
                            chunk = next(it)
                        except StopIteration:
                            break
                        except BudgetExceededError as exc:
                            self._end(run, exc)
                            break
                    values, chunk = shape.split(chunk)
                    if values is not None:
                        run.latest = values
                    if chunk is not None:
                        yield chunk
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            yield from self._closing(run, shape)
            persist_ending(self.graph, run)
            run.info.state = self._result(run, run.latest)

    async def _astream(
        self, input: Any, config: RunnableConfig | None, kwargs: dict[str, Any], out: list[Run]
    ) -> AsyncIterator[Any]:
        shape = Shape(self.graph, kwargs)
        async with self._asession(input, config) as run:
            out.append(run)
            ait = aiter(self.graph.astream(run.input, run.config, **shape.inner_kwargs(kwargs)))
            current = use_meter(run.meter)
            try:
                while True:
                    with current:
                        try:
                            chunk = await anext(ait)
                        except StopAsyncIteration:
                            break
                        except BudgetExceededError as exc:
                            self._end(run, exc)
                            break
                    values, chunk = shape.split(chunk)
                    if values is not None:
                        run.latest = values
                    if chunk is not None:
                        yield chunk
            finally:
                aclose = getattr(ait, "aclose", None)
                if aclose is not None:
                    await aclose()
            for item in self._closing(run, shape):
                yield item
            await apersist_ending(self.graph, run)
            run.info.state = self._result(run, run.latest)

    def stream(  # type: ignore[override]
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """Stream the graph under a fresh meter (rebuilt from the thread on resume).

        An abandoned stream (the consumer stops iterating) still ends the run: its
        spend is settled and its run is reported finished.
        """
        yield from self._stream(input, config, kwargs, [])

    async def astream(  # type: ignore[override]
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Async :meth:`stream` (async checkpointers are read with their async methods)."""
        async for chunk in self._astream(input, config, kwargs, []):
            yield chunk

    # -- invoke: a fold over the stream, as Pregel.invoke does ---------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run the graph under a fresh meter and return its final state."""
        fold = Fold(kwargs)
        runs: list[Run] = []
        for chunk in self._stream(input, config, fold.kwargs, runs):
            fold.add(chunk)
        return fold.result(lambda values: self._result(runs[0], values))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Async :meth:`invoke`."""
        fold = Fold(kwargs)
        runs: list[Run] = []
        async for chunk in self._astream(input, config, fold.kwargs, runs):
            fold.add(chunk)
        return fold.result(lambda values: self._result(runs[0], values))

    # -- everything else is the wrapped graph's, budget kept ----------------------------

    def with_config(self, config: RunnableConfig | None = None, **kwargs: Any) -> BudgetedGraph:
        """The same budget around ``graph.with_config(...)``."""
        return BudgetedGraph(
            self.graph.with_config(config, **kwargs),
            self.budget,
            scope=self.scope,
            name=self.name if self.scope_name != self.scope else None,
            on_exhausted=self.on_exhausted,
        )

    def __repr__(self) -> str:
        return f"BudgetedGraph({self.name!r}, {self.budget!r}, scope={self.scope!r})"


def with_budget(
    graph: Any,
    budget: Budget,
    *,
    scope: Scope = "run",
    name: str | None = None,
    on_exhausted: OnExhausted = "end",
) -> BudgetedGraph:
    """Run a compiled graph under a token budget.

    Every run (``invoke``, ``ainvoke``, ``stream``, ``astream``, ``batch``,
    ``astream_events``, as a node or subgraph...) gets a fresh :class:`Meter` that every
    :func:`~budget_graph.budgeted` model inside the graph reserves on. On resume (input
    ``None`` or a ``Command``) the meter is rebuilt from the thread's checkpointed
    spend, so a resumed run never spends more than its budget in total. Spend a failed
    or interrupted node made is written to the thread's checkpoint, so a resume in any
    process sees it. A run started while another budgeted run is current (a budgeted
    subgraph as a node, or invoked inside a node) is *nested*: its meter is a child of
    the current one, so the tightest enclosing budget wins.

    Args:
        graph: A compiled LangGraph graph.
        budget: The run's :class:`Budget`.
        scope: ``"run"`` caps each run; ``"thread"`` caps the thread's total over every
            run on its thread id, forks from earlier checkpoints included.
        name: The level's name in errors, spans and ``stop_reasons`` (nested budgets).
        on_exhausted: When a refused call escapes every guard (e.g. a prebuilt agent's
            model node): ``"end"`` ends the run with ``stop_reason="budget"`` (and a
            message in ``messages`` when the state has them); ``"error"`` raises
            :class:`BudgetExceededError`.

    Raises:
        TypeError: ``budget`` is not a :class:`Budget`, or ``graph`` is not compiled.
        ValueError: Invalid ``scope`` or ``on_exhausted``.

    Example:
        >>> # app = with_budget(builder.compile(checkpointer=saver), Budget(max_tokens=5_000))
        >>> # app.invoke({"messages": [...]}, {"configurable": {"thread_id": "1"}})

    """
    return BudgetedGraph(graph, budget, scope=scope, name=name, on_exhausted=on_exhausted)
