"""The conformance matrix: entry points x graph patterns x sync/async x checkpointers.

Shared by ``tests/conformance/test_matrix.py`` (fixed budgets that force a stop) and
``benchmarks/conformance.py`` (random budgets near the cap). Each cell builds one graph
under ``with_budget``, drives it through one entry point, and reports what the provider
billed (the fake models' own ledgers, or the replay server's), the spend in the final
state, the stop reason, whether the meter refused a call, and how many top-level runs
the run observer saw per invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import json
import operator
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send, interrupt

from budget_graph import (
    Budget,
    BudgetState,
    budgeted,
    guard,
    with_budget,
)
from budget_graph._internal import observe
from budget_graph.testing import BillingFakeChat, ScriptedToolModel, turn
from tests.conformance.graphs import lookup, react_builder

__all__ = ["CELLS", "Cell", "Env", "Outcome", "arun_cell", "run_cell"]

APP_NAME = "conformance"
TEXT = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi"

SYNC_ENTRIES = ("invoke", "stream", "batch")
ASYNC_ENTRIES = ("ainvoke", "astream", "astream_events")
SYNC_SAVERS = ("none", "memory", "sqlite", "postgres")
ASYNC_SAVERS = ("none", "memory", "async_sqlite", "async_postgres")
TOOL_PATTERNS = ("react_toolnode", "create_agent", "create_react_agent")
PATTERNS = (
    "react_toolnode",
    "send_fanout",
    "subgraph_as_node",
    "subgraph_in_node",
    "interrupt_resume",
    "resume_in_second_process",
    "fork",
    "threads_in_node",
    "create_agent",
    "create_react_agent",
)
NEEDS_THREAD = ("interrupt_resume", "resume_in_second_process", "fork")


@dataclass(frozen=True)
class Cell:
    """One cell of the matrix."""

    pattern: str
    mode: str
    saver: str
    entry: str
    model: str
    """``"fake"`` (in-process fakes) or ``"replay"`` (ChatOpenAI on the replay server)."""

    @property
    def id(self) -> str:
        return f"{self.pattern}-{self.mode}-{self.saver}-{self.entry}-{self.model}"


def _cells() -> list[Cell]:
    out: list[Cell] = []
    entries = {"sync": itertools.cycle(SYNC_ENTRIES), "async": itertools.cycle(ASYNC_ENTRIES)}
    models = itertools.cycle(("fake", "replay"))
    for pattern in PATTERNS:
        for mode, savers in (("sync", SYNC_SAVERS), ("async", ASYNC_SAVERS)):
            for saver in savers:
                if pattern in NEEDS_THREAD and saver == "none":
                    continue
                if pattern == "resume_in_second_process":
                    if saver not in ("sqlite", "postgres"):
                        continue
                    out.append(Cell(pattern, mode, saver, "invoke", "replay"))
                    continue
                model = "fake" if pattern in TOOL_PATTERNS else next(models)
                out.append(Cell(pattern, mode, saver, next(entries[mode]), model))
    return out


CELLS: list[Cell] = _cells()


@dataclass
class Env:
    """The real servers and scratch space a cell may use."""

    tmp: Path
    replay: Any = None
    """A running ``ReplayServer`` (reset per cell)."""
    pg_conninfo: str | None = None
    """A database with LangGraph's checkpoint tables."""
    threads: Iterator[int] = field(default_factory=lambda: itertools.count(1))


@dataclass
class Outcome:
    """What one cell observed."""

    billed: int
    limit: int
    state_tokens: int
    stop_reason: Any
    refused: bool
    runs_per_invocation: list[int]

    @property
    def leak(self) -> bool:
        return self.billed > self.limit

    @property
    def miscount(self) -> bool:
        return self.state_tokens != self.billed

    def problems(self) -> list[str]:
        """Every broken promise of the cell, in words."""
        out = []
        if self.leak:
            out.append(f"billed {self.billed} > limit {self.limit}")
        if self.miscount:
            out.append(f"spend in state {self.state_tokens} != billed {self.billed}")
        if self.refused and self.stop_reason != "budget":
            out.append(f"a call was refused but stop_reason={self.stop_reason!r}")
        if any(n != 1 for n in self.runs_per_invocation):
            out.append(f"runs per invocation {self.runs_per_invocation} (want 1 each)")
        return out


