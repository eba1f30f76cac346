"""The ``terminator`` node: emit the best path (verified first), its answer and why we stopped."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from budget_graph._internal import observe
from budget_graph.nodes.tree import ROOT_ID, Tree, TreeNode
from budget_graph.tasks.base import Item, SearchTask

__all__ = ["best_node", "make_terminator"]


def best_node(tree: Tree) -> TreeNode | None:
    """The node to answer with.

    A verified solution (highest value, then shallowest) if any, else the end of the
    highest-value path from the root (ties keep proposal order).
    """
    verified = [n for n in tree.values() if n.verified]
    if verified:
        return max(verified, key=lambda n: (n.value or 0.0, -n.depth))
    node = tree.get(ROOT_ID)
    while node is not None:
        kids = [c for c in tree.children(node.id) if c.value is not None]
        if not kids:
            return node
        best = max(kids, key=lambda c: c.value or 0.0)
        node = best
    return None


def make_terminator(task: SearchTask) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """Build the ``terminator`` node.

    It writes ``best_id``, ``solution`` (the best node's text), ``path`` (the step texts
    from the root), ``answer`` (``task.answer`` of the best node), ``solved`` (verified)
    and ``stop_reason`` (kept if a node set it, else ``"exhausted"``). The run's spend is
    already in state under ``spend``.
    """

    def terminate(state: Mapping[str, Any]) -> dict[str, Any]:
        tree: Tree = state.get("tree") or Tree()
        item: Item = state["item"]
        reason = state.get("stop_reason") or "exhausted"
        node = best_node(tree)
        if node is None:
            return {"stop_reason": reason, "solved": False, "answer": None, "path": []}
        path = tree.path(node.id)
        steps = [n.text[len(p.text) :] for p, n in zip(path, path[1:], strict=False)]
        answer = node.answer if node.answer is not None else task.answer(item, node.text)
        spend = state.get("spend")
        observe.emit(
            "budget.search_finished",
            stop_reason=reason,
            solved=node.verified,
            nodes=len(tree),
            spent=spend.units if spend is not None else None,
        )
        return {
            "stop_reason": reason,
            "best_id": node.id,
            "solution": node.text,
            "path": steps,
            "answer": answer,
            "solved": node.verified,
        }

    terminate.__name__ = "terminate"
    return terminate
