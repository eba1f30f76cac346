"""Allocation policies: which frontier nodes to expand (or value) next, and their budget share.

Every policy is a small object called with a :class:`PolicyView` that returns a
:class:`Selection`. Shares follow B(n_i) = B_rem * V(n_i) / sum_j V(n_j); a node whose share
cannot pay for one expansion (the expected cost learned so far) is not expanded.

The sum runs over the whole frontier (every open, valued node) in
:class:`FrontierProportional`, as the definition has it; :class:`ValueProportional` and
:class:`BestFirst` split among the ``width`` best nodes only (``BestFirst``: one node gets
everything).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from budget_graph._internal.records import record_fields
from budget_graph.nodes.tree import ROOT_ID, Tree, TreeNode

__all__ = [
    "Action",
    "AllocationPolicy",
    "BestFirst",
    "BreadthLimitedBFS",
    "FrontierProportional",
    "PolicyView",
    "Selection",
    "ValueProportional",
    "proportional_shares",
]


@dataclass(frozen=True, slots=True)
class Action:
    """One unit of work the planner sends out."""

    kind: Literal["expand", "value"]
    """Expand ``node``, or value the nodes ``ids`` (children of ``node``)."""
    node: str
    """The node expanded, or the parent of the nodes valued."""
    ids: tuple[str, ...] = ()
    """Nodes to value (``kind="value"``)."""
    allocated: int | None = None
    """The budget share given to this action, in budget units."""

    def _asdict(self) -> dict[str, Any]:
        # Checkpoints store this record as its fields (see budget_graph._internal.records).
        return record_fields(self)


@dataclass(frozen=True, slots=True)
class Selection:
    """A policy's answer: actions, or why there are none."""

    actions: tuple[Action, ...] = ()
    reason: str | None = None
    """Why nothing was selected (``"depth"``, ``"exhausted"``, ``"budget"``)."""


@dataclass(frozen=True, slots=True)
class PolicyView:
    """What a policy sees."""

    tree: Tree
    last: tuple[Action, ...] = ()
    """The actions of the previous step."""
    remaining: int | None = None
    """Units the search may still spend (``None``: unlimited)."""
    expected_cost: float | None = None
    """Expected units of one expansion, learned so far (``None``: unknown yet)."""
    max_depth: int = 4
    step: int = 0
    spent: int = 0
    """Units the run has spent so far (its ``Spend`` in state), estimated requests included."""


class AllocationPolicy(Protocol):
    """Chooses the next actions."""

    def __call__(self, view: PolicyView) -> Selection:
        """The next step's actions."""