class RunCounter:
    """An observer counting the top-level runs (named ``APP_NAME``) that started and ended."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0

    def run_started(self, run: Any) -> None:
        if run.name == APP_NAME:
            self.started += 1

    def run_finished(self, run: Any) -> None:
        if run.name == APP_NAME:
            self.finished += 1


# -- models ----------------------------------------------------------------------------


class Models:
    """The cell's chat models and what their provider billed."""

    def __init__(self, cell: Cell, env: Env) -> None:
        self.kind = cell.model
        self.env = env
        self.fakes: list[Any] = []
        if self.kind == "replay":
            env.replay.reset()

    def chat(self, **kwargs: Any) -> Any:
        if self.kind == "replay":
            from tests.reliability_helpers import openai_chat

            return openai_chat(self.env.replay, max_retries=0, async_client=True)
        fake = BillingFakeChat(texts=[TEXT])
        self.fakes.append(fake)
        return fake

    def tool_model(self, turns: int = 7, out: int = 30) -> ScriptedToolModel:
        fake = ScriptedToolModel(steps=[turn(("lookup", {"q": "x"}), output_tokens=out)] * turns)
        self.fakes.append(fake)
        return fake

    def prompt(self, i: int) -> str:
        if self.kind == "replay":
            from tests.reliability_helpers import PROMPTS

            return PROMPTS[i % len(PROMPTS)]
        return f"task {i}: {TEXT}"

    def billed(self) -> int:
        if self.kind == "replay":
            from tests.reliability_helpers import billed_tokens

            return billed_tokens(self.env.replay)
        total = 0
        for fake in self.fakes:
            total += fake.billed_total if isinstance(fake, ScriptedToolModel) else sum(fake.billed)
        return total


# -- graphs ----------------------------------------------------------------------------


class Steps(BudgetState):
    steps: Annotated[list[str], operator.add]


def _react(models: Models) -> StateGraph:
    return react_builder(models.tool_model())


def _fanout(models: Models, branches: int = 8) -> StateGraph:
    llm = budgeted(models.chat())

    @guard
    def work(state: dict) -> dict:
        return {"steps": [llm.invoke(models.prompt(state["i"]), max_tokens=60).text[:10]]}

    b = StateGraph(Steps)
    b.add_node("work", work)
    b.add_conditional_edges(
        START, lambda s: [Send("work", {"i": i}) for i in range(branches)], ["work"]
    )
    b.add_edge("work", END)
    return b


def _chain(models: Models, llm: Any, names: tuple[str, ...], offset: int = 0) -> StateGraph:
    b = StateGraph(Steps)
    prev = START
    for k, name in enumerate(names):

        def step(state: dict, _k: int = k, _name: str = name) -> dict:
            llm.invoke(models.prompt(offset + _k), max_tokens=60)
            return {"steps": [_name]}

        b.add_node(name, guard(step, name=name))
        b.add_edge(prev, name)
        prev = name
    b.add_edge(prev, END)
    return b


def _subgraph_as_node(models: Models) -> StateGraph:
    llm = budgeted(models.chat())
    inner = with_budget(
        _chain(models, llm, ("i1", "i2"), 10).compile(), Budget(max_tokens=100_000), name="inner"
    )
    b = _chain(models, llm, ("p1",))
    b.add_node("sub", inner)
    b.add_node(
        "p2",
        guard(
            lambda s: {"steps": [llm.invoke(models.prompt(5), max_tokens=60).text[:5]]}, name="p2"
        ),
    )
    b.edges.discard(("p1", END))
    b.add_edge("p1", "sub")
    b.add_edge("sub", "p2")
    b.add_edge("p2", END)
    return b


def _subgraph_in_node(models: Models) -> StateGraph:
    llm = budgeted(models.chat())
    inner = _chain(models, llm, ("i1", "i2"), 10).compile()

    def calls_inner(state: dict) -> dict:
        return {"steps": inner.invoke({"steps": []})["steps"]}

    b = _chain(models, llm, ("p1",))
    b.add_node("in_node", guard(calls_inner, name="in_node"))
    b.edges.discard(("p1", END))
    b.add_edge("p1", "in_node")
    b.add_edge("in_node", END)
    return b


def _interrupting(models: Models) -> StateGraph:
    llm = budgeted(models.chat())

    @guard
    def draft(state: dict) -> dict:
        text = llm.invoke(models.prompt(1), max_tokens=60).text
        ok = interrupt({"draft": text[:20]})  # billed above, then the node pauses
        return {"steps": ["approved" if ok else "rejected"]}

    b = _chain(models, llm, ("plan",))
    b.add_node("draft", draft)
    b.edges.discard(("plan", END))
    b.add_edge("plan", "draft")
    b.add_edge("draft", END)
    return b


def _threads_in_node(models: Models) -> StateGraph:
    llm = budgeted(models.chat())

    def ask(i: int) -> str:
        return llm.invoke(models.prompt(i), max_tokens=60).text[:10]

    @guard
    def pool(state: dict) -> dict:
        # The user's own threads: each carries the node's context (meter and ledger).
        with ThreadPoolExecutor(4) as ex:
            futures = [ex.submit(contextvars.copy_context().run, ask, i) for i in range(6)]
            return {"steps": [f.result() for f in futures]}

    b = StateGraph(Steps)
    b.add_node("pool", pool)
    b.add_edge(START, "pool")
    return b


