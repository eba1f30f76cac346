"""Nested budgets: a supervisor graph under a request budget, with agents and a subgraph
that each have their own limit, random limits at every level, many runs, sync and async.

Levels per run (each with its own fake provider, so billing is counted per level):

- ``request``: the supervisor graph, ``with_budget(..., name="request")``; its own
  ``plan`` node makes a budgeted call;
- ``researcher``: a ``create_agent`` agent added *as a node*, capped by
  ``with_budget(agent, ..., name="researcher")``;
- ``writer``: a ``create_agent`` agent with ``TokenBudgetMiddleware(run_limit=...,
  scope="writer", tool_costs={"cite": C})`` (a tool with a fixed cost, which also calls
  a ``budgeted()`` model of its own), *called from inside* a guarded node with no config
  of its own (so the request's config, and its meter, reach the writer's tools);
- ``reviewer``: a budgeted subgraph (``with_budget(subgraph, ..., name="reviewer")``)
  added as a node; its ``approve`` step makes a call, then pauses in ``interrupt()``,
  and the run is resumed with ``Command(resume=...)`` (the request graph has a
  checkpointer): the step's call is billed before the pause and again after it.

A *violation* is a level whose billed units (its model tokens, plus declared tool costs
for the writer; everything for the request) exceed that level's limit. A *miscount* is
a level whose recorded spend differs from what was billed within it: the request's
state ``spend``, the researcher's output ``spend``, the reviewer's checkpointed state
``spend`` (across the interrupt), the writer's ``run_token_spend`` when its run ends.
Last line ``runs=<n> levels=<k> violations=<v> miscounts=<m>``.

    python benchmarks/nested.py --runs 200 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain.agents import AgentState, create_agent  # noqa: E402
from langchain.agents.middleware import AgentMiddleware  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer  # noqa: E402
from langgraph.graph import END, START, MessagesState, StateGraph  # noqa: E402
from langgraph.types import Command, interrupt  # noqa: E402

from budget_graph import (  # noqa: E402
    CHECKPOINT_TYPES,
    Budget,
    BudgetState,
    budgeted,
    guard,
    with_budget,
)
from budget_graph._internal import observe  # noqa: E402
from budget_graph.middleware import TokenBudgetMiddleware  # noqa: E402
from budget_graph.testing import BillingFakeChat, ScriptedToolModel, turn  # noqa: E402

TEXT = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron"
LEVELS = ("request", "researcher", "writer", "reviewer")
CITE_COST = 40
SERDE = JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)


class S(MessagesState, BudgetState):
    pass


class AS(AgentState, BudgetState):  # type: ignore[misc]
    pass


class ChildStates:
    """Observer: the final state each named nested run handed back."""

    def __init__(self) -> None:
        self.states: dict[str, Any] = {}

    def run_finished(self, run: Any) -> None:
        if run.name in ("researcher", "reviewer") and isinstance(run.state, dict):
            self.states[run.name] = run.state


class RunSpend(AgentMiddleware):  # type: ignore[type-arg]
    """Reads the writer's ``run_token_spend`` from its state when its run ends."""

    def __init__(self) -> None:
        super().__init__()
        self.units = 0

    def after_agent(self, state: Any, runtime: Any) -> None:
        self.units = int(state.get("run_token_spend") or 0)

    async def aafter_agent(self, state: Any, runtime: Any) -> None:
        self.after_agent(state, runtime)


def _checkpointed_units(app: Any, child: Any, thread_id: str, name: str) -> int:
    """The spend in a nested graph's own state: its newest checkpoint in the parent's
    checkpointer (namespace ``"<name>:<task id>"``), writes pending there applied."""
    saver = app.graph.checkpointer
    for item in saver.list({"configurable": {"thread_id": thread_id}}):
        ns = item.config["configurable"]["checkpoint_ns"]
        if ns.startswith(f"{name}:"):
            conf = {"thread_id": thread_id, "checkpoint_ns": ns, "__pregel_checkpointer": saver}
            return _units(child.graph.get_state({"configurable": conf}).values)
    return 0


@tool
def lookup(q: str) -> str:
    """Look something up."""
    return f"facts about {q}"


def _fake_models(rng: random.Random) -> dict[str, Any]:
    steps = rng.randint(2, 5)
    return {
        "request": BillingFakeChat(texts=[TEXT]),
        "researcher": ScriptedToolModel(
            steps=[turn(("lookup", {"q": "x"}), output_tokens=rng.randint(10, 40))] * steps
        ),
        "writer": ScriptedToolModel(
            steps=[turn(("cite", {"source": "s"}), output_tokens=rng.randint(10, 40))] * steps
        ),
        "reviewer": BillingFakeChat(texts=[TEXT]),
        "cite_llm": BillingFakeChat(texts=[TEXT]),
    }


