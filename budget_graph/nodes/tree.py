"""The search tree in graph state: immutable node records, a persistent map and its reducer.

A :class:`Tree` is a persistent map from node id to :class:`TreeNode`. Versions share one
append-only log, so merging a delta of ``d`` records costs ``O(d)`` (not ``O(tree)``) and
parallel ``Send`` branches, each returning the records it created or changed, merge in any
order under :func:`merge_tree`. Old versions stay readable (a checkpoint being serialised
while the next step runs sees its own version); writing to an old version forks a copy.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from budget_graph._internal.records import record_fields
from budget_graph.nodes.tree_log import TreeLog

__all__ = [
    "DEFAULT_GAMMA",
    "ROOT_ID",
    "NodeStatus",
    "SearchStats",
    "Tree",
    "TreeNode",
    "backup",
    "child_id",
    "merge_tree",
    "merge_tree_updates",
]

ROOT_ID = "0"
"""Id of the root node (the empty partial solution)."""

DEFAULT_GAMMA = 0.9
"""γ, the discount of the backup V(n) = R(n) + γ·max V(child): 0.9, as in the reference
implementation (DESIGN.md, docs/planner.md). The default of :func:`backup` and of
:func:`~budget_graph.planner.build_planner`."""

NodeStatus = Literal["open", "expanded", "solved", "dead", "unexpandable"]
"""``open``: may be expanded; ``expanded``: children made; ``solved``: verified solution;
``dead``: pruned (value says no way forward); ``unexpandable``: the model could not expand it
(e.g. a replayed request that was never recorded)."""


def child_id(parent: str, index: int) -> str:
    """Id of the ``index``-th child of ``parent`` (unique without coordination)."""
    return f"{parent}.{index}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeNode:
    """One partial solution in the search tree."""

    id: str
    """Path-like id: ``"0"`` for the root, ``"0.3.1"`` for a grandchild."""
    parent: str | None = None
    """Id of the parent (``None`` at the root)."""
    depth: int = 0
    """Steps taken from the root."""
    text: str = ""
    """The whole partial solution (the task's *state*)."""
    index: int = 0
    """Position among its siblings (proposal order)."""
    status: NodeStatus = "open"
    """Where the node is in the search (see :data:`NodeStatus`)."""
    reward: float | None = None
    """R(n): the node's own score; ``None`` while unvalued."""
    value: float | None = None
    """V(n) = R(n) + gamma * max V(child); equals ``reward`` for a leaf."""
    verified: bool = False
    """A programmatic verifier confirmed this is a complete, correct solution."""
    answer: str | None = None
    """The final answer the node's text gives, if complete."""
    cost: int = 0
    """Tokens (budget units) spent creating the node: its share of the parent's expansion."""
    value_cost: int = 0
    """Tokens spent valuing the node (0 when cached or programmatic)."""
    expand_cost: int = 0
    """Tokens spent expanding the node."""
    note: str | None = None
    """Why the node is dead/unexpandable, or how it was valued."""

    @property
    def priority(self) -> tuple[float, int]:
        """Ordering key for best-first search: value, then depth (deeper first)."""
        return (self.value if self.value is not None else float("-inf"), self.depth)

    def _asdict(self) -> dict[str, Any]:
        return record_fields(self)


class Tree(Mapping[str, TreeNode]):
    """A persistent map ``id -> TreeNode`` whose updates cost O(changed nodes).

    Example:
        >>> t = Tree([TreeNode(id="0")])
        >>> t2 = merge_tree(t, [TreeNode(id="0.0", parent="0", depth=1, text="a")])
        >>> len(t), len(t2), [c.id for c in t2.children("0")]
        (1, 2, ['0.0'])

    """

    __slots__ = ("_core", "_size")

    def __init__(self, nodes: Iterable[TreeNode] = ()) -> None:
        """Build a tree from node records (later records of an id replace earlier ones)."""
        self._core: TreeLog[TreeNode] = TreeLog()
        for node in nodes:
            self._core.append(node)
        self._size = len(self._core.log)

    @classmethod
    def _view(cls, core: TreeLog[TreeNode], size: int) -> Tree:
        tree = cls.__new__(cls)
        tree._core, tree._size = core, size
        return tree

    # --- Mapping -----------------------------------------------------------------------

    def _pos(self, node_id: str) -> int | None:
        positions = self._core.positions.get(node_id)
        if not positions or positions[0] >= self._size:
            return None
        if positions[-1] < self._size:
            return positions[-1]
        return positions[bisect_left(positions, self._size) - 1]

    def __getitem__(self, node_id: str) -> TreeNode:
        pos = self._pos(node_id)
        if pos is None:
            raise KeyError(node_id)
        return self._core.log[pos]

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, str) and self._pos(node_id) is not None

    def __iter__(self) -> Iterator[str]:
        if self.is_head:
            return iter(list(self._core.positions))
        return iter(dict.fromkeys(n.id for n in self._core.log[: self._size]))

    def __len__(self) -> int:
        if self.is_head:
            return len(self._core.positions)
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Tree(nodes={len(self)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tree):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]

    # --- queries -----------------------------------------------------------------------

    @property
    def is_head(self) -> bool:
        """Whether this is the newest version of its lineage (writes append in place)."""
        return self._size == len(self._core.log)

    @property
    def root(self) -> TreeNode | None:
        """The root node, if any."""
        return self.get(ROOT_ID)

    def children(self, node_id: str) -> list[TreeNode]:
        """The children of ``node_id`` in proposal order."""
        ids = self._core.children.get(node_id, ())
        return [self[c] for c in ids if c in self]

    def path(self, node_id: str) -> list[TreeNode]:
        """Nodes from the root down to ``node_id``."""
        out = []
        node: TreeNode | None = self[node_id]
        while node is not None:
            out.append(node)
            node = self.get(node.parent) if node.parent is not None else None
        return out[::-1]

    def nodes(self) -> list[TreeNode]:
        """Every node (latest record of each id)."""
        return [self[i] for i in self]

    def best_open(self, k: int, *, max_depth: int | None = None) -> list[TreeNode]:
        """The ``k`` open, valued nodes of highest value (then deeper, then older).

        "Older" is the order in which ids entered the tree, which a tree rebuilt from its
        records keeps, so a tree loaded from a checkpoint picks the same nodes as the run.

        Amortised O(k log n) on the newest version; an old version scans.
        """
        if k <= 0:
            return []

        def ok(n: TreeNode) -> bool:
            return (
                n.status == "open"
                and n.value is not None
                and (max_depth is None or n.depth < max_depth)
            )

        if not self.is_head:
            cands = [n for n in self.nodes() if ok(n)]
            first = self._core.positions
            return sorted(cands, key=lambda n: (-n.priority[0], -n.depth, first[n.id][0]))[:k]
        core = self._core
        out: list[TreeNode] = []
        keep = []
        with core.lock:
            while core.heap and len(out) < k:
                entry = heapq.heappop(core.heap)
                node_id, pos = entry[3], entry[4]
                if core.positions[node_id][-1] != pos:
                    continue  # superseded record: drop for good
                node = core.log[pos]
                if node.status != "open":
                    continue
                keep.append(entry)
                if ok(node):
                    out.append(node)
            for entry in keep:
                heapq.heappush(core.heap, entry)
        return out

    def unvalued(self) -> list[TreeNode]:
        """Open nodes not valued yet, oldest first."""
        if self.is_head:
            return [self[i] for i in list(self._core.unvalued)]
        return [n for n in self.nodes() if n.status == "open" and n.value is None]

    # --- updates -----------------------------------------------------------------------

    def merged(self, records: Iterable[TreeNode]) -> Tree:
        """A new version with ``records`` added or replacing nodes of the same id.

        O(len(records)) on the newest version, and on an old version whose next log
        entries are these very records (LangGraph applies a node's writes to a copy of the
        state for a conditional edge, then again to the state itself); otherwise the old
        version forks a copy first.
        """
        core = self._core
        if not self.is_head:
            records = list(records)
            end = self._size + len(records)
            log = core.log
            if end <= len(log) and all(log[self._size + i] is r for i, r in enumerate(records)):
                return Tree._view(core, end)
            core = Tree(self.nodes())._core
        with core.lock:
            for node in records:
                core.append(node)
            size = len(core.log)
        return Tree._view(core, size)

    def _asdict(self) -> dict[str, Any]:
        # LangGraph's checkpoint serializer rebuilds namedtuple-like objects with cls(**_asdict()).
        return {"nodes": self.nodes()}

    def __reduce__(self) -> tuple[Any, ...]:
        return (Tree, (self.nodes(),))

    def __copy__(self) -> Tree:
        # A version never changes (writes make a new version), so a copy is the version.
        return self


