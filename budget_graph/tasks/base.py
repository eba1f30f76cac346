"""The small protocols a task implements so budget_graph's graphs can run it."""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from budget_graph._internal.records import record_fields

__all__ = ["Item", "SampledTask", "SearchTask", "TaskError", "load_items", "load_task"]


class TaskError(ValueError):
    """A task or item file could not be loaded; the message names the source and field."""


@dataclass(frozen=True, slots=True)
class Item:
    """One problem of a task."""

    id: str
    """Stable id (e.g. the puzzle index or question id)."""
    input: str
    """The problem as the prompts take it (e.g. ``"4 5 6 10"``)."""
    gold: str | tuple[str, ...] | None = None
    """Gold answer where one exists; a tuple is a set of acceptable answers."""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def golds(self) -> tuple[str, ...]:
        """Every acceptable gold answer (empty when there is none)."""
        if self.gold is None:
            return ()
        return (self.gold,) if isinstance(self.gold, str) else tuple(self.gold)

    def accepts(self, answer: str | None) -> bool:
        """Whether ``answer`` is one of the acceptable gold answers."""
        return answer is not None and answer in self.golds

    def _asdict(self) -> dict[str, Any]:
        # Checkpoints store this record as its fields (see budget_graph._internal.records).
        return record_fields(self)


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


def load_items(path: str | Path) -> list[Item]:
    """Items from a JSONL file: ``{"id", "input", "gold"?, "meta"?}`` per line.

    ``gold`` is a string or a list of acceptable answers.

    Raises:
        TaskError: A line is not a JSON object with a string ``id`` and ``input``, ids repeat,
            or the file has no items.

    """
    items: list[Item] = []
    seen: set[str] = set()
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskError(f"{path}: line {lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or "id" not in obj or "input" not in obj:
            raise TaskError(f"{path}: line {lineno}: expected an object with 'id' and 'input'")
        gold = obj.get("gold")
        if isinstance(gold, list):
            if not gold or not all(isinstance(g, str) for g in gold):
                raise TaskError(
                    f"{path}: line {lineno}: 'gold' must be a string or a "
                    f"non-empty list of strings (got {gold!r:.60})"
                )
            gold = tuple(gold)
        elif gold is not None and not isinstance(gold, str):
            raise TaskError(
                f"{path}: line {lineno}: 'gold' must be a string or a list of "
                f"strings (got {gold!r:.60})"
            )
        item_id = str(obj["id"])
        if item_id in seen:
            raise TaskError(f"{path}: line {lineno}: duplicate item id {item_id!r}")
        seen.add(item_id)
        items.append(
            Item(id=item_id, input=str(obj["input"]), gold=gold, meta=dict(obj.get("meta") or {}))
        )
    if not items:
        raise TaskError(f"{path}: no items")
    return items


def load_task(spec: str) -> Any:
    """A task object from ``"package.module:attr"``.

    A task object from ``"package.module:attr"`` (a class or factory called with no
    arguments, or an instance).

    Raises:
        TaskError: The module or attribute does not exist, or the result has no ``items``.

    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise TaskError(f"Invalid task {spec!r}: expected 'package.module:attr'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskError(f"Invalid task {spec!r}: cannot import {module_name!r} ({exc})") from None
    target = getattr(module, attr, None)
    if target is None:
        raise TaskError(f"Invalid task {spec!r}: {module_name!r} has no attribute {attr!r}")
    is_factory = isinstance(target, type) or not hasattr(target, "cot_prompt")
    task = target() if callable(target) and is_factory else target
    if not hasattr(task, "cot_prompt") or not hasattr(task, "is_correct"):
        raise TaskError(f"Invalid task {spec!r}: not a task (needs cot_prompt, is_correct...)")
    return task
