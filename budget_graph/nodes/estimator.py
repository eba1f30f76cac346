"""Estimators: how many tokens a problem deserves, and the ``estimate`` node that sets it.

Each estimator maps a problem (an :class:`~budget_graph.tasks.base.Item`) to a token count,
or ``None`` when it cannot tell. ``a | b`` falls back to ``b`` when ``a`` has no answer and
``.clamp(lo, hi)`` bounds any estimator.

The count means what TALE (Han et al., 2024) means: the *output* tokens a correct
solution needs, never prompt tokens. Self-consistency puts it in the prompt and caps each
chain's ``max_tokens`` with it; the planner caps the search's generated tokens with it
(:func:`~budget_graph.nodes.edge.generated_left`). Neither reads it as prompt + output
units: that is the run :class:`~budget_graph.budget.Budget`'s job.
"""

from __future__ import annotations

import math
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from budget_graph._internal import observe
from budget_graph.accounting import count_tokens
from budget_graph.budgeted import budgeted
from budget_graph.errors import BudgetExceededError
from budget_graph.tasks.base import Item

__all__ = [
    "Clamped",
    "Estimator",
    "Fallback",
    "FixedEstimator",
    "HeuristicEstimator",
    "LearnedEstimator",
    "TaleEstimator",
    "make_estimator_node",
    "parse_token_budget",
]


class Estimator(Protocol):
    """Maps a problem to a token budget (``None``: no opinion)."""

    def __call__(self, item: Item) -> int | None:
        """The budget for ``item``."""


class _Composable:
    def __or__(self, other: Estimator) -> Fallback:
        return Fallback(self, other)  # type: ignore[arg-type]

    def clamp(self, min_tokens: int, max_tokens: int) -> Clamped:
        """Bound the estimate to ``[min_tokens, max_tokens]``."""
        return Clamped(self, min_tokens=min_tokens, max_tokens=max_tokens)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Fallback(_Composable):
    """``first``'s estimate, or ``second``'s when ``first`` has none."""

    first: Estimator
    second: Estimator

    def __call__(self, item: Item) -> int | None:
        """First answer wins."""
        got = self.first(item)
        return got if got is not None else self.second(item)


@dataclass(frozen=True, slots=True)
class Clamped(_Composable):
    """An estimate bounded to ``[min_tokens, max_tokens]``."""

    inner: Estimator
    min_tokens: int = 1
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.min_tokens < 0:
            raise ValueError(f"min_tokens must be >= 0 (got {self.min_tokens})")
        if self.max_tokens is not None and self.max_tokens < self.min_tokens:
            raise ValueError(
                f"max_tokens ({self.max_tokens}) must be >= min_tokens ({self.min_tokens})"
            )

    def __call__(self, item: Item) -> int | None:
        """The inner estimate, clamped."""
        got = self.inner(item)
        if got is None:
            return None
        got = max(got, self.min_tokens)
        return got if self.max_tokens is None else min(got, self.max_tokens)


@dataclass(frozen=True, slots=True)
class FixedEstimator(_Composable):
    """The same budget for every problem."""

    tokens: int

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise ValueError(f"tokens must be >= 1 (got {self.tokens})")

    def __call__(self, item: Item) -> int | None:
        """``tokens``."""
        return self.tokens


@dataclass(frozen=True, slots=True)
class HeuristicEstimator(_Composable):
    """A budget from problem features: ``base + per_input_token * tokens(input)``.

    ``features`` may add task-specific terms (e.g. more tokens for larger numbers).
    """

    base: int = 500
    per_input_token: float = 20.0
    features: Callable[[Item], float] | None = None

    def __call__(self, item: Item) -> int | None:
        """The heuristic budget."""
        extra = self.features(item) if self.features is not None else 0.0
        return int(self.base + self.per_input_token * count_tokens(item.input) + extra)


# A minus sign before the number makes it no budget at all ("-5" -> None).
_NUMBER = re.compile(r"(?<![-\d.,])(\d[\d,]*(?:\.\d+)?)\s*(k|thousand)?\b", re.IGNORECASE)


def parse_token_budget(text: str) -> int | None:
    """The token count a model answered, or ``None`` if it gave no number.

    Prefers a number followed by "token"; handles ``"1,200"``, ``"1.5k"``, ``"2 thousand"``.
    """
    lowered = text.lower()
    matches = list(_NUMBER.finditer(lowered))
    if not matches:
        return None
    near = [m for m in matches if "token" in lowered[m.end() : m.end() + 12]]
    m = (near or matches)[0]
    value = float(m.group(1).replace(",", ""))
    if m.group(2):
        value *= 1000
    return int(round(value)) if value > 0 and math.isfinite(value) else None


