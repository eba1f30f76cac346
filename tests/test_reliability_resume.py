"""Resume after an exception, a KeyboardInterrupt and a human ``interrupt()``: exact spend.

Each graph streams budgeted ChatOpenAI calls to the replay server; after the resume the
thread's spend must equal what the server billed and stay under the budget.
"""

from __future__ import annotations

import operator
import sqlite3
import warnings
from typing import Annotated, Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from budget_graph import Budget, BudgetState, budgeted, guard, with_budget
from tests.reliability_helpers import PROMPTS, billed_requests, billed_tokens, openai_chat

pytestmark = [pytest.mark.integration, pytest.mark.faults]


class StepState(BudgetState):
    steps: Annotated[list[str], operator.add]


def _graph(server: Any, tmp_path: Any, nodes: dict[str, Any]) -> Any:
    builder = StateGraph(StepState)
    prev = START
    for name, fn in nodes.items():
        builder.add_node(name, fn)
        builder.add_edge(prev, name)
        prev = name
    builder.add_edge(prev, END)
    conn = sqlite3.connect(tmp_path / "ckpt.sqlite", check_same_thread=False)
    return builder.compile(checkpointer=SqliteSaver(conn))


def _ask(llm: Any, i: int) -> str:
    return "".join(str(c.content) for c in llm.stream(PROMPTS[i], max_tokens=100))


def _assert_exact(out: dict, server: Any, limit: int) -> None:
    assert out["spend"].total_tokens == billed_tokens(server)
    assert out["spend"].calls == billed_requests(server)
    assert out["spend"].units <= limit


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_between_calls_resumes_exact(error, replay_server_clean, tmp_path) -> None:
    llm = budgeted(openai_chat(replay_server_clean))
    fail = {"b": True}

    def step(name: str, i: int) -> Any:
        @guard(name=name)
        def run(state: dict) -> dict:
            if fail.get(name):
                fail[name] = False
                raise error(f"stop before {name}")
            return {"steps": [f"{name}:{len(_ask(llm, i))}"]}

        return run

    limit = 1_300  # room for two of the three calls
    graph = _graph(replay_server_clean, tmp_path, {n: step(n, i) for i, n in enumerate("abc")})
    app = with_budget(graph, Budget(max_tokens=limit))
    cfg = {"configurable": {"thread_id": "t"}}
    with pytest.raises(error):
        app.invoke({"steps": []}, cfg)
    assert app.get_state(cfg).values["spend"].calls == 1
    out = app.invoke(None, cfg)
    _assert_exact(out, replay_server_clean, limit)
    assert out["spend"].calls == 2 and out["stop_reason"] == "budget"
    assert app.last_meter.spent == out["spend"].units  # the resumed meter saw call 1


def test_human_interrupt_resume_exact(replay_server_clean, tmp_path) -> None:
    """The documented pattern: the LLM call in one node, the human approval in the next."""
    llm = budgeted(openai_chat(replay_server_clean))

    @guard(name="draft")
    def draft(state: dict) -> dict:
        return {"steps": [f"draft:{len(_ask(llm, 0))}"]}

    def approve(state: dict) -> dict:
        return {"steps": [f"approved:{interrupt('ok?')}"]}

    @guard(name="final")
    def final(state: dict) -> dict:
        return {"steps": [f"final:{len(_ask(llm, 1))}"]}

    graph = _graph(replay_server_clean, tmp_path,
                   {"draft": draft, "approve": approve, "final": final})
    app = with_budget(graph, Budget(max_tokens=5_000))
    cfg = {"configurable": {"thread_id": "h"}}
    paused = app.invoke({"steps": []}, cfg)
    assert "__interrupt__" in paused and paused["spend"].calls == 1
    out = app.invoke(Command(resume="yes"), cfg)
    assert [s.split(":")[0] for s in out["steps"]] == ["draft", "approved", "final"]
    _assert_exact(out, replay_server_clean, 5_000)
    assert out["spend"].calls == 2


@pytest.mark.parametrize("how", ["exception", "interrupt"])
def test_call_then_failure_in_the_same_node_is_not_lost(how, replay_server_clean,
                                                        tmp_path) -> None:
    llm = budgeted(openai_chat(replay_server_clean))
    first = {"run": True}

    @guard(name="n")
    def node(state: dict) -> dict:
        text = _ask(llm, 0)
        if how == "interrupt":
            return {"steps": [f"{len(text)}:{interrupt('ok?')}"]}
        if first["run"]:
            first["run"] = False
            raise RuntimeError("after the call")
        return {"steps": [str(len(text))]}

    app = with_budget(_graph(replay_server_clean, tmp_path, {"n": node}),
                      Budget(max_tokens=5_000))
    cfg = {"configurable": {"thread_id": how}}
    if how == "interrupt":
        app.invoke({"steps": []}, cfg)
        out = app.invoke(Command(resume="yes"), cfg)
    else:
        with pytest.raises(RuntimeError):
            app.invoke({"steps": []}, cfg)
        out = app.invoke(None, cfg)
    assert billed_requests(replay_server_clean) == 2  # the node ran (and was billed) twice
    _assert_exact(out, replay_server_clean, 5_000)
