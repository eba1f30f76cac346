"""The append-only log behind every version of a search tree, with its lookup indexes.

:class:`~budget_graph.nodes.tree.Tree` versions are views of one :class:`TreeLog` (a
prefix of it); appending keeps the per-id positions, the children lists, the unvalued
set and a lazy max-heap of open valued nodes up to date in O(log n).
"""

from __future__ import annotations

import heapq
import threading
from typing import Generic, Protocol, TypeVar

__all__ = ["NodeRecord", "TreeLog"]


class NodeRecord(Protocol):
    """What the log reads of a node record (:class:`~budget_graph.nodes.tree.TreeNode`)."""

    @property
    def id(self) -> str: ...  # noqa: D102
    @property
    def parent(self) -> str | None: ...  # noqa: D102
    @property
    def depth(self) -> int: ...  # noqa: D102
    @property
    def status(self) -> str: ...  # noqa: D102
    @property
    def value(self) -> float | None: ...  # noqa: D102


N = TypeVar("N", bound=NodeRecord)


class TreeLog(Generic[N]):
    """The shared, append-only storage behind every version of one tree lineage."""

    __slots__ = ("children", "heap", "lock", "log", "positions", "unvalued")

    def __init__(self) -> None:
        self.log: list[N] = []
        self.positions: dict[str, list[int]] = {}
        self.children: dict[str, list[str]] = {}
        self.heap: list[tuple[float, int, int, str, int]] = []
        self.lock = threading.Lock()
        self.unvalued: dict[str, None] = {}

    def append(self, node: N) -> None:
        """Append one record and update the indexes."""
        pos = len(self.log)
        self.log.append(node)
        known = self.positions.get(node.id)
        if known is None:
            self.positions[node.id] = [pos]
            if node.parent is not None:
                self.children.setdefault(node.parent, []).append(node.id)
        else:
            known.append(pos)
        if node.status == "open" and node.value is None:
            self.unvalued[node.id] = None
        else:
            self.unvalued.pop(node.id, None)
        if node.status == "open" and node.value is not None:
            # Lazy max-heap of open, valued nodes; stale entries are skipped on read. Ties go
            # to the node that entered the tree first: a tree rebuilt from its records (a
            # checkpoint) keeps that order, so it picks the same nodes.
            first = self.positions[node.id][0]
            heapq.heappush(self.heap, (-node.value, -node.depth, first, node.id, pos))
