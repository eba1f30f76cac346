"""Run spans: ``trace_run`` around any graph invocation, and ``traced(graph)``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
    except BaseException as exc:
        info.error = exc
        raise
    finally:
        observe.notify("run_finished", info)


class TracedGraph:
    """A compiled graph whose ``invoke``/``ainvoke`` run in :func:`trace_run`.

    A run a wrapped ``with_budget`` graph reports itself merges into this one (one span,
    named here).
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
        with trace_run(self.name, absorb_nested=True) as run:
            out = self.graph.invoke(input, config, **kwargs)
            run.state, run.meter = out, getattr(self.graph, "last_meter", None)
        return out

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        """Async :meth:`invoke`."""
        with trace_run(self.name, absorb_nested=True) as run:
            out = await self.graph.ainvoke(input, config, **kwargs)
            run.state, run.meter = out, getattr(self.graph, "last_meter", None)
        return out


def traced(graph: Any, name: str | None = None) -> TracedGraph:
    """Wrap a graph so each ``invoke``/``ainvoke`` gets a run span (see :func:`trace_run`).

    Works on plain compiled graphs (e.g. budgeted models on a fixed meter) and on
    ``with_budget`` graphs (to name the run).

    Example:
        >>> # app = traced(with_budget(builder.compile(), Budget(max_tokens=5_000)), "solve")

    """
    return TracedGraph(graph, name)
