"""Value functions (LLM judge, programmatic verifier, user reward) and the ``value`` node.

A value function maps ``(item, node)`` to a :class:`Score`, or ``None`` to abstain; chain
them with ``|`` so the first that answers wins (``VerifierValue(task) | JudgeValue(...)``
values verified solutions without a call and asks the judge for the rest).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.outputs import ChatGeneration

from budget_graph._internal import observe
from budget_graph.budgeted import budgeted
from budget_graph.errors import BudgetExceededError
from budget_graph.nodes.tree import SearchStats, TreeNode
from budget_graph.tasks.base import Item, SearchTask

__all__ = [
    "ChainValue",
    "JudgeValue",
    "RewardValue",
    "Score",
    "ValueCache",
    "ValueFunction",
    "VerifierValue",
    "make_value_node",
]


@dataclass(frozen=True, slots=True)
class Score:
    """What a value function says about one node."""

    value: float
    """R(n), on the judge's scale."""
    dead: bool = False
    """No way forward from this node (prune it)."""
    solved: bool = False
    """The node is a verified solution."""
    units: int = 0
    """Budget units spent computing the score (0 if cached or programmatic)."""
    calls: int = 0
    """LLM calls made."""
    note: str | None = None
    """How the score was obtained (``"judge"``, ``"cached"``, ``"verifier"``...)."""


class ValueFunction(Protocol):
    """Scores a node; ``None`` abstains (the next function in a chain decides)."""

    def __call__(self, item: Item, node: TreeNode) -> Score | None:
        """The node's score, or ``None``."""


class _Chainable:
    def __or__(self, other: ValueFunction) -> ChainValue:
        return ChainValue((self, other))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ChainValue(_Chainable):
    """The first function that does not abstain decides; all abstain -> 0."""

    functions: tuple[ValueFunction, ...]

    def __or__(self, other: ValueFunction) -> ChainValue:
        return ChainValue((*self.functions, other))

    def __call__(self, item: Item, node: TreeNode) -> Score | None:
        """Ask each function in turn."""
        for fn in self.functions:
            score = fn(item, node)
            if score is not None:
                return score
        return None


@dataclass(frozen=True, slots=True)
class VerifierValue(_Chainable):
    """A programmatic verifier: verified solutions score ``solved_value``; abstains otherwise."""

    task: SearchTask
    solved_value: float = 1e6
    """Score of a verified solution (above any judge score)."""

    def __call__(self, item: Item, node: TreeNode) -> Score | None:
        """Verified -> ``solved_value``; else abstain."""
        if node.verified or self.task.verify(item, node.text):
            return Score(self.solved_value, solved=True, note="verifier")
        return None


@dataclass(frozen=True, slots=True)
class RewardValue(_Chainable):
    """A user reward function ``fn(item, text) -> float | None`` (``None`` abstains).

    A reward at or below ``dead_below`` prunes the node.
    """

    fn: Callable[[Item, str], float | None]
    dead_below: float | None = 0.0

    def __call__(self, item: Item, node: TreeNode) -> Score | None:
        """The reward, marked dead at or below ``dead_below``."""
        value = self.fn(item, node.text)
        if value is None:
            return None
        dead = self.dead_below is not None and value <= self.dead_below
        return Score(float(value), dead=dead, note="reward")


class ValueCache:
    """Judge results by prompt, shared across branches (and runs, if you reuse it).

    Thread-safe; a prompt being judged by one branch makes the others wait for it
    instead of paying twice.
    """

    def __init__(self) -> None:
        """An empty cache."""
        self._values: dict[str, float] = {}
        self._inflight: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.hits = 0
        """Lookups answered from the cache."""

    def __len__(self) -> int:
        return len(self._values)

    def get_or_compute(self, key: str, compute: Callable[[], Score]) -> Score:
        """The cached score of ``key`` (marked ``note="cached"``, no units) or compute it."""
        while True:
            with self._lock:
                if key in self._values:
                    self.hits += 1
                    return Score(self._values[key], note="cached")
                event = self._inflight.get(key)
                if event is None:
                    event = self._inflight[key] = threading.Event()
                    break
            event.wait()
        try:
            score = compute()
            # A completed judgement (even unparsable) is what the model said; one cut short by
            # the budget clamp is not, so it is not reused.
            if score.calls and score.note != "truncated":
                with self._lock:
                    self._values[key] = score.value
            return score
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            event.set()


