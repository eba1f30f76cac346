"""The ``expand`` node: ask the model for the next steps of one frontier node."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, Send

from budget_graph._internal import observe
from budget_graph.budgeted import budgeted
from budget_graph.errors import BudgetExceededError
from budget_graph.nodes.tree import SearchStats, TreeNode, child_id
from budget_graph.tasks.base import Item, SearchTask

__all__ = ["is_not_recorded", "make_expand_node"]


def is_not_recorded(exc: BaseException) -> bool:
    """Whether ``exc`` says the model cannot answer this request (a replay never saw it)."""
    try:
        from budget_graph.replay.store import ReplayError
    except ImportError:  # pragma: no cover - replay is part of the package
        return False
    if isinstance(exc, ReplayError):
        return True
    # Over HTTP (ChatOpenAI + the replay server) the same outcome is an OpenAI-style 400
    # error whose body carries code "not_recorded".
    body = getattr(exc, "body", None)
    code = body.get("code") if isinstance(body, dict) else getattr(exc, "code", None)
    return getattr(exc, "status_code", None) == 400 and code == "not_recorded"


def make_expand_node(
    model: BaseChatModel,
    task: SearchTask,
    *,
    max_tokens: int | None = 1000,
    goto: str | None = "value",
    unexpandable: Callable[[BaseException], bool] = is_not_recorded,
) -> Callable[[Mapping[str, Any]], Any]:
    """Build the ``expand`` node: one propose call for the node it is sent.

    The node takes a ``Send`` payload ``{"item": Item, "node": TreeNode, "allocated": int}``,
    asks ``task.propose_prompt`` through a budgeted model, turns each proposal into a child
    :class:`TreeNode` (text, parent, depth, its share of the call's tokens; verified at once
    with ``task.verify``) and marks the parent ``expanded``. With ``goto`` it returns a
    ``Command`` that sends the children to that node (the value node) in one batch.

    Outcomes that are not crashes:
        * a reservation refused for budget -> no children, ``stop_reason="budget"``;
        * an error ``unexpandable(exc)`` accepts (by default a replay's
          ``NotRecordedError``) -> the parent becomes ``unexpandable`` and the event
          ``budget.node_unexpandable`` is emitted; nothing is made up.

    Args:
        model: The proposer chat model (wrapped with :func:`~budget_graph.budgeted`).
        task: Supplies ``propose_prompt``, ``parse_proposals``, ``verify`` and ``answer``.
        max_tokens: Output cap of a propose call (further clamped by the budget).
        goto: Node to send the new children to; ``None`` returns a plain update.
        unexpandable: Which errors mean "cannot expand this node" rather than a crash.

    """
    llm = budgeted(model, require_meter=False)  # unbudgeted when the graph runs without one

    def _finish(update: dict[str, Any], item: Item, children: list[TreeNode]) -> Any:
        if goto is None:
            return update
        return Command(update=update, goto=[Send(goto, {"item": item, "nodes": children})])

    def expand(payload: Mapping[str, Any]) -> Any:
        item: Item = payload["item"]
        parent: TreeNode = payload["node"]
        prompt = task.propose_prompt(item, parent.text)
        kwargs: dict[str, Any] = {"max_tokens": max_tokens} if max_tokens is not None else {}
        allocated = payload.get("allocated")
        # The node's budget share rides in the call's metadata for observers (CallInfo.allocated).
        cfg: RunnableConfig = {"metadata": {"budget_allocated": allocated}} if allocated else {}
        try:
            msg = llm.invoke([HumanMessage(prompt)], cfg, **kwargs)
        except BudgetExceededError:
            return _finish({"stop_reason": "budget"}, item, [])
        except Exception as exc:
            if not unexpandable(exc):
                raise
            observe.emit("budget.node_unexpandable", node=parent.id, error=type(exc).__name__)
            dead = replace(parent, status="unexpandable", note=type(exc).__name__)
            stats = SearchStats(unrecorded=1)
            return _finish({"tree": [dead], "search_stats": stats}, item, [])
        usage: Mapping[str, Any] = msg.usage_metadata or {}
        units = int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        texts = task.parse_proposals(item, parent.text, msg.text)
        share = units // len(texts) if texts else 0
        children = []
        for i, text in enumerate(texts):
            verified = task.verify(item, text)
            depth = parent.depth + 1
            children.append(
                TreeNode(
                    id=child_id(parent.id, i),
                    parent=parent.id,
                    depth=depth,
                    text=text,
                    index=i,
                    status="solved" if verified else "open",
                    verified=verified,
                    answer=task.answer(item, text),
                    cost=share,
                )
            )
        done = replace(parent, status="expanded", expand_cost=parent.expand_cost + units)
        update = {
            "tree": [done, *children],
            "search_stats": SearchStats(
                expansions=1, expand_units=units, solved=sum(c.verified for c in children)
            ),
        }
        return _finish(update, item, children)

    expand.__name__ = "expand"
    return expand
