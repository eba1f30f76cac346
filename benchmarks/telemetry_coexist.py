"""Coexistence: budget telemetry beside OpenInference or OpenLLMetry, tokens counted once.

Runs the same budgeted runs in three configurations: our tracer alone, beside
OpenInference's LangChain instrumentor, beside OpenLLMetry's. The runs: planner runs on
Game of 24 (``build_planner`` on ``ChatOpenAI`` pointed at the local replay server, so
the real client stack and the instrumentors' OpenAI wrappers are in play), a
tool-calling agent (``create_agent`` with a budgeted scripted model under
``with_budget``), the same agent capped by ``TokenBudgetMiddleware`` alone (wrapped in
``traced()`` for its run span; its budget ends it), and a streamed planner run
(``.stream``). All spans go to one
in-memory exporter, read back after each run the way a backend counts tokens:
a span's count is OpenInference's ``llm.token_count.*`` if it has them, else its
``gen_ai.usage.*`` (Phoenix's rule; a backend on GenAI conventions alone reads the
latter, and every span with counts has them).

Per run: ``token_ratio`` = tokens the backend counts / input + output tokens in the
run's final state; ``duplicate_token_spans`` = spans with token counts beyond one per
call; ``traces`` = distinct trace ids. Last line:
``configs=3 token_ratio_max=<r> duplicate_token_spans=<d> traces_per_run_max=<t>``
(target ``token_ratio_max=1.000 duplicate_token_spans=0 traces_per_run_max=1``).

Usage: ``python benchmarks/telemetry_coexist.py [--puzzles 3]``
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from budget_graph import Budget, budgeted, with_budget
from budget_graph.budget import Usage
from budget_graph.middleware import TokenBudgetMiddleware
from budget_graph.planner import build_planner
from budget_graph.replay import ReplayStore
from budget_graph.replay.server import ReplayServer
from budget_graph.tasks.game24 import Game24Task
from budget_graph.telemetry import TelemetryConfig, instrument, traced
from budget_graph.telemetry import attributes as A
from budget_graph.testing import ScriptedToolModel, turn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixtures.otel import INSTRUMENTORS, langchain_instrumentor  # noqa: E402

CONFIGS = ("alone", *INSTRUMENTORS)


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}: " + "lorem ipsum " * 20


@tool
def calc(expr: str) -> str:
    """Evaluate an arithmetic expression."""
    return "42"


def counted_tokens(span: Any) -> int | None:
    """The tokens a backend counts on this span (OpenInference's names first), or None."""
    attrs = span.attributes or {}
    if "llm.token_count.prompt" in attrs:
        return int(attrs["llm.token_count.prompt"]) + int(attrs["llm.token_count.completion"])
    if A.GEN_AI_USAGE_INPUT_TOKENS in attrs:
        return int(attrs[A.GEN_AI_USAGE_INPUT_TOKENS]) + int(attrs[A.GEN_AI_USAGE_OUTPUT_TOKENS])
    return None


def measure(spans: Any, spend: Any) -> tuple[float, int, int]:
    """(token ratio, duplicate token spans, traces) of one run's spans."""
    counts = [c for s in spans if (c := counted_tokens(s)) is not None]
    expected = spend.input_tokens + spend.output_tokens
    ratio = sum(counts) / expected if expected else float(sum(counts) == 0)
    return ratio, max(0, len(counts) - spend.calls), len({s.context.trace_id for s in spans})


def agent_app() -> Any:
    """A tool-calling agent on a budgeted scripted model, under ``with_budget``."""
    steps = [
        turn(("search", {"query": "budget"}), output_tokens=60),
        turn(("calc", {"expr": "6*7"}), output_tokens=30),
        turn(("search", {"query": "tokens"}), output_tokens=45),
    ]
    model = budgeted(ScriptedToolModel(steps=steps, final_output_tokens=25))
    return with_budget(create_agent(model, tools=[search, calc]), Budget(max_tokens=20_000))


def middleware_agent() -> tuple[Any, ScriptedToolModel]:
    """The agent's scripted model capped by ``TokenBudgetMiddleware``, in a traced run."""
    steps = [
        turn(("search", {"query": "budget"}), output_tokens=60),
        turn(("calc", {"expr": "6*7"}), output_tokens=30),
        turn(("search", {"query": "tokens"}), output_tokens=45),
    ]
    model = ScriptedToolModel(steps=steps, final_output_tokens=25)
    mw = TokenBudgetMiddleware(run_limit=150, scope="agent")  # the 4th call does not fit
    agent = create_agent(model, tools=[search, calc], middleware=[mw])
    return traced(agent, "agent middleware"), model


def billed_by(model: ScriptedToolModel) -> Usage:
    """What the scripted model billed, as a spend (the middleware's is private state)."""
    return Usage(
        input_tokens=sum(c["input"] for c in model.calls),
        output_tokens=sum(c["output"] for c in model.calls),
        calls=len(model.calls),
    )


def spend_of(app: Any, state: Any) -> Any:
    """The run's spend: in its state, else (a state without the key) on its meter."""
    spend = state.get("spend") if isinstance(state, dict) else None
    return spend if spend is not None else app.last_meter.spend


def runs(server: ReplayServer, puzzles: int) -> list[tuple[str, Any]]:
    """(name, run) pairs; each run returns its spend."""
    task = Game24Task()
    llm = ChatOpenAI(
        base_url=server.base_url, api_key="replay", model="gpt-4", max_retries=0, stream_usage=True
    )
    planner = build_planner(llm, task=task, budget=Budget(max_tokens=8_000), breadth=5)
    out: list[tuple[str, Any]] = []
    for item in task.items()[:puzzles]:
        run = lambda item=item: planner.invoke({"item": item})["spend"]  # noqa: E731
        out.append((f"planner {item.id}", run))
    agent = agent_app()
    question = {"messages": [{"role": "user", "content": "What is 6*7 and why?"}]}
    out.append(("agent", lambda: spend_of(agent, agent.invoke(question))))
    capped, capped_model = middleware_agent()
    out.append(("agent middleware", lambda: (capped.invoke(question), billed_by(capped_model))[1]))
    first = task.items()[0]

    def streamed() -> Any:
        chunks = list(planner.stream({"item": first}, stream_mode="values"))
        return chunks[-1]["spend"]

    out.append((f"planner {first.id} streamed", streamed))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--puzzles", type=int, default=3)
    args = parser.parse_args()

    store = ReplayStore()
    server = ReplayServer(store).start()
    worst_ratio, duplicates, worst_traces = 0.0, 0, 0
    print(f"{'config':<14}{'run':<28}{'calls':>6}{'tokens':>8}{'ratio':>8}{'dup':>5}{'traces':>7}")
    try:
        for config in CONFIGS:
            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            with contextlib.ExitStack() as stack:
                if config != "alone":
                    stack.enter_context(langchain_instrumentor(config, provider))
                handle = instrument(tracer_provider=provider, config=TelemetryConfig(metrics=False))
                stack.callback(handle.uninstrument)
                server.reset()
                for name, run in runs(server, args.puzzles):
                    exporter.clear()
                    spend = run()
                    ratio, dup, traces = measure(exporter.get_finished_spans(), spend)
                    worst_ratio = max(worst_ratio, abs(ratio - 1.0) + 1.0)
                    duplicates += dup
                    worst_traces = max(worst_traces, traces)
                    tokens = spend.input_tokens + spend.output_tokens
                    print(
                        f"{config:<14}{name:<28}{spend.calls:>6}{tokens:>8}{ratio:>8.3f}"
                        f"{dup:>5}{traces:>7}"
                    )
            provider.shutdown()
    finally:
        server.stop()
    # token_ratio_max is the worst ratio's distance from 1, written as 1 + distance, so
    # undercounting shows as clearly as double counting.
    print(
        f"configs={len(CONFIGS)} token_ratio_max={worst_ratio:.3f} "
        f"duplicate_token_spans={duplicates} traces_per_run_max={worst_traces}"
    )


if __name__ == "__main__":
    main()
