"""Run spans: ``trace_run`` around any graph invocation, and ``traced(graph)``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from budget_graph._internal import observe
from budget_graph._internal.observe import RunInfo

__all__ = ["TracedGraph", "trace_run", "traced"]


@contextmanager
def trace_run(name: str = "run", *, meter: Any = None) -> Iterator[RunInfo]:
    """Make everything inside the block one run: a run span with its rolled-up spend.

    Set ``run.state`` to the final state so the span gets ``budget.stop_reason``; the
    run's meter is picked up from its first budgeted call (or pass ``meter``).

    Example:
        >>> with trace_run("solve") as run:
        ...     run.state = {"stop_reason": "solved"}  # e.g. app.invoke(...)

    """
    info = RunInfo(name=name, meter=meter)
    observe.notify("run_started", info)
    try:
        yield info
    except BaseException as exc:
        info.error = exc
        raise
    finally:
        observe.notify("run_finished", info)


class TracedGraph:
    """A compiled (or ``with_budget``) graph whose ``invoke``/``ainvoke`` run in :func:`trace_run`.

    Everything else is delegated to the wrapped graph.
    """

    def __init__(self, graph: Any, name: str | None = None) -> None:
        """Wrap ``graph``; runs are named ``name`` (the graph's name by default)."""
        self.graph = graph
        self.name = name or str(getattr(graph, "name", None) or "run")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.graph, name)

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        """Invoke the graph inside a run span."""
        with trace_run(self.name) as run:
            out = self.graph.invoke(input, config, **kwargs)
            run.state, run.meter = out, getattr(self.graph, "last_meter", None)
        return out

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        """Async :meth:`invoke`."""
        with trace_run(self.name) as run:
            out = await self.graph.ainvoke(input, config, **kwargs)
            run.state, run.meter = out, getattr(self.graph, "last_meter", None)
        return out


def traced(graph: Any, name: str | None = None) -> TracedGraph:
    """Wrap a graph so each ``invoke``/``ainvoke`` gets a run span (see :func:`trace_run`).

    Example:
        >>> # app = traced(with_budget(builder.compile(), Budget(max_tokens=5_000)), "solve")

    """
    return TracedGraph(graph, name)
