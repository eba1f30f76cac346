"""Seconds per tree node of the planner graph at 250, 500, 1,000 and 2,000 nodes (fake model).

A synthetic task whose every state has five children is searched value-proportionally
(three nodes expanded in parallel per step) until a token budget sized for the target
node count runs out. If state updates or backups were quadratic, the time per node would
grow with the tree; the last line prints the ratio of time per node at 2,000 vs 250
nodes (target <= 1.5).

Run: ``python benchmarks/tree_scaling.py``
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from budget_graph import Budget
from budget_graph.nodes import ValueProportional
from budget_graph.planner import build_planner
from budget_graph.tasks.base import Item

__all__ = ["SyntheticTask", "main", "seconds_per_node"]

BRANCHING = 5
UNITS_PER_CALL = 40  # fixed usage per call, so the budget fixes the tree size


class _FakeChat(BaseChatModel):
    """Answers propose prompts with five steps and value prompts with a hashed score."""

    @property
    def _llm_type(self) -> str:
        return "fake-tree"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = str(messages[-1].content)
        if prompt.startswith("value"):
            digest = hashlib.blake2b(prompt.encode(), digest_size=2).digest()
            text = str(1 + int.from_bytes(digest, "big") % 100)
        else:
            text = "\n".join(f"s{i}" for i in range(BRANCHING))
        usage = {"input_tokens": UNITS_PER_CALL // 2, "output_tokens": UNITS_PER_CALL // 2,
                 "total_tokens": UNITS_PER_CALL}
        msg = AIMessage(content=text, usage_metadata=usage)  # type: ignore[arg-type]
        return ChatResult(generations=[ChatGeneration(message=msg)])


class SyntheticTask:
    """Every state has ``BRANCHING`` children; values are hashed; nothing ever verifies."""

    name = "synthetic"
    max_depth = 10_000

    def items(self) -> Sequence[Item]:
        """One problem."""
        return [Item(id="0", input="root")]

    def cot_prompt(self, item: Item) -> str:  # noqa: D102
        return item.input

    def extract_answer(self, item: Item, completion: str) -> str | None:  # noqa: D102
        return None

    def is_correct(self, item: Item, answer: str | None) -> bool:  # noqa: D102
        return False

    def propose_prompt(self, item: Item, state: str) -> str:  # noqa: D102
        return f"propose {state[-40:]}"

    def parse_proposals(self, item: Item, state: str, completion: str) -> list[str]:  # noqa: D102
        return [f"{state}{line}/" for line in completion.split("\n")]

    def value_prompt(self, item: Item, state: str) -> str:  # noqa: D102
        return f"value {state}"

    def parse_value(self, item: Item, state: str, completion: str) -> float | None:  # noqa: D102
        return float(completion)

    def verify(self, item: Item, state: str) -> bool:  # noqa: D102
        return False

    def answer(self, item: Item, state: str) -> str | None:  # noqa: D102
        return None


def _budget_for(nodes: int) -> int:
    # Each expansion: one propose call and BRANCHING judge calls, adding BRANCHING nodes.
    expansions = max(nodes // BRANCHING, 1)
    return expansions * UNITS_PER_CALL * (1 + BRANCHING)


def seconds_per_node(nodes: int) -> tuple[float, int]:
    """Wall seconds per tree node for a search sized to about ``nodes`` nodes."""
    task = SyntheticTask()
    graph = build_planner(
        _FakeChat(), task=task, budget=Budget(max_tokens=_budget_for(nodes)),
        policy=ValueProportional(width=3), judge_samples=1,
    )
    start = time.perf_counter()
    out = graph.invoke({"item": task.items()[0]})
    elapsed = time.perf_counter() - start
    size = len(out["tree"])
    return elapsed / size, size


def main() -> float:
    """Print seconds per node at each size and the 2,000 / 250 ratio."""
    seconds_per_node(100)  # warm up imports and tokenizer
    results = {}
    for n in (250, 500, 1000, 2000):
        # Best of three: the machine may be shared; the minimum is the least disturbed run.
        per_node, size = min(seconds_per_node(n) for _ in range(3))
        results[n] = per_node
        print(f"nodes={size} seconds_per_node={per_node:.6f}")
    ratio = results[2000] / results[250]
    print(f"scaling_ratio={ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
