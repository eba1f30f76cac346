"""Drop-in budgeting for an existing multi-node LangGraph graph.

Needs: the core install (``pip install -e .``; ``[bench]`` covers it).

A support-desk graph (classify -> research (parallel) -> draft -> review loop) gets a
hard token cap with four changes marked ``# budget:``. Runs offline with a fake model
that bills like a real provider; swap in ``ChatOpenAI(...)`` for real use.

    python examples/existing_graph.py
"""

from __future__ import annotations

import operator
import sys
from typing import Annotated

try:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    from budget_graph import (
        Budget,
        BudgetState,
        RemainingTokens,
        budget_edge,
        budgeted,
        guard,
        with_budget,
    )
    from budget_graph.testing import BillingFakeChat
except ImportError as exc:
    sys.exit(f"existing_graph.py needs {exc.name}: pip install -e '.[bench]'")


class DeskState(BudgetState):  # budget: mix in the budget keys (spend, stop_reason...)
    ticket: str
    topics: list[str]
    notes: Annotated[list[str], operator.add]
    draft: str
    revisions: int
    remaining: RemainingTokens  # budget: the run's remaining tokens, like RemainingSteps


llm = budgeted(  # budget: wrap the model once; every call reserves, clamps and commits
    BillingFakeChat(
        answers={
            "List the topics": "billing, refunds, shipping",
            "Summarise our policy": "Refunds reach the original payment method within 5 days.",
            "Write a reply": "Dear customer, your refund for order 1234 was approved and is on "
            "its way; expect it within 5 business days.",
            "Review this reply": "Good; could be warmer.",
        }
    )
)


@guard  # budget: each guarded node adds its calls' spend to state
def classify(state: DeskState) -> dict:
    topics = llm.invoke(f"List the topics of this ticket: {state['ticket']}", max_tokens=20)
    return {"topics": [t.strip() for t in topics.text.split(",")], "revisions": 0}


@guard
def research(state: dict) -> dict:
    note = llm.invoke(f"Summarise our policy on {state['topic']}.", max_tokens=60)
    return {"notes": [note.text]}


@guard
def draft(state: DeskState) -> dict:
    prompt = f"Ticket: {state['ticket']}\nNotes: {' '.join(state['notes'])}\nWrite a reply."
    return {"draft": llm.invoke(prompt, max_tokens=120).text, "revisions": state["revisions"] + 1}


@guard
def review(state: DeskState) -> dict:
    verdict = llm.invoke(f"Review this reply: {state['draft']}", max_tokens=30)
    return {"notes": [f"review {state['revisions']}: {verdict.text}"]}


def send_reply(state: DeskState) -> dict:
    return {}


builder = StateGraph(DeskState)
for name, fn in [
    ("classify", classify),
    ("research", research),
    ("draft", draft),
    ("review", review),
    ("send_reply", send_reply),
]:
    builder.add_node(name, fn)
builder.add_edge(START, "classify")
builder.add_conditional_edges(
    "classify", lambda s: [Send("research", {"topic": t}) for t in s["topics"]], ["research"]
)
builder.add_edge("research", "draft")
builder.add_edge("draft", "review")
# budget: keep revising while another draft+review round fits, else send what we have.
builder.add_conditional_edges(
    "review",
    budget_edge(ok="draft", low="send_reply", min_remaining=400),
    ["draft", "send_reply"],
)
builder.add_edge("send_reply", END)

app = with_budget(builder.compile(), Budget(max_tokens=2_000))  # budget: a hard cap per run

if __name__ == "__main__":
    out = app.invoke({"ticket": "Where is my refund for order 1234?", "notes": []})
    spend = out["spend"]
    print(f"draft: {out['draft']}")
    print(f"revisions: {out['revisions']}, stop_reason: {out.get('stop_reason')}")
    print(
        f"spent {spend.units} of 2000 tokens in {spend.calls} calls "
        f"(input {spend.input_tokens}, output {spend.output_tokens})"
    )
    for node, usage in sorted(spend.by_node.items()):
        print(f"  {node:<10} {usage.total_tokens:>5} tokens in {usage.calls} calls")
    assert spend.units <= 2_000
