"""Telemetry overhead: the budget-aware planner on the replay, tracing off vs on, side by side.

Tracing on = ``budget_graph.telemetry.instrument`` with an SDK ``TracerProvider`` behind a
``BatchSpanProcessor`` into an ``InMemorySpanExporter``, plus an SDK ``MeterProvider`` (what
a production setup does, minus the network). The span processor is flushed inside the
traced timing; the exporter's list is emptied after each flush, outside it, as a network
exporter keeps nothing once sent.

The machine's speed drifts by tens of percent over seconds, so the two modes are paired
finely: each puzzle runs off and on back to back (replay cursors rewound before each, so
both make the same calls), in alternating order (ABBA across puzzles and rounds). The
ratio is the median over pairs of (on CPU / off CPU); CPU time counts every thread of
this process (the batch span processor's worker included).

The model is the real client stack, as in the tests: langchain-openai's ``ChatOpenAI``
pointed at the project's local OpenAI-compatible replay server (started in this process),
serving recorded model outputs. ``--in-process`` swaps in ``ReplayChatModel`` (no HTTP,
no client): a model that answers in microseconds, the worst case for the ratio.

Usage: ``python benchmarks/telemetry_overhead.py [--puzzles 10] [--rounds 9] [--in-process]``
The line before the last names the configuration; the last line is
``telemetry_overhead_ratio=<x>`` (target <= 1.10, for the default configuration).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from budget_graph import Budget
from budget_graph.planner import build_planner
from budget_graph.replay import ReplayChatModel, ReplayStore
from budget_graph.tasks.game24 import Game24Task
from budget_graph.telemetry import instrument


def make_model(store: ReplayStore, in_process: bool) -> tuple[Any, Any]:
    """The planner's model, and the replay server behind it (``None`` in-process)."""
    if in_process:
        return ReplayChatModel(store=store, model_name="gpt-4"), None
    from langchain_openai import ChatOpenAI

    from budget_graph.replay.server import ReplayServer

    server = ReplayServer(store).start()
    llm = ChatOpenAI(
        base_url=server.base_url, api_key="replay", model="gpt-4", max_retries=0, stream_usage=True
    )
    return llm, server


def one_round(
    app: Any, store: ReplayStore, items: list[Any], server: Any, flush: Any = None
) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (all threads of this process) and calls of ``items``.

    ``flush`` (the span processor's) runs inside the timing, so exporting is charged to
    the traced half rather than to whichever half the batch worker happens to wake in.
    """
    (server or store).reset()
    calls = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for item in items:
        calls += app.invoke({"item": item})["spend"].calls
    if flush is not None:
        flush()
    return time.perf_counter() - wall, time.process_time() - cpu, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--puzzles", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--budget", type=int, default=20_000)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="ReplayChatModel instead of ChatOpenAI on the local replay server",
    )
    args = parser.parse_args()

    task = Game24Task()
    items = list(task.items()[: args.puzzles])
    store = ReplayStore()
    model, server = make_model(store, args.in_process)
    app = build_planner(model, task=task, budget=Budget(max_tokens=args.budget), breadth=5)

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])

    spans = [0]

    def half(mode: str, item: Any) -> tuple[float, float, int]:
        if mode == "off":
            return one_round(app, store, [item], server)
        handle = instrument(
            tracer_provider=tracer_provider, meter_provider=meter_provider, capture_content=False
        )
        try:
            return one_round(app, store, [item], server, tracer_provider.force_flush)
        finally:
            handle.uninstrument()
            spans[0] += len(exporter.get_finished_spans())
            exporter.clear()

    for item in items:  # warm up both modes: imports, encodings, replay index, instruments
        half("off", item)
        half("on", item)
    spans[0] = 0
    times: dict[str, list[float]] = {"off": [], "on": []}
    cpus: dict[str, list[float]] = {"off": [], "on": []}
    calls: dict[str, list[int]] = {"off": [], "on": []}
    try:
        for r in range(args.rounds):
            gc.collect()
            for i, item in enumerate(items):
                pair = ("off", "on") if (r + i) % 2 == 0 else ("on", "off")  # ABBA
                for mode in pair:
                    elapsed, cpu, n = half(mode, item)
                    times[mode].append(elapsed)
                    cpus[mode].append(cpu)
                    calls[mode].append(n)
    finally:
        if server is not None:
            server.stop()
    tracer_provider.shutdown()

    runs = args.puzzles * args.rounds
    model = (
        "ReplayChatModel (in-process)"
        if args.in_process
        else "ChatOpenAI -> local replay server (HTTP)"
    )
    config = (
        f"model={model}; tracing on = BatchSpanProcessor + InMemorySpanExporter + SDK "
        f"MeterProvider; {args.puzzles} game24 puzzles x {args.rounds} rounds, "
        f"budget {args.budget}"
    )
    print(f"planner on the replay: {config}")
    print(
        f"{'mode':<6}{'calls/round':>12}{'wall ms/run':>13}{'cpu ms/run':>12}"
        f"{'cpu s total':>13}{'spans':>8}"
    )
    for mode in ("off", "on"):
        wall, cpu = statistics.median(times[mode]), statistics.median(cpus[mode])
        print(
            f"{mode:<6}{sum(calls[mode]) // args.rounds:>12}{1000 * wall:>13.1f}"
            f"{1000 * cpu:>12.1f}{sum(cpus[mode]):>13.3f}"
            f"{spans[0] if mode == 'on' else 0:>8}"
        )
    # Parallel branches race for the budget, so a run now and then makes other calls
    # than its twin; only pairs that made the same calls are compared.
    same = [a == b for a, b in zip(calls["off"], calls["on"], strict=True)]
    if not any(same):  # a short run may have no twin pair at all: compare every pair
        same = [True] * len(same)

    def paired(xs: dict[str, list[float]]) -> float:
        pairs = zip(xs["on"], xs["off"], same, strict=True)
        return statistics.median(on / off for on, off, kept in pairs if kept)

    print(f"pairs: {sum(same)} of {runs} made the same calls; spans per run: {spans[0] / runs:.1f}")
    print(f"wall_ratio={paired(times):.3f} cpu_ratio={paired(cpus):.3f}")
    print(f"configuration: {config}")
    # CPU time is the headline: it measures the work tracing adds and, unlike wall time,
    # barely moves when other processes share the machine.
    print(f"telemetry_overhead_ratio={paired(cpus):.3f}")


if __name__ == "__main__":
    main()
