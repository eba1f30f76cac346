"""TokenBudgetMiddleware: hooks called directly, then end-to-end create_agent runs."""

import pickle
import re
from pathlib import Path

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware.types import (
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    ToolCallRequest,
)
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.runtime import Runtime
from langgraph.types import Command

from budget_graph import budgeted
from budget_graph.errors import BudgetExceededError
from budget_graph.middleware import (
    FINAL_NOTE,
    TokenBudgetExceededError,
    TokenBudgetMiddleware,
    TokenBudgetState,
    build_budget_message,
)
from tests.fixtures.fakes import ScriptedToolModel, turn

CFG = {"configurable": {"thread_id": "t1"}}
ROOT = Path(__file__).resolve().parents[1]


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


@tool
def calc(expr: str) -> str:
    """Evaluate an arithmetic expression."""
    return "42"


# The LLM a tool calls itself; budgeted() finds the agent's meter inside the tool.
TOOL_LLM = ScriptedToolModel(steps=[], final_output_tokens=25)


@tool
def summarize(url: str) -> str:
    """Summarize a page with an LLM."""
    return str(budgeted(TOOL_LLM).invoke(f"summarize {url}").content)


def call_model(request: ModelRequest) -> ModelResponse:
    """What create_agent's model node does, minus structured output."""
    model = request.model.bind_tools(request.tools) if request.tools else request.model
    system = [request.system_message] if request.system_message else []
    return ModelResponse(result=[model.invoke([*system, *request.messages])])


async def acall_model(request: ModelRequest) -> ModelResponse:
    model = request.model.bind_tools(request.tools) if request.tools else request.model
    system = [request.system_message] if request.system_message else []
    return ModelResponse(result=[await model.ainvoke([*system, *request.messages])])


def request_for(model, state, tools=(search,), system=None) -> ModelRequest:
    return ModelRequest(
        model=model,
        messages=state["messages"],
        system_message=system,
        tools=list(tools),
        state=state,
        runtime=Runtime(),
    )


# --- construction ---------------------------------------------------------------------


