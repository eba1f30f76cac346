"""Run spans: ``trace_run`` around any graph run, and ``traced(graph)`` for every entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from budget_graph._internal import observe
from budget_graph._internal.observe import RunInfo
from budget_graph.telemetry.tracer import ABSORB_NESTED_RUN

__all__ = ["TracedGraph", "trace_run", "traced"]


@contextmanager
def trace_run(
    name: str = "run", *, meter: Any = None, absorb_nested: bool = False
) -> Iterator[RunInfo]:
    """Make everything inside the block one run: a run span with its rolled-up spend.

    Set ``run.state`` to the final state so the span gets ``budget.stop_reason``; the
    run's meter is picked up from its first budgeted call (or pass ``meter``).
    ``absorb_nested=True`` merges the first run reported inside the block (e.g. by a
    ``with_budget`` graph) into this one instead of nesting a second run span.

    Example:
        >>> with trace_run("solve") as run:
        ...     run.state = {"stop_reason": "solved"}  # e.g. app.invoke(...)

    """
    info = RunInfo(name=name, meter=meter)
    if absorb_nested:
        info.slot[ABSORB_NESTED_RUN] = True
    observe.notify("run_started", info)
    try:
        yield info
    except GeneratorExit:  # a stream whose consumer stopped iterating: not an error
        raise
    except BaseException as exc:
        info.error = exc
        raise
    finally:
        observe.notify("run_finished", info)


class TracedGraph(Runnable[Any, Any]):
    """A graph whose every run is one :func:`trace_run`: invoke, stream and their async twins.

    ``batch``, ``astream_events`` and ``with_config`` come from ``Runnable`` on top of
    these, so they are traced too. A run a wrapped ``with_budget`` graph reports itself
    merges into this one (one span, named here). Other attributes (``get_state``...)
    are the wrapped graph's.
    """

    def __init__(self, graph: Any, name: str | None = None) -> None:
        """Wrap ``graph``; runs are named ``name`` (the graph's name by default)."""
        self.graph = graph
        self.run_name: str = name or str(getattr(graph, "name", None) or "run")
        """The run span's name."""
        self.name = self.run_name

    def __getattr__(self, name: str) -> Any:
        if name == "graph":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.graph, name)

    def _finish(self, run: RunInfo, state: Any = None) -> None:
        run.meter = getattr(self.graph, "last_meter", None)
        if state is not None:
            run.state = state

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Invoke the graph inside a run span."""
        with trace_run(self.run_name, absorb_nested=True) as run:
            run.input = input
            out = self.graph.invoke(input, config, **kwargs)
            self._finish(run, out)
        return out

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Async :meth:`invoke`."""
        with trace_run(self.run_name, absorb_nested=True) as run:
            run.input = input
            out = await self.graph.ainvoke(input, config, **kwargs)
            self._finish(run, out)
        return out

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """Stream the graph inside a run span (open until the stream ends or is dropped)."""
        with trace_run(self.run_name, absorb_nested=True) as run:
            run.input = input
            yield from self.graph.stream(input, config, **kwargs)
            self._finish(run)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Async :meth:`stream`."""
        with trace_run(self.run_name, absorb_nested=True) as run:
            run.input = input
            async for chunk in self.graph.astream(input, config, **kwargs):
                yield chunk
            self._finish(run)


def traced(graph: Any, name: str | None = None) -> TracedGraph:
    """Wrap a graph so each run (invoke, stream, batch...) gets a run span (see :func:`trace_run`).

    Works on plain compiled graphs (e.g. budgeted models on a fixed meter) and on
    ``with_budget`` graphs (to name the run).

    Example:
        >>> # app = traced(with_budget(builder.compile(), Budget(max_tokens=5_000)), "solve")

    """
    return TracedGraph(graph, name)
