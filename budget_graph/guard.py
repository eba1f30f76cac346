"""Drop-in budgeting for existing graphs: ``guard``, ``budget_edge``, ``budget_tools_condition``.

``with_budget`` (in :mod:`budget_graph.budgeted_graph`) is re-exported here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Literal

from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.graph import END
from langgraph.types import Command

from budget_graph._internal import observe
from budget_graph._internal.run_flags import current_flags
from budget_graph.budget import Spend
from budget_graph.budgeted_graph import RAISED_BY_GUARD, BudgetedGraph, with_budget
from budget_graph.context import Ledger, current_ledger, current_meter, current_node
from budget_graph.errors import BudgetExceededError

__all__ = ["BudgetedGraph", "budget_edge", "budget_tools_condition", "guard", "with_budget"]

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


class _NodeRun:
    """One guarded node run: its ledger, its record for observers, and how it ends."""

    __slots__ = ("info", "label", "ledger", "on_exhausted", "outer", "outer_run", "reason", "token")

    def __init__(self, label: str, on_exhausted: OnExhausted) -> None:
        self.label = label
        self.on_exhausted = on_exhausted
        self.outer = current_ledger()
        self.outer_run = _node_run.get()
        self.ledger = Ledger()
        self.reason: str | None = None
        """``"budget"`` when a graph run inside this node was stopped by a budget it shares."""
        self.token: Any = None
        self.info: observe.NodeInfo | None = None
        if observe.state.active:  # hot path: no observer, no record
            self.info = observe.NodeInfo(name=label)
            observe.notify("node_started", self.info)

    def __enter__(self) -> _NodeRun:
        self.ledger.__enter__()
        self.token = _node_run.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _node_run.reset(self.token)
        self.ledger.__exit__(*exc)
        if self.outer is not None and self.ledger:
            # A graph run inside another guarded node (a subgraph invoked in a node): its
            # calls are that node's spend too, whether this node returned or raised.
            self.outer.add(self.ledger.spend)

    def done(self, result: Any, reason: str | None) -> Any:
        if reason is None and isinstance(result, dict):
            reason = result.get("stop_reason")
        if reason is None:
            reason = self.reason or _routed_here_for_budget()
        info, ledger = self.info, self.ledger
        if not ledger and reason is None and info is None:
            return result  # no budgeted call, nothing to report
        spend = ledger.spend  # summed once: the ledger adds up its calls on read
        if info is not None:
            info.usage, info.stop_reason = spend.usage, reason
            observe.notify("node_finished", info)
        return _merge_update(result, spend, reason)

    def failed(self, exc: BaseException) -> None:
        if self.info is not None:
            self.info.error, self.info.usage = exc, self.ledger.spend.usage
            observe.notify("node_finished", self.info)

    def exhausted(self, exc: BudgetExceededError) -> Any:
        observe.emit(
            "budget.exhausted",
            node=self.label,
            limit=exc.limit,
            spent=exc.spent,
            requested=exc.requested,
            scope=exc.scope,
        )
        outer = self.outer_run
        if outer is not None and _refused_by_a_shared_level(exc):
            outer.reason = "budget"  # the enclosing node's run is out of budget too
        if self.on_exhausted == "error":
            self.failed(exc)
            exc.add_note(f"{RAISED_BY_GUARD} {self.label!r}")
            raise exc
        return self.done(None, "budget")


_node_run: ContextVar[_NodeRun | None] = ContextVar("budget_graph_node_run", default=None)


def _refused_by_a_shared_level(exc: BudgetExceededError) -> bool:
    """Whether the refusing level is the enclosing run's (not a nested run's own limit)."""
    meter = current_meter()
    parent = getattr(meter, "parent", None)
    if parent is None:  # one level: whoever refused, the enclosing node shares it
        return True
    while parent is not None:
        if getattr(parent, "scope", None) == exc.scope:
            return True
        parent = getattr(parent, "parent", None)
    return False


def _routed_here_for_budget() -> str | None:
    """``"budget"`` when a budget edge sent the run to the node running now."""
    flags = current_flags()
    if flags is None or flags.low_node is None:
        return None
    return "budget" if current_node() == flags.low_node else None


def guard(
    node: Callable[..., Any] | Runnable | None = None,
    *,
    name: str | None = None,
    on_exhausted: OnExhausted = "end",
) -> Any:
    """Wrap a node so the spend of its budgeted calls lands in state as a ``spend`` delta.

    When a call inside the node is refused for budget, the node ends gracefully with
    ``stop_reason="budget"`` (and the spend it made so far) instead of raising; pass
    ``on_exhausted="error"`` to let :class:`BudgetExceededError` propagate. Pair it
    with :func:`budget_edge` to route out of the loop. Works on sync and async nodes,
    on Runnables (e.g. a prebuilt ``ToolNode``) and as a decorator (``@guard`` or
    ``@guard(name="plan")``). A node a budget edge routed to because the budget ran
    low reports ``stop_reason="budget"``. Spend of a graph run inside the node (a
    subgraph invoked there) counts in the node's delta, even when the node raises.

    Example:
        >>> @guard
        ... def plan(state):
        ...     return {"plan": "..."}

    """
    if on_exhausted not in ("end", "error"):
        raise ValueError(f"Invalid on_exhausted: {on_exhausted!r}. Must be 'end' or 'error'")
    if node is None:
        return functools.partial(guard, name=name, on_exhausted=on_exhausted)
    if isinstance(node, Runnable):
        return _guard_runnable(node, name or node.get_name(), on_exhausted)
    if not callable(node):
        raise TypeError(f"guard needs a node function or Runnable (got {type(node).__name__})")
    label: str = name or str(getattr(node, "__name__", "node"))

    if inspect.iscoroutinefunction(node):

        @functools.wraps(node)
        async def _awrapped(*args: Any, **kwargs: Any) -> Any:
            with _NodeRun(label, on_exhausted) as run:
                try:
                    result = await node(*args, **kwargs)
                except BudgetExceededError as exc:
                    return run.exhausted(exc)
                except BaseException as exc:
                    run.failed(exc)
                    raise
                return run.done(result, None)

        return _awrapped

    @functools.wraps(node)
    def _wrapped(*args: Any, **kwargs: Any) -> Any:
        with _NodeRun(label, on_exhausted) as run:
            try:
                result = node(*args, **kwargs)
            except BudgetExceededError as exc:
                return run.exhausted(exc)
            except BaseException as exc:
                run.failed(exc)
                raise
            return run.done(result, None)

    return _wrapped


def _guard_runnable(node: Runnable, label: str, on_exhausted: OnExhausted) -> Runnable:
    """``guard`` for a Runnable node: the same ending, with the node's config passed on."""

    def call(state: Any, config: RunnableConfig) -> Any:
        with _NodeRun(label, on_exhausted) as run:
            try:
                result = node.invoke(state, config)
            except BudgetExceededError as exc:
                return run.exhausted(exc)
            except BaseException as exc:
                run.failed(exc)
                raise
            return run.done(result, None)

    async def acall(state: Any, config: RunnableConfig) -> Any:
        with _NodeRun(label, on_exhausted) as run:
            try:
                result = await node.ainvoke(state, config)
            except BudgetExceededError as exc:
                return run.exhausted(exc)
            except BaseException as exc:
                run.failed(exc)
                raise
            return run.done(result, None)

    return RunnableLambda(call, afunc=acall, name=label)


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
        if _budget_low(state, config, min_remaining):
            flags = current_flags(config)
            if flags is not None:
                flags.low_node = low
            return low
        return ok

    route.__name__ = f"budget_edge_{ok}_{low}"
    return route


