"""The small protocols a task implements so budget_graph's graphs can run it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Item", "SampledTask", "SearchTask"]


@dataclass(frozen=True, slots=True)
class Item:
    """One problem of a task."""

    id: str
    """Stable id (e.g. the puzzle index or question id)."""
    input: str
    """The problem as the prompts take it (e.g. ``"4 5 6 10"``)."""
    gold: str | None = None
    """Gold answer where one exists."""
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class SampledTask(Protocol):
    """A task answered by sampling whole reasoning chains (CoT, self-consistency)."""

    name: str

    def items(self) -> Sequence[Item]:
        """The task's problems, in a stable order."""

    def cot_prompt(self, item: Item) -> str:
        """The prompt that asks for a full reasoning chain and an answer."""

    def extract_answer(self, item: Item, completion: str) -> str | None:
        """The answer a completion gives, normalised for voting; ``None`` if unparsable."""

    def is_correct(self, item: Item, answer: str | None) -> bool:
        """Whether an extracted answer is correct (verifier or gold match)."""


@runtime_checkable
class SearchTask(SampledTask, Protocol):
    """A task searched step by step (Tree of Thoughts style).

    A *state* is the text of a partial solution (the lines so far, ``""`` at the root).
    """

    max_depth: int

    def propose_prompt(self, item: Item, state: str) -> str:
        """The prompt asking for candidate next steps of ``state``."""

    def parse_proposals(self, item: Item, state: str, completion: str) -> list[str]:
        """Child states (each the parent's text plus one step) from a propose completion."""

    def value_prompt(self, item: Item, state: str) -> str:
        """The prompt asking a judge to rate ``state``."""

    def parse_value(self, item: Item, state: str, completion: str) -> float | None:
        """A judge completion's value (``None`` if unparsable)."""

    def verify(self, item: Item, state: str) -> bool:
        """Whether ``state`` is a complete, correct solution."""

    def answer(self, item: Item, state: str) -> str | None:
        """The final answer a state gives, if it is complete."""