TALE_PROMPT = (
    "Task: Analyze the given question and estimate the minimum number of tokens you would "
    "need to solve it step by step. Answer with a single number of tokens.\n"
    "Question: {question}"
)
"""The TALE-style zero-shot budget prompt."""


class TaleEstimator(_Composable):
    """TALE-style zero-shot estimate: ask the model for the minimal token budget.

    The answer is parsed with :func:`parse_token_budget` and clamped to
    ``[min_tokens, max_tokens]``; an unparsable answer emits ``budget.estimator_unparsable``
    and yields ``None`` (chain a fallback with ``|``). The call is budgeted.
    """

    def __init__(
        self,
        model: BaseChatModel,
        *,
        min_tokens: int = 100,
        max_tokens: int = 100_000,
        prompt: str = TALE_PROMPT,
        call_max_tokens: int = 32,
    ) -> None:
        """Configure the estimator (see class docstring)."""
        if not 0 < min_tokens <= max_tokens:
            raise ValueError(
                f"need 0 < min_tokens <= max_tokens (got min_tokens={min_tokens}, "
                f"max_tokens={max_tokens})"
            )
        self.llm = budgeted(model, require_meter=False)  # unbudgeted when run without one
        self.min_tokens, self.max_tokens = min_tokens, max_tokens
        self.prompt = prompt
        self.call_max_tokens = call_max_tokens

    def __call__(self, item: Item) -> int | None:
        """Ask, parse, clamp."""
        msg = self.llm.invoke(
            [HumanMessage(self.prompt.format(question=item.input))],
            max_tokens=self.call_max_tokens,
        )
        got = parse_token_budget(msg.text)
        if got is None:
            observe.emit("budget.estimator_unparsable", item=item.id, output=msg.text[:200])
            return None
        return min(max(got, self.min_tokens), self.max_tokens)


class LearnedEstimator(_Composable):
    """A quantile of the spend that solved similar problems in past runs.

    ``observe(item, units, solved)`` records a finished run; the estimate for a new item
    is the ``quantile`` of the solved spends of its class (``key(item)``), or ``None``
    until ``min_samples`` solved runs of that class were seen.
    """

    def __init__(
        self,
        *,
        quantile: float = 0.9,
        key: Callable[[Item], str] = lambda item: "all",
        min_samples: int = 3,
        history: Mapping[str, list[int]] | None = None,
    ) -> None:
        """Configure the estimator (see class docstring)."""
        if not 0 < quantile <= 1:
            raise ValueError(f"quantile must be in (0, 1] (got {quantile})")
        self.quantile = quantile
        self.key = key
        self.min_samples = min_samples
        self._spends: dict[str, list[int]] = defaultdict(list)
        for k, v in (history or {}).items():
            self._spends[k].extend(v)
        self._lock = threading.Lock()

    def observe(self, item: Item, units: int, solved: bool) -> None:
        """Record a finished run (only solved runs inform the estimate)."""
        if solved:
            with self._lock:
                self._spends[self.key(item)].append(units)

    def __call__(self, item: Item) -> int | None:
        """The quantile of the solved spends of ``item``'s class."""
        with self._lock:
            spends = sorted(self._spends.get(self.key(item), ()))
        if len(spends) < self.min_samples:
            return None
        idx = min(len(spends) - 1, max(0, math.ceil(self.quantile * len(spends)) - 1))
        return spends[idx]


def make_estimator_node(
    estimator: Estimator, *, default: int | None = None
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """Build the ``estimate`` node: writes ``budget_tokens`` for the state's ``item``.

    ``budget_tokens`` is an output-token count (TALE's meaning); ``budget_tokens_base`` is
    the run's output tokens when it was set, so a consumer counts generated tokens from
    there. A refused call or no estimate leaves ``default`` (``None``: only the run's
    budget caps the search).
    """

    def estimate(state: Mapping[str, Any]) -> dict[str, Any]:
        spend = state.get("spend")
        base = spend.output_tokens if spend is not None else 0
        try:
            tokens = estimator(state["item"])
        except BudgetExceededError:
            tokens = None
        return {
            "budget_tokens": tokens if tokens is not None else default,
            "budget_tokens_base": base,
        }

    estimate.__name__ = "estimate"
    return estimate