def merge_tree(current: Tree | None, update: Tree | Iterable[TreeNode] | None) -> Tree:
    """Reducer for the ``tree`` state key: apply node records, keyed by id, to the tree.

    ``update`` is a delta (an iterable of records, or a mapping of them) from one branch;
    an update that is a whole :class:`Tree` replaces an empty tree (initial input, resume).
    """
    if current is None:
        current = Tree()
    if update is None:
        return current
    if isinstance(update, Tree):
        if len(current) == 0:
            return update
        return current.merged(update.nodes())
    if isinstance(update, Mapping):
        return current.merged(update.values())
    return current.merged(update)


def merge_tree_updates(
    current: Tree | None, updates: Sequence[Tree | Iterable[TreeNode] | None]
) -> Tree:
    """Batch reducer for the ``tree`` channel: :func:`merge_tree` of each update in order.

    Applying two batches one after the other equals applying their concatenation, as
    LangGraph's ``DeltaChannel`` requires (it replays a checkpoint's history in batches).
    """
    tree = current if current is not None else Tree()
    for update in updates:
        tree = merge_tree(tree, update)
    return tree


def backup(tree: Tree, start: Iterable[str], *, gamma: float = DEFAULT_GAMMA) -> list[TreeNode]:
    """Re-compute V(n) = R(n) + gamma * max V(child) from ``start`` up to the root.

    Only the given nodes and their ancestors are visited (each once), so a backup after
    an expansion costs O(depth x branching), not O(tree). Returns the changed records.
    """
    changed: dict[str, TreeNode] = {}

    def current(node_id: str) -> TreeNode:
        return changed.get(node_id) or tree[node_id]

    pending = sorted({s for s in start if s in tree}, key=lambda i: -tree[i].depth)
    seen = set(pending)
    while pending:
        node_id = pending.pop(0)
        node = current(node_id)
        kids = [current(c.id).value for c in tree.children(node_id)]
        best = max((v for v in kids if v is not None), default=None)
        if best is None:
            value = node.reward
        else:
            value = (node.reward or 0.0) + gamma * best
        if value != node.value:
            changed[node_id] = replace(node, value=value)
        if node.parent is not None and node.parent not in seen:
            seen.add(node.parent)
            pending.append(node.parent)
            pending.sort(key=lambda i: -tree[i].depth)
    return list(changed.values())


