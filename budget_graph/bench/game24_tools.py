"""The Game of 24 benchmark's value tools, as named configurations that add task knowledge.

``judge``: the LLM judge only (ToT's value prompt, 3 samples; the task's own value rule
makes a four-step state without an answer worth 0, as in the original run).
``verifier``: + the programmatic verifier (a verified answer is solved without a call, a
rejected answer line is dead) and the depth rule (four steps without an answer are dead).
``check``: + the one-number check (one number left: 24 is sure, anything else is dead).
``solver``: + the two-number *task solver* (:func:`game24_reward` tries every operation on
the last two numbers), knowledge Tree of Thoughts is not given; always labelled as such.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from langchain_core.language_models import BaseChatModel

from budget_graph.nodes import (
    ChainValue,
    JudgeValue,
    RewardValue,
    Score,
    ValueCache,
    ValueFunction,
    VerifierValue,
)
from budget_graph.nodes.allocation import Action, PolicyView, Selection
from budget_graph.nodes.expand import is_not_recorded
from budget_graph.nodes.tree import ROOT_ID, TreeNode
from budget_graph.tasks.base import Item
from budget_graph.tasks.game24 import VALUE_MAP, Game24Task, current_numbers

__all__ = [
    "TABLE_NOTE",
    "LayerCappedBestFirst",
    "VALUE_TOOLS",
    "UnrecordedIsDead",
    "depth_rule",
    "game24_reward",
    "one_number_check",
    "value_tools",
]

VALUE_TOOLS: dict[str, str] = {
    "judge": "judge only",
    "verifier": "judge + verifier + depth rule",
    "check": "judge + verifier + depth rule + one-number check",
    "solver": "judge + verifier + depth rule + one-number check + task solver (game24_reward)",
}
"""Value-tool configuration -> what it uses."""

TABLE_NOTE = (
    "Every request is billed: `total tokens` includes the requests the recording never saw, "
    "each billed at its exact prompt plus the mean recorded completion of that kind of request "
    "at that step (marked estimated; the branch is dead). `unbilled` is the lower bound "
    "without them, `estimated` counts them. Value tools: "
    + "; ".join(f"`{k}` = {v}" for k, v in VALUE_TOOLS.items())
    + "."
)

_SURE = 3 * VALUE_MAP["sure"]


def _number(token: str) -> Fraction | None:
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def _numbers(text: str) -> list[Fraction] | None:
    nums = [_number(t) for t in current_numbers(text).split()]
    if not nums or any(n is None for n in nums):
        return None
    return [n for n in nums if n is not None]


def _is_24(x: Fraction) -> bool:
    return abs(x - 24) < Fraction(1, 100)


def depth_rule(item: Item, text: str) -> float | None:
    """The depth rule: dead for a rejected answer line or four steps without an answer.

    Dead (0) for an answer line the verifier rejected and for four steps without an
    answer; abstain otherwise.
    """
    lines = text.strip().split("\n")
    if not text.strip():
        return None
    if "left: " not in lines[-1]:
        return 0.0
    if len(lines) >= 4:
        return 0.0
    return None


def one_number_check(item: Item, text: str) -> float | None:
    """One number left: sure if it is 24, else dead; abstain otherwise."""
    if not text.strip() or "left: " not in text.strip().split("\n")[-1]:
        return None
    nums = _numbers(text)
    if nums is None or len(nums) != 1:
        return None
    return _SURE if _is_24(nums[0]) else 0.0


def _two_number_solver(item: Item, text: str) -> float | None:
    if not text.strip() or "left: " not in text.strip().split("\n")[-1]:
        return None
    nums = _numbers(text)
    if nums is None or len(nums) != 2:
        return None
    a, b = nums
    outs = [a + b, a - b, b - a, a * b]
    outs += [a / b] if b else []
    outs += [b / a] if a else []
    return _SURE if any(_is_24(x) for x in outs) else 0.0


def game24_reward(item: Item, text: str) -> float | None:
    """The task solver: depth rule, one-number check and a two-number exhaustive solver.

    Decides the trivial states (one number left: 24 or dead; two numbers left: one
    operation reaches 24, or dead; a rejected answer line or four steps without an answer:
    dead) and returns ``None`` (ask the judge) for states with three numbers.
    """
    for rule in (depth_rule, one_number_check, _two_number_solver):
        value = rule(item, text)
        if value is not None:
            return value
    return None


class UnrecordedIsDead:
    """A value function whose unrecorded requests make the node dead.

    Wraps a value function: a request the replay never saw (billed by the model) makes
    the node dead instead of crashing the search.
    """

    def __init__(self, inner: ValueFunction) -> None:
        """Wrap ``inner``."""
        self.inner = inner

    def __call__(self, item: Item, node: TreeNode) -> Score | None:
        """The inner score, or dead if its request was not recorded."""
        try:
            return self.inner(item, node)
        except Exception as exc:
            if not is_not_recorded(exc):
                raise
            return Score(0.0, dead=True, calls=1, note="unrecorded")


def value_tools(
    name: str, model: BaseChatModel, task: Game24Task, cache: ValueCache
) -> ValueFunction:
    """The value function of a named configuration (see :data:`VALUE_TOOLS`)."""
    if name not in VALUE_TOOLS:
        raise ValueError(f"Unknown value tools {name!r}; must be among {list(VALUE_TOOLS)}")
    judge = UnrecordedIsDead(JudgeValue(model, task, samples=3, cache=cache))
    rules: list[Callable[[Item, str], float | None]] = []
    if name in ("verifier", "check"):
        rules.append(depth_rule)
    if name == "check":
        rules.append(one_number_check)
    if name == "solver":
        rules.append(game24_reward)
    if name == "judge":
        return judge
    chain: Sequence[ValueFunction] = [VerifierValue(task), *(RewardValue(r) for r in rules)]
    return ChainValue((*chain, judge))


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerCappedBestFirst:
    """Best-first search that expands at most ``per_depth`` nodes at each depth.

    Expands the most valuable open node (deeper first on ties) whose depth has room and
    whose value reaches ``min_value``; while no valued node reaches ``expand_at``, it first
    values the unvalued children of the most valuable parent (lazy valuation). With no
    candidate left the search ends (``"exhausted"``), so a puzzle the judge finds hopeless
    stops early instead of spending its whole budget. Like Tree of Thoughts' breadth, the
    cap bounds a search to ``per_depth`` expansions per step, without its fixed layers.

    With ``fallback_share``, a search that runs out of candidates having spent less than
    that share of its budget goes on below the floors, shallowest node first: the first
    steps are the judge's costliest mistakes (a correct first step it calls "impossible"
    hides the whole solution), and a shallow node's children are judged again. Among nodes
    of one depth the judge's mix of labels decides (its summed value: "likely" +
    "impossible" x 2 before "impossible" x 3), then proposal order. Once a child clears its
    floor, the search is back above the floors; the share caps what the fallback may spend
    (up to one action past it).
    """

    per_depth: int = 5
    """Most expansions at one depth (Tree of Thoughts' breadth b)."""
    expand_at: float = 3.0
    """Value at which a node is expanded before its unvalued siblings are valued."""
    min_value: float | tuple[float, ...] = 0.0
    """Nodes valued below this are never expanded; a tuple gives it per depth (the root is
    depth 0; the last entry holds for deeper nodes)."""
    value_batch: int | None = None
    """Most siblings valued per step, in proposal order (``None``: all pending ones)."""
    fallback_share: float | None = None
    """Share of the budget (0 < share <= 1) under which a search with no node above its
    floor expands the best node below it (see above); ``None``: never (give up at once).
    Needs a budget: an unbudgeted search gives up."""

    def __post_init__(self) -> None:
        share = self.fallback_share
        if share is not None and not 0.0 < share <= 1.0:
            raise ValueError(f"Invalid fallback_share: {share}. Must be in (0, 1] or None")

    def _floor(self, depth: int) -> float:
        if isinstance(self.min_value, tuple):
            return self.min_value[min(depth, len(self.min_value) - 1)]
        return self.min_value

    def _may_fall_back(self, view: PolicyView) -> bool:
        if self.fallback_share is None or view.remaining is None:
            return False
        return view.spent < self.fallback_share * (view.spent + view.remaining)

    def __call__(self, view: PolicyView) -> Selection:
        """The next action: value pending siblings, or expand the best node with room."""
        tree = view.tree
        used: dict[int, int] = {}
        open_valued: list[TreeNode] = []
        for n in tree.values():
            if n.status in ("expanded", "unexpandable"):
                used[n.depth] = used.get(n.depth, 0) + 1
            elif n.status == "open" and n.value is not None and n.depth < view.max_depth:
                open_valued.append(n)
        roomy = [n for n in open_valued if used.get(n.depth, 0) < self.per_depth]
        cands = [n for n in roomy if n.depth == 0 or (n.value or 0.0) >= self._floor(n.depth)]
        best = max(cands, key=lambda n: (n.value or 0.0, n.depth), default=None)
        if best is None and self._may_fall_back(view):
            below = [n for n in roomy if (n.value or 0.0) > 0.0]
            best = max(below, key=lambda n: (-n.depth, n.value or 0.0, -n.index), default=None)
        pending = [
            n
            for n in tree.unvalued()
            if n.depth < view.max_depth + 1 and used.get(n.depth, 0) < self.per_depth
        ]
        if pending and (best is None or (best.value or 0.0) < self.expand_at):

            def parent_value(n: TreeNode) -> tuple[float, int]:
                p = tree.get(n.parent) if n.parent is not None else None
                return ((p.value or 0.0) if p is not None else 0.0, n.depth)

            parent = max(pending, key=parent_value).parent or ROOT_ID
            ids = tuple(n.id for n in pending if n.parent == parent)[: self.value_batch]
            return Selection((Action("value", parent, ids=ids, allocated=view.remaining),))
        if best is None:
            return Selection(reason="exhausted")
        if view.remaining is not None and view.remaining < (view.expected_cost or 0.0):
            return Selection(reason="budget")
        return Selection((Action("expand", best.id, allocated=view.remaining),))
