"""Game of 24 (puzzles 900-999 of the Tree-of-Thoughts benchmark), as a sampled and search task.

The prompts are the ones that produced the shipped GPT-4 recordings
(princeton-nlp/tree-of-thought-llm ``src/tot/prompts/game24.py``), and the per-state prompt
wrappers, proposal parsing and value mapping follow that repository's
``src/tot/tasks/game24.py``, so our requests match the recorded ones byte for byte.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from budget_graph.replay.format import data_dir
from budget_graph.tasks.base import Item

__all__ = [
    "VALUE_MAP",
    "Game24Task",
    "current_numbers",
    "evaluate_expression",
    "load_items",
    "load_prompts",
    "verify_expression",
]

VALUE_MAP: dict[str, float] = {"impossible": 0.001, "likely": 1.0, "sure": 20.0}
"""Judge label -> value, as in the original run (summed over the judge samples, in this order)."""


@functools.cache
def load_prompts() -> dict[str, str]:
    """The prompt templates: ``standard``, ``cot``, ``propose``, ``value``, ``value_last_step``."""
    return dict(json.loads((data_dir() / "game24" / "prompts.json").read_text()))


@functools.cache
def _items() -> tuple[Item, ...]:
    lines = (data_dir() / "game24" / "items.jsonl").read_text().splitlines()
    return tuple(Item(id=o["id"], input=o["input"]) for o in map(json.loads, lines) if o)


def load_items() -> list[Item]:
    """The 100 puzzles (ids ``"900"``..``"999"``, input like ``"4 5 6 10"``)."""
    return list(_items())


def current_numbers(state: str) -> str:
    """The numbers left after the last step of ``state`` (``"6 9 10"``)."""
    return state.strip().split("\n")[-1].split("left: ")[-1].split(")")[0]


_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def evaluate_expression(expression: str) -> tuple[Fraction, list[int]] | None:
    """Exact value and the integers used by an arithmetic expression, or ``None``.

    Only integers, ``+ - * /``, unary minus and parentheses are accepted (parsed with
    ``ast``, evaluated with ``Fraction``); anything else, or a division by zero, is ``None``.
    """
    text = expression.replace("×", "*").replace("÷", "/").replace("−", "-").strip()
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return None
    numbers: list[int] = []

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            numbers.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))  # type: ignore[no-any-return]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        raise ValueError(type(node).__name__)

    try:
        value = ev(tree)
    except (ValueError, ZeroDivisionError):
        return None
    return value, numbers


def verify_expression(puzzle: str, expression: str) -> bool:
    """Whether ``expression`` uses each number of ``puzzle`` exactly once and equals 24."""
    result = evaluate_expression(expression)
    if result is None:
        return False
    value, used = result
    wanted = [int(t) for t in re.findall(r"\d+", puzzle)]
    return Counter(used) == Counter(wanted) and value == 24


class Game24Task:
    """Game of 24: reach 24 from four numbers with ``+ - * /``, each number used once.

    Implements ``SampledTask`` (standard and CoT prompts, answer = the final expression)
    and ``SearchTask`` (ToT propose/value prompts; a state is the lines so far).

    Example:
        >>> task = Game24Task()
        >>> item = task.items()[0]
        >>> item.input
        '4 5 6 10'
        >>> task.is_correct(item, task.extract_answer(item, "Answer: (4 * 5) + (10 - 6) = 24"))
        True

    """

    name = "game24"
    max_depth = 4

    def __init__(self, *, dead_end_rule: bool = True) -> None:
        """Load the prompts.

        Args:
            dead_end_rule: Value a four-step state without an answer 0 whatever the judge
                says (the original run's rule); ``False`` for logs whose judge scored them.

        """
        self.prompts = load_prompts()
        self.dead_end_rule = dead_end_rule

    def items(self) -> Sequence[Item]:
        """The 100 puzzles."""
        return _items()

    def standard_prompt(self, item: Item) -> str:
        """The 5-shot answer-only prompt."""
        return self.prompts["standard"].format(input=item.input)

    def cot_prompt(self, item: Item) -> str:
        """The 5-shot chain-of-thought prompt."""
        return self.prompts["cot"].format(input=item.input)

    def extract_answer(self, item: Item, completion: str) -> str | None:
        """The expression on the last line (``"Answer: <expr> = 24"`` -> ``"<expr>"``)."""
        last = completion.strip().split("\n")[-1].lower().replace("answer: ", "")
        expression = last.split("=")[0].strip()
        return expression or None

    def is_correct(self, item: Item, answer: str | None) -> bool:
        """Whether the expression uses the puzzle's numbers once each and equals 24."""
        return answer is not None and verify_expression(item.input, answer)

    # --- SearchTask ------------------------------------------------------------------------

    def propose_prompt(self, item: Item, state: str) -> str:
        """Propose next steps; once 24 is left, ask the CoT prompt for the final answer line."""
        numbers = current_numbers(state if state else item.input)
        if numbers == "24":
            return self.prompts["cot"].format(input=item.input) + "Steps:" + state
        return self.prompts["propose"].format(input=numbers)

    def parse_proposals(self, item: Item, state: str, completion: str) -> list[str]:
        """One child per completion line (the original splits on every newline)."""
        return [state + line + "\n" for line in completion.split("\n")]

    def value_prompt(self, item: Item, state: str) -> str:
        """Judge the numbers left, or (after the answer line) judge the final answer."""
        last = state.strip().split("\n")[-1]
        if "left: " not in last:
            answer = last.lower().replace("answer: ", "")
            return self.prompts["value_last_step"].format(input=item.input, answer=answer)
        return self.prompts["value"].format(input=current_numbers(state))

    def parse_value(self, item: Item, state: str, completion: str) -> float | None:
        """The value of one judge sample: its last line's label, ``None`` if it has none.

        As in the original run, a four-line state without an answer is worth 0 whatever
        the judge says.
        """
        if self.dead_end_rule and self.is_dead_end(state):
            return 0.0
        return VALUE_MAP.get(completion.split("\n")[-1])

    def value(self, item: Item, state: str, completions: Sequence[str]) -> float:
        """The summed value of several judge samples (unlabelled samples count 0).

        Summed label by label in ``VALUE_MAP`` order exactly as the original run did, so
        equal values compare equal bit for bit and greedy selection breaks ties the same way.
        """
        if self.dead_end_rule and self.is_dead_end(state):
            return 0.0
        names = [c.split("\n")[-1] for c in completions]
        return sum(value * names.count(name) for name, value in VALUE_MAP.items())

    @staticmethod
    def is_dead_end(state: str) -> bool:
        """Four steps taken and still no answer line."""
        return len(state.strip().split("\n")) == 4 and "answer" not in state.lower()

    def verify(self, item: Item, state: str) -> bool:
        """Whether the state's last line is a correct answer expression."""
        return self.is_correct(item, self.answer(item, state))

    def answer(self, item: Item, state: str) -> str | None:
        """The state's answer expression, if its last line is an ``Answer:`` line."""
        last = state.strip().split("\n")[-1]
        if not last.lower().startswith("answer:"):
            return None
        return self.extract_answer(item, last)
