"""Overhead of budget accounting: the same multi-node graph with a fake chat model, bare
LangGraph, inside LangChain's ``get_usage_metadata_callback()`` (its standard way to count
usage: no cap, nothing in state), and budgeted (hard cap, spend in state, guard), measured
side by side in one run (single runs alternating in rotating order, per-run CPU time of
the process, medians).
Last line: ``overhead_ratio=<budgeted / bare> vs_lc_usage_callback=<budgeted / lc>``
(target: vs_lc_usage_callback <= 1.05)."""

from __future__ import annotations

import itertools
import operator
import statistics
import sys
import threading
import time
from typing import Annotated, Any

from langchain_core.callbacks import get_usage_metadata_callback
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


class WithUsageCallback:
    """The bare graph run inside LangChain's usage callback (counts usage per model)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.usage: dict[str, Any] = {}

    def invoke(self, inp: dict) -> Any:
        with get_usage_metadata_callback() as cb:
            state = self.app.invoke(inp)
        self.usage = cb.usage_metadata
        return state


def measure(apps: dict[str, Any], inp: dict, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per-run CPU and wall seconds of each app, runs alternating one by one.

    The host's CPU speed drifts by tens of percent over seconds; alternating single runs
    (in an order that rotates each round, so no variant always follows another) gives
    every variant the same machine, so the ratio of medians stays stable.
    """
    out: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": [], "calls": []} for k in apps}
    items = list(apps.items())
    for i in range(rounds):
        k = i % len(items)
        order = items[k:] + items[:k]
        for name, app in order if i % 2 == 0 else reversed(order):
            w0, c0 = time.perf_counter(), time.process_time()
            state = app.invoke(inp)
            # CPU time of the whole process (all threads): Send branches run in a pool.
            out[name]["cpu"].append(time.process_time() - c0)
            out[name]["wall"].append(time.perf_counter() - w0)
            out[name]["calls"].append(state["spend"].calls if "spend" in state else 6)
    return out


def python_calls(apps: dict[str, Any], inp: dict, runs: int = 20) -> dict[str, float]:
    """Python function calls per run of each app, in every thread (a count, not a time).

    Unlike CPU time it does not move with the host's load, so it shows where the work is
    when the timings are noisy.
    """
    counts: dict[str, float] = {}
    seen = [0]

    def count(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            seen[0] += 1

    for name, app in apps.items():
        seen[0] = 0
        threading.setprofile(count)
        sys.setprofile(count)
        try:
            for _ in range(runs):
                app.invoke(inp)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
        counts[name] = seen[0] / runs
    return counts


def main(rounds: int = 1500) -> None:
    # A fake that costs almost nothing, so the ratio shows our accounting, not the model.
    usage = {"input_tokens": 120, "output_tokens": 45, "total_tokens": 165}
    # LangChain's usage callback keys usage by the model name the response reports.
    reply = AIMessage(TEXT, usage_metadata=usage, response_metadata={"model_name": "fake"})
    fake = GenericFakeChatModel(messages=itertools.repeat(reply))
    bare = build(fake, Bare, lambda f: f)
    lc = WithUsageCallback(build(fake, Bare, lambda f: f))
    # A per-call cap as real calls have: without one, each call reserves all that is left,
    # and a parallel branch reserving at the same moment would be refused.
    budget = Budget(max_tokens=10**9, per_call_max_tokens=1_024)
    ours = with_budget(build(budgeted(fake), Budgeted, guard), budget)
    inp = {"question": "Plan a three-day trip to Lisbon.", "notes": []}
    apps = {"bare": bare, "lc": lc, "ours": ours}
    measure(apps, inp, 50)  # warm up (tokenizer load, caches)
    res = measure(apps, inp, rounds)
    short = sum(1 for c in res["ours"].pop("calls") if c != 6)
    res["bare"].pop("calls")
    res["lc"].pop("calls")
    counted = sum(u.get("total_tokens", 0) for u in lc.usage.values())
    if counted != 6 * usage["total_tokens"]:  # the callback must have seen every call
        raise SystemExit(f"the usage callback counted {counted} tokens, not 6 calls' worth")
    if short:  # a refused call would make a budgeted run cheaper than the bare one
        raise SystemExit(f"{short} budgeted runs made fewer than 6 calls; ratio not comparable")
    med = {k: {m: statistics.median(v[m]) for m in v} for k, v in res.items()}
    labels = (("bare", "bare LangGraph"), ("lc", "LC usage callback"), ("ours", "budgeted"))
    for name, label in labels:
        print(
            f"{label:17s} cpu {med[name]['cpu'] * 1e3:.2f} ms/run   "
            f"wall {med[name]['wall'] * 1e3:.2f} ms/run   (6 model calls, {rounds} runs)"
        )
    calls = python_calls(apps, inp)
    short = (("bare", "bare"), ("lc", "lc"), ("ours", "budgeted"))
    print(
        "python calls/run (all threads): "
        + "  ".join(f"{name}={calls[key]:.0f}" for key, name in short)
        + f"  budgeted/lc={calls['ours'] / calls['lc']:.3f}"
    )
    extra = (med["ours"]["cpu"] - med["bare"]["cpu"]) / 6
    print(f"accounting cpu per call: {extra * 1e6:.0f} us")
    print(f"lc_usage_callback_ratio={med['lc']['cpu'] / med['bare']['cpu']:.3f}")
    print(f"wall_ratio={med['ours']['wall'] / med['bare']['wall']:.3f}")
    print(
        f"overhead_ratio={med['ours']['cpu'] / med['bare']['cpu']:.3f} "
        f"vs_lc_usage_callback={med['ours']['cpu'] / med['lc']['cpu']:.3f}"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
