"""A bad answer to the budget interrupt gets a clear error and leaves the thread resumable.

Regression test for issue #19 observation 8: one bad resume value (a string limit, as a
web form sends it) made an interrupted thread unrecoverable, every later resume
re-raising the first error.
"""

from __future__ import annotations

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from budget_graph.middleware import TokenBudgetMiddleware
from budget_graph.testing import ScriptedToolModel, turn

CFG = {"configurable": {"thread_id": "bad-resume"}}


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


def test_a_bad_resume_value_asks_again_and_a_good_one_resumes():
    model = ScriptedToolModel(steps=[turn(("search", {"query": "q"}), output_tokens=40)] * 3)
    mw = TokenBudgetMiddleware(run_limit=90, exit_behavior="interrupt")
    agent = create_agent(model, tools=[search], middleware=[mw], checkpointer=InMemorySaver())
    agent.invoke({"messages": [HumanMessage("go")]}, CFG)
    (first,) = agent.get_state(CFG).interrupts
    assert first.value["type"] == "token_budget" and "error" not in first.value

    for bad, words in (({"run_limit": "5000"}, "run_limit must be a positive int (got '5000')"),
                       ("more please", "Resume the token budget interrupt with a dict")):
        agent.invoke(Command(resume=bad), CFG)
        (again,) = agent.get_state(CFG).interrupts  # asked again, with what was wrong
        assert words in again.value["error"]
        assert again.value["limit"] == 90

    out = agent.invoke(Command(resume={"run_limit": 5000}), CFG)
    assert agent.get_state(CFG).interrupts == ()
    assert out["messages"][-1].content == "Final answer."
    assert agent.get_state(CFG).values["run_token_spend"] == model.billed_output <= 5000