def test_initialization_validation():
    with pytest.raises(
        ValueError,
        match=re.escape("At least one limit must be specified (run_limit or thread_limit)"),
    ):
        TokenBudgetMiddleware()
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Invalid exit_behavior: stop. Must be 'end', 'error', 'finalize' or 'interrupt'"
        ),
    ):
        TokenBudgetMiddleware(run_limit=10, exit_behavior="stop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("run_limit must be a positive int (got -5)")):
        TokenBudgetMiddleware(run_limit=-5)
    with pytest.raises(
        ValueError, match=re.escape("warn_at must be a fraction in (0, 1) (got 1.5)")
    ):
        TokenBudgetMiddleware(run_limit=10, warn_at=1.5)
    with pytest.raises(
        ValueError, match=re.escape("reserve must be smaller than every limit (10) (got 10)")
    ):
        TokenBudgetMiddleware(run_limit=100, thread_limit=10, reserve=10)
    with pytest.raises(
        ValueError, match=re.escape("tool_costs['search'] must be an int >= 0 (got -1)")
    ):
        TokenBudgetMiddleware(run_limit=10, tool_costs={"search": -1})
    with pytest.raises(
        ValueError, match=re.escape("count='cost' needs prices for at least one model (got {})")
    ):
        TokenBudgetMiddleware(count="cost", run_limit_usd=0.5)
    mw = TokenBudgetMiddleware(run_limit=1000, exit_behavior="finalize")
    assert (mw.run_limit, mw.thread_limit, mw.reserve, mw.count) == (1000, None, 100, "output")
    cost = TokenBudgetMiddleware(
        count="cost",
        run_limit_usd=0.5,
        prices={"gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10}},
    )
    assert cost.run_limit == 500_000 and cost.unit == "micro-USD"


def test_message_and_error_carry_the_numbers():
    msg = build_budget_message(scope="thread", limit=1000, spent=950, requested=120, reserved=10)
    assert msg == (
        "Token budget: the next model call would exceed the thread limit of 1000 tokens "
        "(thread_spent=950, reserved=10, requested=120, remaining=40)"
    )
    err = TokenBudgetExceededError(
        scope="thread",
        limit=1000,
        spent=950,
        requested=120,
        reserved=10,
        run_spent=300,
        thread_spent=950,
    )
    assert str(err) == msg and isinstance(err, BudgetExceededError)
    assert (err.limit, err.spent, err.requested, err.scope, err.run_spent) == (
        1000,
        950,
        120,
        "thread",
        300,
    )
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == msg and again.thread_spent == 950


# --- hooks called directly -------------------------------------------------------------


def test_before_agent_resets_the_run_but_not_the_thread():
    mw = TokenBudgetMiddleware(run_limit=100, thread_limit=1000)
    state = TokenBudgetState(
        messages=[], run_token_spend=80, thread_token_spend=500, token_budget_run_limit=300
    )
    assert mw.before_agent(state, Runtime()) == {
        "run_token_spend": -80,
        "token_budget_run_limit": None,
    }
    assert mw.before_agent(TokenBudgetState(messages=[], thread_token_spend=5), Runtime()) is None


def test_before_model_ends_or_raises_when_a_limit_is_spent():
    runtime = Runtime()
    mw = TokenBudgetMiddleware(run_limit=100, thread_limit=1000)
    assert mw.before_model(TokenBudgetState(messages=[], run_token_spend=99), runtime) is None
    result = mw.before_model(
        TokenBudgetState(messages=[], run_token_spend=100, thread_token_spend=100), runtime
    )
    assert result is not None and result["jump_to"] == "end"
    assert result["messages"][0].content == (
        "Token budget exhausted: the run limit of 100 tokens is spent (run_spent=100, remaining=0)"
    )
    result = mw.before_model(
        TokenBudgetState(messages=[], run_token_spend=0, thread_token_spend=1000), runtime
    )
    assert "the thread limit of 1000 tokens is spent" in result["messages"][0].content

    raising = TokenBudgetMiddleware(run_limit=100, exit_behavior="error")
    with pytest.raises(
        TokenBudgetExceededError,
        match=re.escape("the run limit of 100 tokens is spent (run_spent=120"),
    ):
        raising.before_model(TokenBudgetState(messages=[], run_token_spend=120), runtime)
    # finalize and interrupt decide in wrap_model_call, where the prompt is known
    assert (
        TokenBudgetMiddleware(run_limit=100, exit_behavior="finalize").before_model(
            TokenBudgetState(messages=[], run_token_spend=100), runtime
        )
        is None
    )


def test_wrap_model_call_clamps_max_tokens_and_records_the_real_spend():
    mw = TokenBudgetMiddleware(run_limit=100, thread_limit=1000)
    model = ScriptedToolModel(steps=[turn(("search", {"query": "x"}), output_tokens=30)])
    state = TokenBudgetState(
        messages=[HumanMessage("hi")], run_token_spend=40, thread_token_spend=400
    )
    result = mw.wrap_model_call(request_for(model, state), call_model)
    assert isinstance(result, ExtendedModelResponse)
    assert model.calls[0]["max_tokens"] == 60  # 100 - 40 left for the run
    assert result.command.update == {"run_token_spend": 30, "thread_token_spend": 30}
    assert result.model_response.result[0].tool_calls[0]["name"] == "search"


def test_wrap_model_call_refuses_before_sending_and_ends_with_the_numbers():
    mw = TokenBudgetMiddleware(run_limit=100, count="total", min_output_tokens=1)
    model = ScriptedToolModel(steps=[turn(output_tokens=5)])
    state = TokenBudgetState(messages=[HumanMessage("hi " * 200)], run_token_spend=10)
    result = mw.wrap_model_call(request_for(model, state), call_model)
    assert model.calls == []  # nothing was sent
    (msg,) = result.result
    assert re.fullmatch(
        r"Token budget: the next model call would exceed the run limit of 100 tokens "
        r"\(run_spent=10, reserved=0, requested=\d+, remaining=90\)",
        msg.content,
    )
    assert msg.tool_calls == [] and msg.response_metadata["stop_reason"] == "budget"


def test_wrap_model_call_error_behaviour_raises():
    mw = TokenBudgetMiddleware(run_limit=100, exit_behavior="error")
    model = ScriptedToolModel(steps=[turn(output_tokens=5)])
    state = TokenBudgetState(
        messages=[HumanMessage("hi")], run_token_spend=90, thread_token_spend=90
    )
    with pytest.raises(TokenBudgetExceededError) as info:
        mw.wrap_model_call(request_for(model, state), call_model)
    assert str(info.value) == (
        "Token budget: the next model call would exceed the run limit of 100 tokens "
        "(run_spent=90, reserved=0, requested=16, remaining=10)"
    )
    assert info.value.run_spent == 90 and model.calls == []


def test_min_output_tokens_one_clamps_to_the_last_token():
    mw = TokenBudgetMiddleware(run_limit=100, min_output_tokens=1)
    model = ScriptedToolModel(steps=[turn(output_tokens=50)])
    state = TokenBudgetState(messages=[HumanMessage("hi")], run_token_spend=97)
    result = mw.wrap_model_call(request_for(model, state), call_model)
    assert model.calls[0]["max_tokens"] == 3
    assert result.command.update["run_token_spend"] == 3


def test_finalize_unbinds_tools_uses_the_reserve_and_strips_tool_calls():
    mw = TokenBudgetMiddleware(run_limit=200, exit_behavior="finalize", reserve=50)
    # the scripted model would call a tool even without tools bound: the answer is cleaned
    model = ScriptedToolModel(
        steps=[turn(("search", {"query": "x"}), output_tokens=20, text="Paris.")],
        calls_tools_unbound=True,
    )
    state = TokenBudgetState(messages=[HumanMessage("capital of France?")], run_token_spend=145)
    seen = []

    def handler(request):
        seen.append(request)
        return call_model(request)

    result = mw.wrap_model_call(
        request_for(model, state, system=SystemMessage("Be brief.")), handler
    )
    assert len(model.calls) == 1 and model.calls[0]["tools"] == []
    assert model.calls[0]["max_tokens"] == 55  # the reserve plus the 5 ordinary tokens left
    assert seen[-1].system_message.content == f"Be brief.\n\n{FINAL_NOTE}"
    (final,) = result.model_response.result
    assert isinstance(final, AIMessage) and final.tool_calls == [] and final.content == "Paris."
    assert result.command.update == {"run_token_spend": 20, "thread_token_spend": 20}


def test_warn_at_adds_a_system_note_with_what_remains():
    mw = TokenBudgetMiddleware(run_limit=1000, warn_at=0.8)
    seen = []

    def handler(request):
        seen.append(request.system_message)
        return call_model(request)

    model = ScriptedToolModel(steps=[turn(output_tokens=5)] * 2)
    mw.wrap_model_call(
        request_for(model, TokenBudgetState(messages=[HumanMessage("a")], run_token_spend=700)),
        handler,
    )
    mw.wrap_model_call(
        request_for(model, TokenBudgetState(messages=[HumanMessage("a")], run_token_spend=850)),
        handler,
    )
    assert seen[0] is None
    assert seen[1].content.startswith(
        "Token budget: 150 of 1000 tokens remain for this run (850 spent)."
    )


async def test_awrap_model_call_matches_sync():
    mw = TokenBudgetMiddleware(run_limit=100)
    model = ScriptedToolModel(steps=[turn(output_tokens=30)])
    state = TokenBudgetState(messages=[HumanMessage("hi")], run_token_spend=40)
    result = await mw.awrap_model_call(request_for(model, state), acall_model)
    assert model.calls[0]["max_tokens"] == 60
    assert result.command.update == {"run_token_spend": 30, "thread_token_spend": 30}


def _tool_request(name, args, state, call_id="c1"):
    tools = {"search": search, "calc": calc, "summarize": summarize}
    return ToolCallRequest(
        tool_call={"name": name, "args": args, "id": call_id, "type": "tool_call"},
        tool=tools[name],
        state=state,
        runtime=None,  # type: ignore[arg-type]
    )


def _run_tool(request):
    out = request.tool.invoke(request.tool_call["args"])
    return ToolMessage(
        content=out, tool_call_id=request.tool_call["id"], name=request.tool_call["name"]
    )


def test_wrap_tool_call_charges_a_declared_cost_or_refuses_the_tool():
    mw = TokenBudgetMiddleware(run_limit=100, tool_costs={"search": 30})
    ai = AIMessage(
        "", tool_calls=[{"name": "search", "args": {"query": "x"}, "id": "c1"}], id="ai-1"
    )
    ok = mw.wrap_tool_call(
        _tool_request("search", {"query": "x"}, {"messages": [ai], "run_token_spend": 50}),
        _run_tool,
    )
    assert isinstance(ok, Command)
    assert (
        ok.update["run_token_spend"] == 30 and ok.update["messages"][0].content == "results for x"
    )
    refused = mw.wrap_tool_call(
        _tool_request("search", {"query": "x"}, {"messages": [ai], "run_token_spend": 80}),
        _run_tool,
    )
    assert isinstance(refused, ToolMessage) and refused.status == "error"
    assert refused.content == (
        "Tool 'search' stopped: Token budget: running tool 'search' would exceed the run limit "
        "of 100 tokens (run_spent=80, reserved=0, requested=30, remaining=20)"
    )
    assert len(mw.steps) == 0  # step meters are dropped once their calls finish


def test_wrap_tool_call_charges_llm_calls_made_inside_the_tool():
    TOOL_LLM.calls.clear()
    mw = TokenBudgetMiddleware(run_limit=1000, count="total")
    ai = AIMessage(
        "", tool_calls=[{"name": "summarize", "args": {"url": "u"}, "id": "c1"}], id="ai-2"
    )
    out = mw.wrap_tool_call(_tool_request("summarize", {"url": "u"}, {"messages": [ai]}), _run_tool)
    billed = TOOL_LLM.calls[-1]["input"] + TOOL_LLM.calls[-1]["output"]
    assert out.update["run_token_spend"] == billed == out.update["thread_token_spend"]


# --- end to end ----------------------------------------------------------------------


def _agent(mw, steps, tools=(search, calc), **model_fields):
    model = ScriptedToolModel(steps=steps, **model_fields)
    agent = create_agent(model, tools=list(tools), middleware=[mw], checkpointer=InMemorySaver())
    return agent, model


LOOP = [turn(("search", {"query": "q"}), ("calc", {"expr": "1+1"}), output_tokens=40)] * 20


async def _invoke(agent, payload, use_async):
    if use_async:
        return await agent.ainvoke(payload, CFG)
    return agent.invoke(payload, CFG)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_end_stops_with_a_message_and_never_overspends(use_async):
    mw = TokenBudgetMiddleware(run_limit=130, thread_limit=10_000)
    agent, model = _agent(mw, LOOP)
    out = await _invoke(agent, {"messages": [HumanMessage("go")]}, use_async)
    last = out["messages"][-1]
    assert isinstance(last, AIMessage) and last.tool_calls == []
    assert last.content.startswith("Token budget")
    assert "run limit of 130 tokens" in last.content
    assert model.billed_output == 120 <= 130
    assert agent.get_state(CFG).values["run_token_spend"] == model.billed_output


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_error_raises_and_spends_nothing_more(use_async):
    mw = TokenBudgetMiddleware(run_limit=130, exit_behavior="error")
    agent, model = _agent(mw, LOOP)
    with pytest.raises(TokenBudgetExceededError, match="run limit of 130 tokens"):
        await _invoke(agent, {"messages": [HumanMessage("go")]}, use_async)
    assert model.billed_output == 120


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_finalize_answers_without_tools(use_async):
    mw = TokenBudgetMiddleware(run_limit=300, exit_behavior="finalize", reserve=60, count="output")
    steps = [turn(("search", {"query": "q"}), output_tokens=60)] * 4 + [
        turn(("search", {"query": "q"}), output_tokens=30, text="Best answer so far: 42.")
    ]
    agent, model = _agent(mw, steps)
    out = await _invoke(agent, {"messages": [HumanMessage("go")]}, use_async)
    last = out["messages"][-1]
    assert isinstance(last, AIMessage) and last.tool_calls == []
    assert last.content == "Best answer so far: 42."
    assert model.calls[-1]["tools"] == [] and model.calls[-2]["tools"] == ["search", "calc"]
    assert model.billed_output <= 300


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_interrupt_asks_for_more_budget_and_resumes(use_async):
    mw = TokenBudgetMiddleware(run_limit=90, exit_behavior="interrupt")
    agent, model = _agent(mw, LOOP[:4])
    await _invoke(agent, {"messages": [HumanMessage("go")]}, use_async)
    (pending,) = agent.get_state(CFG).interrupts
    assert pending.value["type"] == "token_budget" and pending.value["limit"] == 90
    assert "would exceed the run limit of 90 tokens" in pending.value["message"]
    assert model.billed_output == 80

    out = await _invoke(agent, Command(resume={"run_limit": 5000}), use_async)
    assert agent.get_state(CFG).interrupts == ()
    assert out["messages"][-1].content == "Final answer."  # the script ran to its end
    assert agent.get_state(CFG).values["run_token_spend"] == model.billed_output <= 5000


async def test_interrupt_declined_ends_with_the_budget_message():
    mw = TokenBudgetMiddleware(run_limit=90, exit_behavior="interrupt")
    agent, model = _agent(mw, LOOP)
    agent.invoke({"messages": [HumanMessage("go")]}, CFG)
    out = agent.invoke(Command(resume=False), CFG)
    assert out["messages"][-1].content.startswith("Token budget: the next model call would exceed")
    with pytest.raises(
        ValueError,
        match=re.escape("Resume value must set run_limit or thread_limit (got {'more': 1})"),
    ):
        mw.parse_resume({"more": 1})


def test_thread_limit_spans_invocations_and_run_limit_resets():
    mw = TokenBudgetMiddleware(run_limit=100, thread_limit=130)
    agent, model = _agent(
        mw, [turn(output_tokens=60), turn(output_tokens=60), turn(output_tokens=60)]
    )
    agent.invoke({"messages": [HumanMessage("one")]}, CFG)
    values = agent.get_state(CFG).values
    assert (values["run_token_spend"], values["thread_token_spend"]) == (60, 60)
    agent.invoke({"messages": [HumanMessage("two")]}, CFG)
    values = agent.get_state(CFG).values
    # the second run was clamped by the thread (70 left), not by its own run limit (100)
    assert model.calls[1]["max_tokens"] == 70
    assert (values["run_token_spend"], values["thread_token_spend"]) == (60, 120)
    out = agent.invoke({"messages": [HumanMessage("three")]}, CFG)
    assert "thread limit of 130 tokens" in out["messages"][-1].content
    assert model.billed_output == 120 and len(model.calls) == 2


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_parallel_tool_calls_share_one_meter(use_async):
    TOOL_LLM.calls.clear()
    mw = TokenBudgetMiddleware(run_limit=300, count="total", tool_costs={"calc": 40})
    five = turn(
        *[("summarize", {"url": f"u{i}"}) for i in range(4)],
        ("calc", {"expr": "2"}),
        output_tokens=30,
    )
    agent, model = _agent(mw, [five] * 4, tools=(summarize, calc))
    out = await _invoke(agent, {"messages": [HumanMessage("go")]}, use_async)
    spent = (
        model.billed_total
        + TOOL_LLM.billed_total
        + 40
        * sum(
            1
            for m in out["messages"]
            if isinstance(m, ToolMessage) and m.name == "calc" and m.status != "error"
        )
    )
    assert spent <= 300
    assert agent.get_state(CFG).values["run_token_spend"] == spent
    refused = [m for m in out["messages"] if isinstance(m, ToolMessage) and m.status == "error"]
    assert refused and all("would exceed the run limit of 300 tokens" in m.content for m in refused)


# --- docs and examples ---------------------------------------------------------------


def test_agents_doc_examples_run():
    text = (ROOT / "docs" / "agents.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "docs/agents.md", "exec"), {})
