"""Overhead of budget accounting: the same multi-node graph with a fake chat model, bare
LangGraph vs budgeted, measured side by side (interleaved) in one run.
Last line: ``overhead_ratio=<median budgeted / median bare>`` (target <= 1.10)."""

from __future__ import annotations

import itertools
import operator
import statistics
import sys
import time
from typing import Annotated, Any

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from typing_extensions import TypedDict

from budget_graph import Budget, BudgetState, budgeted, guard, with_budget

PROMPT = (
    "You are a careful planner. Break the user's request into steps, then check each step "
    "against the constraints given below and answer concisely. " * 4
)
TEXT = "Step 1: read the question. Step 2: list the facts. Step 3: answer. " * 3


class Bare(TypedDict):
    question: str
    notes: Annotated[list[str], operator.add]


class Budgeted(Bare, BudgetState):
    pass


def build(model: Any, state: type, wrap: Any) -> Any:
    def plan(s: dict) -> dict:
        return {"notes": [model.invoke([HumanMessage(PROMPT + s["question"])]).text]}

    def research(s: dict) -> dict:
        return {"notes": [model.invoke([HumanMessage(PROMPT + str(s["k"]))]).text]}

    def answer(s: dict) -> dict:
        msgs = [HumanMessage(PROMPT), AIMessage(" ".join(s["notes"])[:500]), HumanMessage("answer")]
        return {"notes": [model.invoke(msgs).text]}

    b = StateGraph(state)
    b.add_node("plan", wrap(plan))
    b.add_node("research", wrap(research))
    b.add_node("answer", wrap(answer))
    b.add_edge(START, "plan")
    b.add_conditional_edges(
        "plan", lambda s: [Send("research", {"k": k}) for k in range(4)], ["research"]
    )
    b.add_edge("research", "answer")
    b.add_edge("answer", END)
    return b.compile()


def main(rounds: int = 15, runs_per_round: int = 20) -> None:
    # A fake that costs almost nothing, so the ratio shows our accounting, not the model.
    usage = {"input_tokens": 120, "output_tokens": 45, "total_tokens": 165}
    fake = GenericFakeChatModel(messages=itertools.repeat(AIMessage(TEXT, usage_metadata=usage)))
    bare = build(fake, Bare, lambda f: f)
    ours = with_budget(build(budgeted(fake), Budgeted, guard), Budget(max_tokens=10**9))
    inp = {"question": "Plan a three-day trip to Lisbon.", "notes": []}
    for app in (bare, ours):  # warm up
        app.invoke(inp)
    # Interleaved rounds; CPU time of the whole process (all threads) is the primary
    # measure: wall time on 2 shared cores carries scheduler noise of +-10%.
    wall: dict[str, list[float]] = {"bare": [], "ours": []}
    cpu: dict[str, list[float]] = {"bare": [], "ours": []}
    for _ in range(rounds):
        for name, app in (("bare", bare), ("ours", ours)):
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(runs_per_round):
                app.invoke(inp)
            wall[name].append((time.perf_counter() - w0) / runs_per_round)
            cpu[name].append((time.process_time() - c0) / runs_per_round)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    medw = {k: statistics.median(v) for k, v in wall.items()}
    print(
        f"bare LangGraph  cpu {med['bare'] * 1e3:.2f} ms/run   wall {medw['bare'] * 1e3:.2f} ms/run"
    )
    print(
        f"budgeted        cpu {med['ours'] * 1e3:.2f} ms/run   wall {medw['ours'] * 1e3:.2f} ms/run"
        "   (6 model calls per run)"
    )
    print(f"wall_ratio={medw['ours'] / medw['bare']:.3f}")
    print(f"overhead_ratio={med['ours'] / med['bare']:.3f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