def _budget_low(state: Any, config: RunnableConfig, min_remaining: Any) -> bool:
    """Whether a node stopped for budget, or the run's meter has less than the next step."""
    if isinstance(state, dict) and state.get("stop_reason") == "budget":
        return True
    meter = current_meter(config)
    if meter is None:
        return False
    need = min_remaining(state) if callable(min_remaining) else min_remaining
    return bool(meter.available() < need)


def budget_tools_condition(
    *,
    final: str = "final",
    tools: str = "tools",
    min_remaining: int | Callable[[Any], int] = 1,
    messages_key: str = "messages",
) -> Callable[[Any, RunnableConfig], str]:
    """A budget-aware ``tools_condition``: tools while affordable, else a final answer.

    Routes to ``tools`` when the last message asks for tools and the budget can pay for
    ``min_remaining`` more units; to ``final`` (a node answering without tools, e.g. from
    the budget's ``reserve``) when a node stopped for budget or the budget ran low, so
    the run never ends on a tool call or a tool result; to ``END`` when the last
    message is an answer. Use it after the model node, and
    ``budget_edge(ok=<model node>, low=final)`` after the tools node.

    Example:
        >>> route = budget_tools_condition(final="final", min_remaining=300)
        >>> # builder.add_conditional_edges("agent", route, ["tools", "final", END])

    """

    def route(state: Any, config: RunnableConfig) -> str:
        messages = state.get(messages_key) if isinstance(state, dict) else None
        last = messages[-1] if messages else None
        answered = isinstance(last, AIMessage) and not last.tool_calls
        if answered:
            return END
        if _budget_low(state, config, min_remaining):
            flags = current_flags(config)
            if flags is not None:
                flags.low_node = final
            return final
        return tools if isinstance(last, AIMessage) and last.tool_calls else END

    route.__name__ = f"budget_tools_condition_{tools}_{final}"
    return route
