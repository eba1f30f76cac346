"""Telemetry overhead: the budget-aware planner on the replay, tracing off vs on, side by side.

Tracing on = ``budget_graph.telemetry.instrument`` with an SDK ``TracerProvider`` behind a
``BatchSpanProcessor`` into an ``InMemorySpanExporter``, plus an SDK ``MeterProvider`` (what
a production setup does, minus the network). Rounds alternate off/on over the same puzzles,
in ABBA order with the replay cursors rewound, so both modes make the same calls; the
ratio is the median over rounds of (on / off) of the two halves of a round, which run
back to back and so share the machine's load. The span processor is flushed inside the
traced half.

Usage: ``python benchmarks/telemetry_overhead.py [--puzzles 10] [--rounds 7] [--http]``
(``--http``: the planner's model is ``ChatOpenAI`` on the replay HTTP server).
Last line: ``telemetry_overhead_ratio=<x>`` (target <= 1.10).
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


def make_model(store: ReplayStore, http: bool) -> tuple[Any, Any]:
    if not http:
        return ReplayChatModel(store=store, model_name="gpt-4"), None
    from langchain_openai import ChatOpenAI

    from budget_graph.replay.server import ReplayServer

    server = ReplayServer(store).start()
    llm = ChatOpenAI(base_url=server.base_url, api_key="replay", model="gpt-4",
                     max_retries=0, stream_usage=True)
    return llm, server


def one_round(
    app: Any, store: ReplayStore, items: list[Any], server: Any, flush: Any = None
) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (all threads of this process) and calls of one round.

    ``flush`` (the span processor's) runs inside the timing, so exporting is charged to
    the traced round rather than to whichever round the batch worker happens to wake in.
    """
    (server or store).reset()
    gc.collect()
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
    parser.add_argument("--http", action="store_true")
    args = parser.parse_args()

    task = Game24Task()
    items = list(task.items()[: args.puzzles])
    store = ReplayStore()
    model, server = make_model(store, args.http)
    app = build_planner(model, task=task, budget=Budget(max_tokens=args.budget),
                        breadth=5)

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])

    one_round(app, store, items, server)  # warm up: imports, encodings, replay index
    times: dict[str, list[float]] = {"off": [], "on": []}
    cpus: dict[str, list[float]] = {"off": [], "on": []}
    calls: dict[str, int] = {}
    try:
        for r in range(args.rounds):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):  # ABBA: no order bias
                handle = None
                if mode == "on":
                    handle = instrument(tracer_provider=tracer_provider,
                                        meter_provider=meter_provider, capture_content=False)
                try:
                    flush = tracer_provider.force_flush if mode == "on" else None
                    elapsed, cpu, n = one_round(app, store, items, server, flush)
                finally:
                    if handle is not None:
                        handle.uninstrument()
                times[mode].append(elapsed)
                cpus[mode].append(cpu)
                calls[mode] = n
        tracer_provider.force_flush()
    finally:
        if server is not None:
            server.stop()
    spans = len(exporter.get_finished_spans())
    tracer_provider.shutdown()

    runs = args.puzzles * args.rounds
    print(f"planner on the replay ({'HTTP server' if args.http else 'in-process'}), "
          f"{args.puzzles} game24 puzzles x {args.rounds} rounds, budget {args.budget}")
    print(f"{'mode':<6}{'calls/round':>12}{'wall s/round':>14}{'min wall':>10}"
          f"{'cpu s/round':>13}{'cpu ms/run':>12}{'spans':>8}")
    for mode in ("off", "on"):
        wall, cpu = statistics.median(times[mode]), statistics.median(cpus[mode])
        print(f"{mode:<6}{calls[mode]:>12}{wall:>14.3f}{min(times[mode]):>10.3f}"
              f"{cpu:>13.3f}{1000 * cpu / args.puzzles:>12.1f}{spans if mode == 'on' else 0:>8}")
    assert calls["off"] == calls["on"], "both modes must make the same calls"

    def paired(xs: dict[str, list[float]]) -> float:
        return statistics.median(on / off for on, off in zip(xs["on"], xs["off"], strict=True))

    print(f"spans per run: {spans / runs:.1f}")
    print(f"wall_ratio={paired(times):.3f} cpu_ratio={paired(cpus):.3f}")
    # CPU time is the headline: it measures the work tracing adds and, unlike wall time,
    # barely moves when other processes share the machine.
    print(f"telemetry_overhead_ratio={paired(cpus):.3f}")


if __name__ == "__main__":
    main()
