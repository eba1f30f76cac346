"""A tool-using ``create_agent`` agent under a hard token budget.

Needs: ``langchain`` (the ``[agents]`` extra; ``pip install -e '.[bench]'`` includes it).

A research agent (web search, a calculator, and a page summarizer that calls an LLM
itself) makes parallel tool calls, turn after turn. ``TokenBudgetMiddleware`` caps
what the run and the thread spend, tools' own LLM calls included:

1. ``exit_behavior="finalize"``: when the next call would not fit, the agent makes one
   last call without tools, paid from the ``reserve``, so the user still gets an answer.
2. ``exit_behavior="interrupt"``: the agent pauses and asks a human for more budget;
   resuming with ``Command(resume={"run_limit": ...})`` continues the run.

Runs offline on a scripted tool-calling model that reports usage like a provider
(prompt counted the OpenAI way, output truncated to ``max_tokens``); swap in
``ChatOpenAI(model=...)`` for real use.

    python examples/agent_token_budget.py
"""

from __future__ import annotations

import sys

try:
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.types import Command

    from budget_graph import CHECKPOINT_TYPES, budgeted
    from budget_graph.middleware import TokenBudgetMiddleware
    from budget_graph.testing import ScriptedToolModel, turn
except ImportError as exc:
    sys.exit(f"agent_token_budget.py needs {exc.name}: pip install -e '.[bench]' (or '.[agents]')")

# The LLM the summarizer tool calls. budgeted() without a meter uses the current one,
# which the middleware provides inside every tool call: its tokens count too.
page_llm = budgeted(
    ScriptedToolModel(steps=[], final_text="A short summary.", final_output_tokens=60)
)


@tool
def web_search(query: str) -> str:
    """Search the web and return the top results."""
    return f"Top results for {query!r}: population figures, 2023 census, city reports."


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    return str(eval(expression, {"__builtins__": {}}))  # noqa: S307 - example only


@tool
def summarize_page(url: str) -> str:
    """Fetch a page and summarize it with an LLM."""
    return str(page_llm.invoke(f"Summarize the page at {url}", max_tokens=80).content)


TOOLS = [web_search, calculator, summarize_page]


def saver() -> InMemorySaver:
    """A checkpointer whose serializer allows the budget types (no "unregistered type" warning)."""
    return InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES))


def research_model() -> ScriptedToolModel:
    """Turns of a research agent: parallel searches, summaries, arithmetic, then an answer."""
    return ScriptedToolModel(
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
            turn(("calculator", {"expression": "522250 + 873076"}), output_tokens=60),
            turn(
                ("web_search", {"query": "Toulouse population"}),
                ("summarize_page", {"url": "https://insee.fr/toulouse"}),
                ("calculator", {"expression": "1395326 + 504078"}),
                output_tokens=150,
            ),
            turn(output_tokens=200, text="Lyon, Marseille and Toulouse have about 1.9M people."),
        ],
        # what the model answers when it is asked to finish without tools
        final_text="Lyon and Marseille have about 1.4M people together; Toulouse was not checked.",
    )


def show(title: str, out: dict, model: ScriptedToolModel) -> None:
    print(f"\n== {title}")
    for msg in out["messages"]:
        if isinstance(msg, AIMessage) and msg.tool_calls:
            names = ", ".join(tc["name"] for tc in msg.tool_calls)
            print(f"  model -> {len(msg.tool_calls)} parallel tool call(s): {names}")
        elif isinstance(msg, ToolMessage) and msg.status == "error":
            print(f"  tool {msg.name}: refused: {msg.content[:90]}...")
        elif isinstance(msg, AIMessage):
            print(f"  answer: {msg.content}")
    caps = [c["max_tokens"] for c in model.calls]
    tools = ["tools" if c["tools"] else "no tools" for c in model.calls]
    print(f"  model calls: {len(caps)}, max_tokens sent: {caps}, {tools}")


def finalize_demo() -> None:
    model = research_model()
    budget = TokenBudgetMiddleware(
        run_limit=1_600,
        thread_limit=10_000,
        count="total",  # prompt + output tokens
        exit_behavior="finalize",
        reserve=300,  # held back for the final answer
        warn_at=0.8,  # tell the model when 80% is gone
        tool_costs={"web_search": 50},  # a paid search API, in tokens
    )
    agent = create_agent(model, tools=TOOLS, middleware=[budget], checkpointer=saver())
    cfg = {"configurable": {"thread_id": "finalize"}}
    out = agent.invoke(
        {"messages": [HumanMessage("Total population of Lyon, Marseille, Toulouse?")]}, cfg
    )
    show("finalize: answer from the reserve when the budget runs out", out, model)
    spent = agent.get_state(cfg).values["run_token_spend"]
    print(f"  spent {spent} of 1600 tokens (model + tools), never more")


def interrupt_demo() -> None:
    model = research_model()
    budget = TokenBudgetMiddleware(run_limit=300, count="output", exit_behavior="interrupt")
    agent = create_agent(model, tools=TOOLS, middleware=[budget], checkpointer=saver())
    cfg = {"configurable": {"thread_id": "interrupt"}}
    agent.invoke(
        {"messages": [HumanMessage("Total population of Lyon, Marseille, Toulouse?")]}, cfg
    )
    (ask,) = agent.get_state(cfg).interrupts
    print("\n== interrupt: a human approves more budget")
    print(f"  paused: {ask.value['message']}")
    out = agent.invoke(Command(resume={"run_limit": 2_000}), cfg)  # the human says yes
    show("resumed with run_limit=2000", out, model)
    print(f"  spent {agent.get_state(cfg).values['run_token_spend']} output tokens in total")


if __name__ == "__main__":
    finalize_demo()
    interrupt_demo()
