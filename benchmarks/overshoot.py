"""Randomised stress of the hard cap: many runs, random budgets and call sizes, parallel
branches, threads and asyncio. Last line: ``overshoot_tokens_max=<n> runs=<m>`` (n must be 0)."""

from __future__ import annotations

import asyncio
import operator
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from budget_graph import Budget, BudgetState, budgeted, guard, with_budget
from budget_graph.testing import BillingFakeChat

WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()


class S(BudgetState):
    outs: Annotated[list[int], operator.add]


def build(rng: random.Random, fake: BillingFakeChat, branches: int, depth: int):
    llm = budgeted(fake)
    caps = [rng.choice([None, 1, 5, 20, 80]) for _ in range(branches)]

    @guard
    def work(state):
        for _ in range(depth):
            llm.invoke(
                " ".join(rng.choices(WORDS, k=rng.randint(1, 30))), max_tokens=caps[state["i"]]
            )
        return {"outs": [state["i"]]}

    b = StateGraph(S)
    b.add_node("work", work)
    b.add_conditional_edges(
        START, lambda s: [Send("work", {"i": i}) for i in range(branches)], ["work"]
    )
    b.add_edge("work", END)
    return b.compile()


def one_run(seed: int) -> int:
    rng = random.Random(seed)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(1, 120))) for _ in range(5)]
    fake = BillingFakeChat(texts=texts)
    count = rng.choice(["output", "input+output"])
    limit = rng.randint(1, 3_000)
    app = with_budget(
        build(rng, fake, rng.randint(1, 16), rng.randint(1, 4)),
        Budget(max_tokens=limit, count=count),
    )
    if rng.random() < 0.5:
        out = app.invoke({"outs": []})
    else:
        out = asyncio.run(app.ainvoke({"outs": []}))
    spend = out["spend"]
    charged = spend.output_tokens if count == "output" else spend.total_tokens
    assert charged == spend.units == app.last_meter.spent
    return max(charged - limit, 0)


def main(runs: int = 300) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:  # runs in threads, concurrently
        overshoots = list(pool.map(one_run, range(runs)))
    print(f"runs with overshoot: {sum(1 for o in overshoots if o)} of {runs}")
    print(f"overshoot_tokens_max={max(overshoots)} runs={runs}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
