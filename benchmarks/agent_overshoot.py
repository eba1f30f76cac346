"""Agent overshoot: a post-call token check versus TokenBudgetMiddleware's reservations.

Other frameworks count an agent's tokens after each response and stop once the
count passes the limit, so the last response can overshoot by its whole size. This
runs the same scripted tool-calling agents (random tool calls and response sizes,
usage reported like a provider that honours ``max_tokens``) under both and prints
the overshoot (tokens billed beyond the limit). Last line:
``ours_overshoot=0 post_check_overshoot=<n>`` (the worst run of each).

Run: ``python benchmarks/agent_overshoot.py [runs]``.
"""

from __future__ import annotations

import random
import sys
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware.types import AgentMiddleware, AgentState, hook_config
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from budget_graph.middleware import TokenBudgetMiddleware
from budget_graph.testing import ScriptedToolModel, turn


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}: " + "lorem ipsum " * 20


@tool
def calc(expr: str) -> str:
    """Evaluate an arithmetic expression."""
    return "42"


class PostCheckBudget(AgentMiddleware):
    """The common approach: add each response's usage, stop once the total reaches the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.spent = 0

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: AgentState, runtime: Any) -> dict[str, Any] | None:
        if self.spent >= self.limit:
            msg = AIMessage(f"Token limit exceeded ({self.spent}/{self.limit})")
            return {"jump_to": "end", "messages": [msg]}
        return None

    def after_model(self, state: AgentState, runtime: Any) -> dict[str, Any] | None:
        usage = state["messages"][-1].usage_metadata or {}
        self.spent += usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
        return None


def script(rng: random.Random) -> list[dict]:
    turns = []
    for i in range(rng.randint(3, 10)):
        names = [rng.choice(["search", "calc"]) for _ in range(rng.randint(1, 4))]
        calls = [
            (n, {"query": f"q{i}{j}"} if n == "search" else {"expr": "1+1"})
            for j, n in enumerate(names)
        ]
        turns.append(turn(*calls, output_tokens=rng.randint(20, 600)))
    return turns


def run_once(seed: int, *, ours: bool) -> tuple[int, int]:
    rng = random.Random(seed)
    steps = script(rng)
    limit = rng.randint(500, 4000)
    model = ScriptedToolModel(steps=steps, final_output_tokens=rng.randint(20, 400))
    middleware: AgentMiddleware = (
        TokenBudgetMiddleware(run_limit=limit, count="total") if ours else PostCheckBudget(limit)
    )
    agent = create_agent(model, tools=[search, calc], middleware=[middleware])
    agent.invoke({"messages": [HumanMessage("Research and compute the answer.")]})
    return model.billed_total, limit


def main(runs: int = 60) -> None:
    rows = []
    for seed in range(runs):
        ours_billed, limit = run_once(seed, ours=True)
        post_billed, _ = run_once(seed, ours=False)
        rows.append((seed, limit, ours_billed, post_billed))
    ours_over = [max(o - lim, 0) for _, lim, o, _ in rows]
    post_over = [max(p - lim, 0) for _, lim, _, p in rows]
    print(f"{'seed':>4} {'limit':>6} {'ours':>6} {'post-check':>10} {'overshoot':>9}")
    for (seed, lim, o, p), over in zip(rows[:10], post_over, strict=False):
        print(f"{seed:>4} {lim:>6} {o:>6} {p:>10} {over:>9}")
    print(f"runs={runs}")
    print(
        f"post_check: runs_over_limit={sum(1 for x in post_over if x)} "
        f"mean_overshoot={sum(post_over) / runs:.1f} max_overshoot={max(post_over)}"
    )
    print(f"ours: runs_over_limit={sum(1 for x in ours_over if x)} max_overshoot={max(ours_over)}")
    print(f"ours_overshoot={max(ours_over)} post_check_overshoot={max(post_over)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