def _prebuilt(models: Models, which: str, saver: Any) -> Any:
    model = budgeted(models.tool_model())
    if which == "create_agent":
        from langchain.agents import AgentState, create_agent

        class AS(AgentState, BudgetState):  # type: ignore[misc]
            pass

        return create_agent(model, [lookup], state_schema=AS, checkpointer=saver)
    from langgraph.prebuilt import create_react_agent
    from langgraph.prebuilt.chat_agent_executor import AgentState as ReactState

    class RS(ReactState, BudgetState):  # type: ignore[misc]
        pass

    return create_react_agent(model, [lookup], state_schema=RS, checkpointer=saver)


def build(cell: Cell, models: Models, saver: Any) -> Any:
    """The cell's compiled graph (before ``with_budget``)."""
    if cell.pattern in ("create_agent", "create_react_agent"):
        return _prebuilt(models, cell.pattern, saver)
    builders = {
        "react_toolnode": _react,
        "send_fanout": _fanout,
        "subgraph_as_node": _subgraph_as_node,
        "subgraph_in_node": _subgraph_in_node,
        "interrupt_resume": _interrupting,
        "resume_in_second_process": _interrupting,
        "fork": lambda m: _chain(m, budgeted(m.chat()), ("a", "b")),
        "threads_in_node": _threads_in_node,
    }
    return builders[cell.pattern](models).compile(checkpointer=saver)


def first_input(cell: Cell) -> dict:
    if cell.pattern in TOOL_PATTERNS:
        return {"messages": [HumanMessage("find x")]}
    return {"steps": []}


# -- checkpointers ---------------------------------------------------------------------


def _serde() -> Any:
    """LangGraph's serializer with our checkpointed types allowed (no "unregistered" notes)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from budget_graph import CHECKPOINT_TYPES

    return JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)


@contextlib.contextmanager
def sync_saver(name: str, env: Env) -> Iterator[Any]:
    if name == "none":
        yield None
    elif name == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver(serde=_serde())
    elif name == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(env.tmp / "conformance.sqlite", check_same_thread=False)
        try:
            yield SqliteSaver(conn, serde=_serde())
        finally:
            conn.close()
    elif name == "postgres":
        from langgraph.checkpoint.postgres import PostgresSaver

        assert env.pg_conninfo is not None
        with PostgresSaver.from_conn_string(env.pg_conninfo) as saver:
            saver.serde = _serde()
            yield saver
    else:
        raise ValueError(f"unknown sync saver {name!r}")


@contextlib.asynccontextmanager
async def async_saver(name: str, env: Env) -> Any:
    if name in ("none", "memory"):
        with sync_saver(name, env) as saver:
            yield saver
    elif name == "async_sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(str(env.tmp / "conformance.sqlite")) as s:
            s.serde = _serde()
            yield s
    elif name == "async_postgres":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        assert env.pg_conninfo is not None
        async with AsyncPostgresSaver.from_conn_string(env.pg_conninfo) as saver:
            saver.serde = _serde()
            yield saver
    else:
        raise ValueError(f"unknown async saver {name!r}")


# -- entry points ----------------------------------------------------------------------


def _sync_call(app: Any, entry: str, input: Any, cfg: dict) -> dict:
    if entry == "invoke":
        return app.invoke(input, cfg)
    if entry == "stream":
        last: dict = {}
        for chunk in app.stream(input, cfg, stream_mode="values"):
            last = chunk
        return last
    if entry == "batch":
        return app.batch([input], cfg)[0]
    raise ValueError(entry)


async def _async_call(app: Any, entry: str, input: Any, cfg: dict) -> dict:
    if entry == "ainvoke":
        return await app.ainvoke(input, cfg)
    if entry == "astream":
        last: dict = {}
        async for chunk in app.astream(input, cfg, stream_mode="values"):
            last = chunk
        return last
    if entry == "astream_events":
        out: dict = {}
        async for ev in app.astream_events(input, cfg, version="v2"):
            if ev["event"] == "on_chain_end" and not ev["parent_ids"]:
                out = ev["data"]["output"]
        return out
    raise ValueError(entry)


def _drive_steps(cell: Cell) -> list[str]:
    """The invocations a pattern needs: a first run, then resumes or forks."""
    if cell.pattern == "interrupt_resume":
        return ["first", "resume"]
    if cell.pattern == "resume_in_second_process":
        return ["first", "resume_elsewhere"]
    if cell.pattern == "fork":
        return ["first", "fork", "fork"]
    return ["first"]


def _scope(cell: Cell) -> Any:
    """Forks are new runs on one thread: only a thread budget caps them together."""
    return "thread" if cell.pattern == "fork" else "run"


def _config(cell: Cell, env: Env) -> dict:
    return {"configurable": {"thread_id": f"{cell.id}-{next(env.threads)}"}}


def _finish(
    cell: Cell,
    models: Models,
    app: Any,
    limit: int,
    state: dict,
    runs: list[int],
    first_cfg: dict | None,
    saver: Any,
) -> Outcome:
    spend = state.get("spend")
    tokens = spend.total_tokens if spend is not None else 0
    if cell.pattern == "fork" and saver is not None and first_cfg is not None:
        tokens = _branch_tokens(list(app.get_state_history(first_cfg)))
    meter = app.last_meter
    refused = bool(getattr(meter, "refused", 0))
    return Outcome(models.billed(), limit, tokens, state.get("stop_reason"), refused, runs)


def _branch_tokens(history: list[Any]) -> int:
    """Tokens of every branch of a forked thread: the sum of each checkpoint's increment."""
    by_id = {h.config["configurable"]["checkpoint_id"]: h for h in history}
    total = 0
    for h in history:
        spend = h.values.get("spend")
        parent = h.parent_config and by_id.get(h.parent_config["configurable"]["checkpoint_id"])
        before = parent.values.get("spend") if parent else None
        now = spend.total_tokens if spend is not None else 0
        total += now - (before.total_tokens if before is not None else 0)
    return total


