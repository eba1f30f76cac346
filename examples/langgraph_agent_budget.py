"""The same hard cap for an agent built directly with LangGraph (a ``ToolNode`` loop).

Needs: the core install (``pip install -e .``; ``[bench]`` covers it).

No middleware here: the core pieces do it. ``budgeted(model)`` reserves before each
call and clamps ``max_tokens``; ``guard`` records each node's spend in state and
turns a refused call into ``stop_reason="budget"``; ``budget_edge`` leaves the tool
loop when the next step cannot be paid for; ``with_budget`` gives every run a fresh
meter. A ``final`` node answers without tools from the budget's ``reserve``.

Runs offline on a scripted tool-calling model; swap in ``ChatOpenAI(model=...)``.

    python examples/langgraph_agent_budget.py
"""

from __future__ import annotations

import sys

try:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_core.tools import tool
    from langchain_core.utils.function_calling import convert_to_openai_tool
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    from budget_graph import (
        CHECKPOINT_TYPES,
        Budget,
        BudgetState,
        budget_edge,
        budgeted,
        count_messages,
        guard,
        with_budget,
    )
    from budget_graph.testing import ScriptedToolModel, turn
except ImportError as exc:
    sys.exit(f"langgraph_agent_budget.py needs {exc.name}: pip install -e '.[bench]'")

FINAL_NOTE = "The budget is nearly spent. Do not call tools; answer now from what you know."

page_llm = budgeted(
    ScriptedToolModel(steps=[], final_text="A short summary.", final_output_tokens=60)
)


@tool
def web_search(query: str) -> str:
    """Search the web and return the top results."""
    return f"Top results for {query!r}: population figures, 2023 census, city reports."


@tool
def summarize_page(url: str) -> str:
    """Fetch a page and summarize it with an LLM (charged to the run's meter)."""
    return str(page_llm.invoke(f"Summarize the page at {url}", max_tokens=80).content)


TOOLS = [web_search, summarize_page]

model = ScriptedToolModel(
    steps=[
        turn(
            ("web_search", {"query": "Lyon population"}),
            ("web_search", {"query": "Marseille population"}),
            output_tokens=90,
        ),
        turn(
            ("summarize_page", {"url": "https://insee.fr/lyon"}),
            ("summarize_page", {"url": "https://insee.fr/marseille"}),
            output_tokens=120,
        ),
        turn(("web_search", {"query": "Toulouse population"}), output_tokens=150),
        turn(output_tokens=200, text="About 1.9M people in the three cities."),
    ],
    final_text="Lyon and Marseille have about 1.4M people together; Toulouse was not checked.",
)
llm = budgeted(model)  # every call: reserve prompt + clamped max_tokens, commit real usage
final_llm = budgeted(model, final=True)  # may use the budget's reserve
tool_node = ToolNode(TOOLS)


class AgentState(MessagesState, BudgetState):
    """Messages plus the budget keys (spend, stop_reason...)."""


@guard
def agent(state: AgentState) -> dict:
    return {"messages": [llm.bind_tools(TOOLS).invoke(state["messages"])]}


@guard
def tools(state: AgentState) -> dict:
    return tool_node.invoke(state)  # LLM calls inside tools reserve on the same meter


@guard
def final(state: AgentState) -> dict:
    answer = final_llm.invoke([*state["messages"], SystemMessage(FINAL_NOTE)])
    return {"messages": [AIMessage(content=answer.content, usage_metadata=answer.usage_metadata)]}


def after_agent(state: AgentState) -> str:
    if state.get("stop_reason") == "budget":  # the agent's call was refused
        return "final"
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else END


builder = StateGraph(AgentState)
builder.add_node("agent", agent)
builder.add_node("tools", tools)
builder.add_node("final", final)
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", after_agent, ["tools", "final", END])


def next_step_cost(state: AgentState) -> int:
    """Expected cost of one more agent turn: its prompt plus a typical 200-token reply."""
    return count_messages(state["messages"], tools=[convert_to_openai_tool(t) for t in TOOLS]) + 200


# leave the loop when the next agent turn could not be paid for
builder.add_conditional_edges(
    "tools", budget_edge(ok="agent", low="final", min_remaining=next_step_cost)
)
builder.add_edge("final", END)

BUDGET = Budget(max_tokens=1_600, count="input+output", reserve=300)
# The checkpointer's serializer allows the budget types it stores (Budget, Spend, Usage):
# without the allowlist LangGraph warns "Deserializing unregistered type" on every load.
saver = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES))
app = with_budget(builder.compile(checkpointer=saver), BUDGET)


if __name__ == "__main__":
    cfg = {"configurable": {"thread_id": "lg"}}
    out = app.invoke(
        {"messages": [HumanMessage("Total population of Lyon, Marseille, Toulouse?")]}, cfg
    )
    for msg in out["messages"]:
        if isinstance(msg, AIMessage) and msg.tool_calls:
            print(f"model -> {', '.join(tc['name'] for tc in msg.tool_calls)}")
        elif isinstance(msg, AIMessage):
            print(f"answer: {msg.content}")
    spend = out["spend"]
    meter = app.last_meter
    print(
        f"stop_reason={out.get('stop_reason')} calls={spend.calls} "
        f"spent {spend.units} of {BUDGET.max_tokens} tokens (meter: {meter.spent})"
    )
    billed = sum(c["input"] + c["output"] for c in model.calls) + sum(
        c["input"] + c["output"] for c in page_llm.model.calls
    )
    overshoot = max(billed - BUDGET.limit, 0)
    print(f"billed by the fake provider: {billed} tokens; overshoot={overshoot}")