@dataclass(frozen=True, slots=True)
class SearchStats:
    """Additive counters the budget edge learns the cost of the next step from."""

    expansions: int = 0
    """Expansions made (propose calls that returned)."""
    expand_units: int = 0
    """Units spent on expansions."""
    value_calls: int = 0
    """Judge calls made (cache hits excluded)."""
    value_units: int = 0
    """Units spent valuing."""
    valued: int = 0
    """Nodes scored (any way)."""
    unrecorded: int = 0
    """Expansions the model could not answer (e.g. a replay that never saw the request)."""
    solved: int = 0
    """Verified solutions found."""

    def __add__(self, other: SearchStats) -> SearchStats:
        if not isinstance(other, SearchStats):
            return NotImplemented
        return SearchStats(
            self.expansions + other.expansions,
            self.expand_units + other.expand_units,
            self.value_calls + other.value_calls,
            self.value_units + other.value_units,
            self.valued + other.valued,
            self.unrecorded + other.unrecorded,
            self.solved + other.solved,
        )

    def _asdict(self) -> dict[str, Any]:
        return record_fields(self)

    @property
    def units_per_expansion(self) -> float | None:
        """Mean units of one expansion (the propose call), ``None`` before the first."""
        if self.expansions == 0:
            return None
        return self.expand_units / self.expansions

    @property
    def units_per_value_call(self) -> float | None:
        """Mean units of one judge call, ``None`` before the first."""
        if self.value_calls == 0:
            return None
        return self.value_units / self.value_calls