def run_cell(cell: Cell, env: Env, limit: int) -> Outcome:
    """Run one sync cell under a budget of ``limit`` tokens."""
    counter = RunCounter()
    observe.add_observer(counter)
    try:
        models = Models(cell, env)
        with sync_saver(cell.saver, env) as saver:
            app = with_budget(
                build(cell, models, saver), Budget(max_tokens=limit), scope=_scope(cell)
            )
            app.name = APP_NAME
            cfg = _config(cell, env) if saver is not None else None
            state, runs, origin = {}, [], None
            for step in _drive_steps(cell):
                before = counter.finished
                if step == "first":
                    state = _sync_call(app, cell.entry, first_input(cell), cfg)
                    if cell.pattern == "fork":
                        origin = list(app.get_state_history(cfg))[-1].config
                elif step == "resume":
                    state = _sync_call(app, cell.entry, Command(resume=True), cfg)
                elif step == "fork":
                    state = _sync_call(app, cell.entry, first_input(cell), origin)
                else:
                    state = _resume_elsewhere(cell, env, cfg, limit)
                    runs.append(1)  # the other process reports its own run
                    continue
                runs.append(counter.finished - before)
            return _finish(cell, models, app, limit, state, runs, cfg, saver)
    finally:
        observe.remove_observer(counter)


async def arun_cell(cell: Cell, env: Env, limit: int) -> Outcome:
    """Run one async cell under a budget of ``limit`` tokens."""
    counter = RunCounter()
    observe.add_observer(counter)
    try:
        models = Models(cell, env)
        async with async_saver(cell.saver, env) as saver:
            app = with_budget(
                build(cell, models, saver), Budget(max_tokens=limit), scope=_scope(cell)
            )
            app.name = APP_NAME
            cfg = _config(cell, env) if saver is not None else None
            state, runs, origin = {}, [], None
            for step in _drive_steps(cell):
                before = counter.finished
                if step == "first":
                    state = await _async_call(app, cell.entry, first_input(cell), cfg)
                    if cell.pattern == "fork":
                        origin = [h async for h in app.aget_state_history(cfg)][-1].config
                elif step == "resume":
                    state = await _async_call(app, cell.entry, Command(resume=True), cfg)
                elif step == "fork":
                    state = await _async_call(app, cell.entry, first_input(cell), origin)
                else:
                    state = await asyncio.to_thread(_resume_elsewhere, cell, env, cfg, limit)
                    runs.append(1)
                    continue
                runs.append(counter.finished - before)
            if cell.pattern == "fork" and saver is not None:
                tokens = _branch_tokens([h async for h in app.aget_state_history(cfg)])
                out = _finish(cell, models, app, limit, state, runs, None, None)
                out.state_tokens = tokens
                return out
            return _finish(cell, models, app, limit, state, runs, None, saver)
    finally:
        observe.remove_observer(counter)


def _resume_elsewhere(cell: Cell, env: Env, cfg: dict | None, limit: int) -> dict:
    """Resume the thread in a new Python process; return its final state's numbers."""
    args = {
        "saver": cell.saver,
        "tmp": str(env.tmp),
        "pg": env.pg_conninfo,
        "replay": env.replay.base_url,
        "config": cfg,
        "limit": limit,
    }
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-m", "tests.conformance.resume_worker", json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        timeout=120,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])

    class _Spend:
        total_tokens = data["total_tokens"]

    return {"spend": _Spend(), "stop_reason": data["stop_reason"]}