class JudgeValue(_Chainable):
    """An LLM judge: ``samples`` completions of the task's value prompt, summed.

    Each sample is parsed with ``task.parse_value``; an unparsable sample counts
    ``unparsable_value`` and emits ``budget.judge_unparsable`` (never raises). The call
    goes through :func:`~budget_graph.budgeted` so it is reserved against the run's meter.

    Args:
        model: The judge chat model.
        task: Supplies ``value_prompt`` and ``parse_value``.
        samples: Judge samples per node (one request with ``n=samples`` if ``batched``).
        batched: Ask for all samples in one request (``n``), paying the prompt once.
        max_tokens: Output cap per sample (further clamped by the budget).
        cache: Share judgements of identical prompts (within and across runs).

    """

    def __init__(
        self,
        model: BaseChatModel,
        task: SearchTask,
        *,
        samples: int = 3,
        batched: bool = True,
        max_tokens: int | None = 1000,
        cache: ValueCache | None = None,
        unparsable_value: float = 0.0,
    ) -> None:
        """Configure the judge (see class docstring)."""
        if samples < 1:
            raise ValueError(f"samples must be >= 1 (got {samples})")
        self.llm = budgeted(model, require_meter=False)  # unbudgeted when run without one
        self.task = task
        self.samples = samples
        self.batched = batched
        self.max_tokens = max_tokens
        self.cache = cache
        self.unparsable_value = unparsable_value

    def _judge(self, item: Item, node: TreeNode, prompt: str) -> Score:
        kwargs: dict[str, Any] = {}
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        texts: list[str] = []
        units = calls = 0
        truncated = False
        batches = [self.samples] if self.batched else [1] * self.samples
        for n in batches:
            call_kwargs: dict[str, Any] = dict(kwargs)
            if n > 1:
                call_kwargs["n"] = n
            result = self.llm.generate([[HumanMessage(prompt)]], **call_kwargs)
            gens = [g for g in result.generations[0] if isinstance(g, ChatGeneration)]
            texts.extend(g.text for g in gens)
            truncated = truncated or any(
                (g.generation_info or {}).get("finish_reason") == "length" for g in gens
            )
            calls += 1
            usage = getattr(gens[0].message, "usage_metadata", None) if gens else None
            if usage:
                units += int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        total, bad = 0.0, 0
        for text in texts:
            v = self.task.parse_value(item, node.text, text)
            if v is None:
                bad += 1
                v = self.unparsable_value
            total += v
        if bad:
            observe.emit(
                "budget.judge_unparsable", node=node.id, samples=len(texts), unparsable=bad
            )
        note = "truncated" if truncated else ("unparsable" if bad else "judge")
        return Score(total, units=units, calls=calls, note=note)

    def __call__(self, item: Item, node: TreeNode) -> Score | None:
        """Judge the node (from the cache if the same prompt was judged before)."""
        prompt = self.task.value_prompt(item, node.text)
        if self.cache is None:
            return self._judge(item, node, prompt)
        return self.cache.get_or_compute(prompt, lambda: self._judge(item, node, prompt))


def make_value_node(
    value: ValueFunction,
    *,
    dedupe: bool = True,
    stop_at: float | None = None,
    max_depth: int | None = None,
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """Build the ``value`` node: score the candidate nodes it is sent.

    The node takes a ``Send`` payload ``{"item": Item, "nodes": [TreeNode, ...]}`` and
    returns ``{"tree": [updated records], "search_stats": ...}``. Nodes are scored in
    order; a text repeated in the batch scores 0 without a call (as Tree of Thoughts
    does); with ``stop_at`` the batch stops after the first score at or above it and the
    rest stay unvalued (lazy valuation; the policy may value them later). A refused
    reservation ends the batch with ``stop_reason="budget"``.

    Args:
        value: The value function (or chain).
        dedupe: Score repeated texts 0 without a call.
        stop_at: Stop the batch once a node scores at least this much.
        max_depth: Nodes at this depth that are not solutions become ``dead``.

    """

    def value_node(payload: Mapping[str, Any]) -> dict[str, Any]:
        item: Item = payload["item"]
        nodes: Sequence[TreeNode] = payload.get("nodes") or ()
        out: list[TreeNode] = []
        seen: set[str] = set()
        units = calls = 0
        stop_reason: str | None = None
        for i, node in enumerate(nodes):
            if dedupe and node.text in seen:
                out.append(replace(node, reward=0.0, value=0.0, note="duplicate"))
                continue
            seen.add(node.text)
            try:
                score = value(item, node)
            except BudgetExceededError:
                stop_reason = "budget"
                break
            if score is None:
                score = Score(0.0, note="abstained")
            units += score.units
            calls += score.calls
            status = node.status
            if score.solved or node.verified:
                status = "solved"
            elif score.dead or (max_depth is not None and node.depth >= max_depth):
                status = "dead" if score.dead else status
            out.append(
                replace(
                    node,
                    reward=score.value,
                    value=score.value,
                    status=status,
                    verified=node.verified or score.solved,
                    value_cost=node.value_cost + score.units,
                    note=score.note,
                )
            )
            if stop_at is not None and score.value >= stop_at and i + 1 < len(nodes):
                break
        update: dict[str, Any] = {
            "tree": out,
            "search_stats": SearchStats(value_calls=calls, value_units=units, valued=len(out)),
        }
        if stop_reason is not None:
            update["stop_reason"] = stop_reason
        return update

    value_node.__name__ = "value"
    return value_node
