r"""Date understanding (BIG-bench, 359 questions) with the least-to-most prompt of Faithful CoT.

The prompt and template are the ones that produced the shipped code-davinci-002
recordings (veronica320/Faithful-COT ``source/prompt/date/LtM_*``), joined as that
repository does: ``f"{prompt}\\n\\n{template with the question}"``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence

from budget_graph.replay.format import data_dir
from budget_graph.tasks.base import Item

__all__ = ["DateTask", "extract_date", "load_items", "load_prompt"]

_DATE = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}$")


@functools.cache
def load_prompt() -> tuple[str, str]:
    """The few-shot least-to-most prompt and the per-question template."""
    d = data_dir() / "date"
    return (d / "ltm_prompt.txt").read_text(), (d / "ltm_template.txt").read_text()


@functools.cache
def _items() -> tuple[Item, ...]:
    lines = (data_dir() / "date" / "items.jsonl").read_text().splitlines()
    return tuple(
        Item(id=o["id"], input=o["input"], gold=o["gold"]) for o in map(json.loads, lines) if o
    )


def load_items() -> list[Item]:
    """The 359 questions (ids ``"0"``..``"358"``, gold ``"MM/DD/YYYY"``)."""
    return list(_items())


def extract_date(completion: str) -> str | None:
    """The answer after the last ``"answer is "`` (whitespace, ``.`` and ``#`` removed).

    Faithful CoT's own rule; ``None`` when there is no ``"answer is "`` or the rest is not
    a ``MM/DD/YYYY`` date.
    """
    if "answer is " not in completion:
        return None
    answer = re.sub(r"[\s.#]", "", completion.split("answer is ")[-1].strip())
    return answer if _DATE.match(answer) else None


class DateTask:
    """Date understanding: answer ``MM/DD/YYYY``; correct on an exact match with a gold date.

    Example:
        >>> task = DateTask()
        >>> item = task.items()[0]
        >>> task.is_correct(item, task.extract_answer(item, "... So the answer is 05/01/2021."))
        True

    """

    name = "date"

    def __init__(self) -> None:
        self.prompt, self.template = load_prompt()

    def items(self) -> Sequence[Item]:
        """The 359 questions."""
        return _items()

    def cot_prompt(self, item: Item) -> str:
        """The least-to-most prompt for one question."""
        return f"{self.prompt}\n\n{self.template.replace('[QUESTION]', item.input)}"

    def extract_answer(self, item: Item, completion: str) -> str | None:
        """The date after "So the answer is", normalised for voting."""
        return extract_date(completion)

    def is_correct(self, item: Item, answer: str | None) -> bool:
        """Exact match with the gold date (or one of them, when an item has a set)."""
        return item.accepts(answer)