def proportional_shares(remaining: int, values: Sequence[float]) -> list[int]:
    """B_rem * V_i / sum V, floored (equal shares when every value is 0).

    The sum is exact (``math.fsum``) and each share floored, so shares never add up to
    more than ``remaining``.

    Example:
        >>> proportional_shares(1000, [0.9, 0.8, 0.7, 0.6])
        [300, 266, 233, 200]

    """
    if not values:
        return []
    clipped = [max(v, 0.0) for v in values]
    total = math.fsum(clipped)
    if total <= 0:
        return [remaining // len(values)] * len(values)
    return [int(remaining * v / total) for v in clipped]


def _expandable(node: TreeNode, max_depth: int) -> bool:
    return node.status == "open" and node.depth < max_depth


@dataclass(frozen=True, slots=True, kw_only=True)
class BreadthLimitedBFS:
    """Tree of Thoughts BFS: keep the ``breadth`` best children of the last step, expand all.

    Ties keep proposal order (a stable sort), as the original implementation does.
    Shares are informational: every selected node is expanded.
    """

    breadth: int = 5
    """States kept per step (b)."""

    def __post_init__(self) -> None:
        if self.breadth < 1:
            raise ValueError(f"breadth must be >= 1 (got {self.breadth})")

    def __call__(self, view: PolicyView) -> Selection:
        """Select the next layer."""
        tree = view.tree
        expanded = [a.node for a in view.last if a.kind == "expand"]
        if not expanded:
            root = tree.get(ROOT_ID)
            if root is None or not _expandable(root, view.max_depth):
                return Selection(reason="exhausted")
            return Selection((Action("expand", ROOT_ID, allocated=view.remaining),))
        candidates = [c for p in expanded for c in tree.children(p)]
        if not candidates:
            return Selection(reason="exhausted")
        ranked = sorted(candidates, key=lambda n: n.value or 0.0, reverse=True)[: self.breadth]
        chosen = [n for n in ranked if _expandable(n, view.max_depth)]
        if not chosen:
            deep = any(n.depth >= view.max_depth for n in ranked)
            return Selection(reason="depth" if deep else "exhausted")
        share = None if view.remaining is None else view.remaining // len(chosen)
        return Selection(tuple(Action("expand", n.id, allocated=share) for n in chosen))


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueProportional:
    """Expand the ``width`` best open nodes, each with a value-proportional budget share.

    A node whose share is below the expected cost of one expansion is skipped (the best
    node alone is expanded if only it can be paid for). With lazy valuation some
    children stay unvalued; when no valued open node reaches ``expand_at``, the policy
    values the unvalued children of the most valuable parent instead of expanding a
    weak node.
    """

    width: int = 3
    """Nodes considered per step."""
    expand_at: float | None = None
    """Value below which valuing pending siblings is preferred to expanding."""
    value_batch: int | None = None
    """Most unvalued nodes valued per step (``None``: all of one parent)."""

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be >= 1 (got {self.width})")

    def _value_action(self, view: PolicyView, pending: list[TreeNode]) -> Selection:
        tree = view.tree

        def parent_value(n: TreeNode) -> tuple[float, int]:
            p = tree.get(n.parent) if n.parent is not None else None
            v = p.value if p is not None and p.value is not None else 0.0
            return (v, n.depth)

        parent = max(pending, key=parent_value).parent or ROOT_ID
        ids = tuple(n.id for n in pending if n.parent == parent)
        if self.value_batch is not None:
            ids = ids[: self.value_batch]
        return Selection((Action("value", parent, ids=ids, allocated=view.remaining),))

    def __call__(self, view: PolicyView) -> Selection:
        """Select by value, allocating shares in proportion to value."""
        top = view.tree.best_open(self.width, max_depth=view.max_depth)
        pending = view.tree.unvalued()
        weak = not top or (self.expand_at is not None and (top[0].value or 0.0) < self.expand_at)
        if pending and weak:
            return self._value_action(view, pending)
        if not top:
            deep = any(n.depth >= view.max_depth for n in view.tree.best_open(1))
            return Selection(reason="depth" if deep else "exhausted")
        if view.remaining is None:
            return Selection(tuple(Action("expand", n.id) for n in top))
        shares = proportional_shares(view.remaining, [n.value or 0.0 for n in top])
        need = view.expected_cost or 0.0
        chosen = [
            Action("expand", n.id, allocated=s)
            for n, s in zip(top, shares, strict=True)
            if s >= need
        ]
        if not chosen:
            if view.remaining < need:
                return Selection(reason="budget")
            chosen = [Action("expand", top[0].id, allocated=view.remaining)]
        return Selection(tuple(chosen))


@dataclass(frozen=True, slots=True, kw_only=True)
class FrontierProportional(ValueProportional):
    """B(n_i) = B_rem * V(n_i) / sum_j V(n_j) over the *whole* frontier (every open node).

    Each open, valued node gets its share of the remaining budget; the nodes whose share
    pays for one expansion are expanded (at most ``width`` of them, best first; ``None``:
    all). A frontier of values [.9, .8, .7, .6] with 1,000 tokens left gets
    [300, 266, 233, 200]. Lazy valuation is handled as in :class:`ValueProportional`.
    """

    width: int | None = None  # type: ignore[assignment]
    """Most nodes expanded per step (``None``: every node whose share pays)."""

    def __post_init__(self) -> None:
        if self.width is not None and self.width < 1:
            raise ValueError(f"width must be >= 1 (got {self.width})")

    def _frontier(self, view: PolicyView) -> list[TreeNode]:
        return view.tree.best_open(len(view.tree), max_depth=view.max_depth)

    def __call__(self, view: PolicyView) -> Selection:
        """Shares over the whole frontier; expand the best nodes whose share pays."""
        frontier = self._frontier(view)
        pending = view.tree.unvalued()
        weak = not frontier or (
            self.expand_at is not None and (frontier[0].value or 0.0) < self.expand_at
        )
        if pending and weak:
            return self._value_action(view, pending)
        if not frontier:
            deep = any(n.depth >= view.max_depth for n in view.tree.best_open(1))
            return Selection(reason="depth" if deep else "exhausted")
        limit = self.width if self.width is not None else len(frontier)
        if view.remaining is None:
            return Selection(tuple(Action("expand", n.id) for n in frontier[:limit]))
        shares = proportional_shares(view.remaining, [n.value or 0.0 for n in frontier])
        need = view.expected_cost or 0.0
        paid = [(n, s) for n, s in zip(frontier, shares, strict=True) if s >= need][:limit]
        if not paid:
            if view.remaining < need:
                return Selection(reason="budget")
            paid = [(frontier[0], view.remaining)]
        return Selection(tuple(Action("expand", n.id, allocated=s) for n, s in paid))


@dataclass(frozen=True, slots=True, kw_only=True)
class BestFirst(ValueProportional):
    """Greedy best-first: expand the single most valuable open node with the whole budget."""

    width: int = 1