def _build(
    models: dict[str, Any], limits: dict[str, int], cites: list[int], spend_seen: Any
) -> Any:
    cite_llm = budgeted(models["cite_llm"])

    @tool
    def cite(source: str) -> str:
        """Cite a source (a paid lookup: a fixed cost per call), summarised by an LLM."""
        cites.append(1)
        return cite_llm.invoke(f"summarise {source}: {TEXT}", max_tokens=40).text

    researcher = with_budget(
        create_agent(budgeted(models["researcher"]), [lookup], state_schema=AS),
        Budget(max_tokens=limits["researcher"]),
        name="researcher",
    )
    writer = create_agent(
        models["writer"],
        [cite],
        middleware=[
            TokenBudgetMiddleware(
                run_limit=limits["writer"],
                count="total",
                scope="writer",
                tool_costs={"cite": CITE_COST},
            ),
            spend_seen,
        ],
    )
    review_llm = budgeted(models["reviewer"])
    sub = StateGraph(S)
    for i in range(3):
        sub.add_node(
            f"r{i}",
            guard(
                lambda s, _i=i: {
                    "messages": [review_llm.invoke(f"review {_i}: {TEXT}", max_tokens=30)]
                },
                name=f"r{i}",
            ),
        )

    def approve(state: dict) -> dict:
        review_llm.invoke(f"approve: {TEXT}", max_tokens=30)  # billed again on resume
        return {"messages": [HumanMessage(str(interrupt("approve the draft?")))]}

    sub.add_node("approve", guard(approve, name="approve"))
    sub.add_edge(START, "r0")
    sub.add_edge("r0", "approve")
    sub.add_edge("approve", "r1")
    sub.add_edge("r1", "r2")
    reviewer = with_budget(sub.compile(), Budget(max_tokens=limits["reviewer"]), name="reviewer")
    plan_llm = budgeted(models["request"])

    @guard
    def plan(state: dict) -> dict:
        return {"messages": [plan_llm.invoke(f"plan: {TEXT}", max_tokens=30)]}

    @guard
    def write(state: dict) -> dict:
        # No config of its own: the run's config (and its meter) reaches the writer's
        # tools, where the writer's own limit must still hold their LLM calls.
        out = writer.invoke({"messages": [HumanMessage("write it")]})
        return {"messages": out["messages"][-1:]}

    b = StateGraph(S)
    b.add_node("plan", plan)
    b.add_node("researcher", researcher)
    b.add_node("write", write)
    b.add_node("reviewer", reviewer)
    b.add_edge(START, "plan")
    b.add_edge("plan", "researcher")
    b.add_edge("researcher", "write")
    b.add_edge("write", "reviewer")
    b.add_edge("reviewer", END)
    graph = b.compile(checkpointer=InMemorySaver(serde=SERDE))
    app = with_budget(graph, Budget(max_tokens=limits["request"]), name="request")
    return app, reviewer


def _billed(model: Any) -> int:
    return model.billed_total if isinstance(model, ScriptedToolModel) else sum(model.billed)


def _limits(rng: random.Random) -> dict[str, int]:
    return {
        "request": rng.randint(150, 1_800),
        "researcher": rng.randint(60, 700),
        "writer": rng.randint(60, 700),
        "reviewer": rng.randint(40, 300),
    }


async def _one(rng: random.Random, run_id: int, use_async: bool) -> tuple[int, int, Counter]:
    models, limits, cites = _fake_models(rng), _limits(rng), []
    writer_spend = RunSpend()
    app, reviewer = _build(models, limits, cites, writer_spend)
    children = ChildStates()
    observe.add_observer(children)
    why: Counter = Counter()
    config = {"configurable": {"thread_id": f"request-{run_id}"}}
    try:
        payload: Any = {"messages": [HumanMessage("research, write and review")]}
        while True:
            out = await app.ainvoke(payload, config) if use_async else app.invoke(payload, config)
            if "__interrupt__" not in out:
                break
            why["resumed_after_interrupt"] += 1
            payload = Command(resume="approved")
    finally:
        observe.remove_observer(children)
    billed = {name: _billed(m) for name, m in models.items()}
    billed["writer"] += CITE_COST * len(cites) + billed.pop("cite_llm")
    billed["request"] = sum(billed.values())
    recorded = {
        "request": out["spend"].units,
        "researcher": _units(children.states.get("researcher")),
        "writer": writer_spend.units,
        "reviewer": _checkpointed_units(app, reviewer, f"request-{run_id}", "reviewer"),
    }
    violations = miscounts = 0
    for level in LEVELS:
        if billed[level] >= 0.7 * limits[level]:
            why[f"near_cap(>=70%):{level}"] += 1
        if billed[level] > limits[level]:
            violations += 1
            why[f"violation:{level}"] += 1
        if recorded[level] != billed[level]:
            miscounts += 1
            why[f"miscount:{level}"] += 1
    return violations, miscounts, why


def _units(state: Any) -> int:
    spend = (state or {}).get("spend")
    return spend.units if spend is not None else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    rng = random.Random(args.seed)
    started = time.perf_counter()
    totals = Counter()
    why: Counter = Counter()
    for run_id in range(args.runs):
        use_async = run_id % 2 == 1
        v, m, w = asyncio.run(_one(rng, run_id, use_async))
        totals["violations"] += v
        totals["miscounts"] += m
        totals["async" if use_async else "sync"] += 1
        why.update(w)
    elapsed = time.perf_counter() - started
    for reason, count in sorted(why.items()):
        print(f"  {reason:<24} {count}")
    print(f"sync_runs={totals['sync']} async_runs={totals['async']} elapsed_s={elapsed:.1f}")
    print(
        f"runs={args.runs} levels={len(LEVELS)} violations={totals['violations']} "
        f"miscounts={totals['miscounts']}"
    )


if __name__ == "__main__":
    main()
