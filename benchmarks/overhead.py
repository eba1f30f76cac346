"""Overhead of budget accounting: the same multi-node graph with a fake chat model, bare
LangGraph vs budgeted, measured side by side in one run
(single runs alternating ABBA, per-run CPU time of the process, medians).
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


def measure(apps: dict[str, Any], inp: dict, pairs: int) -> dict[str, dict[str, list[float]]]:
    """Per-run CPU and wall seconds of each app, runs alternating one by one (ABBA...).

    The host's CPU speed drifts by tens of percent over seconds; alternating single runs
    gives both variants the same machine, so the ratio of medians stays stable.
    """
    out: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": [], "calls": []} for k in apps}
    items = list(apps.items())
    for i in range(pairs):
        for name, app in items if i % 2 == 0 else reversed(items):
            w0, c0 = time.perf_counter(), time.process_time()
            state = app.invoke(inp)
            # CPU time of the whole process (all threads): Send branches run in a pool.
            out[name]["cpu"].append(time.process_time() - c0)
            out[name]["wall"].append(time.perf_counter() - w0)
            out[name]["calls"].append(state["spend"].calls if "spend" in state else 6)
    return out


def main(pairs: int = 1500) -> None:
    # A fake that costs almost nothing, so the ratio shows our accounting, not the model.
    usage = {"input_tokens": 120, "output_tokens": 45, "total_tokens": 165}
    fake = GenericFakeChatModel(messages=itertools.repeat(AIMessage(TEXT, usage_metadata=usage)))
    bare = build(fake, Bare, lambda f: f)
    # A per-call cap as real calls have: without one, each call reserves all that is left,
    # and a parallel branch reserving at the same moment would be refused.
    budget = Budget(max_tokens=10**9, per_call_max_tokens=1_024)
    ours = with_budget(build(budgeted(fake), Budgeted, guard), budget)
    inp = {"question": "Plan a three-day trip to Lisbon.", "notes": []}
    measure({"bare": bare, "ours": ours}, inp, 50)  # warm up (tokenizer load, caches)
    res = measure({"bare": bare, "ours": ours}, inp, pairs)
    short = sum(1 for c in res["ours"].pop("calls") if c != 6)
    res["bare"].pop("calls")
    if short:  # a refused call would make a budgeted run cheaper than the bare one
        raise SystemExit(f"{short} budgeted runs made fewer than 6 calls; ratio not comparable")
    med = {k: {m: statistics.median(v[m]) for m in v} for k, v in res.items()}
    for name, label in (("bare", "bare LangGraph"), ("ours", "budgeted")):
        print(
            f"{label:15s} cpu {med[name]['cpu'] * 1e3:.2f} ms/run   "
            f"wall {med[name]['wall'] * 1e3:.2f} ms/run   (6 model calls, {pairs} runs)"
        )
    extra = (med["ours"]["cpu"] - med["bare"]["cpu"]) / 6
    print(f"accounting cpu per call: {extra * 1e6:.0f} us")
    print(f"wall_ratio={med['ours']['wall'] / med['bare']['wall']:.3f}")
    print(f"overhead_ratio={med['ours']['cpu'] / med['bare']['cpu']:.3f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
