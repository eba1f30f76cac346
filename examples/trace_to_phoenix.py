"""Trace a budgeted planner run into Arize Phoenix and see where the tokens went.

Start Phoenix first (``pip install arize-phoenix && phoenix serve``), then run
``python examples/trace_to_phoenix.py [endpoint] [budget_tokens]``; the endpoint defaults
to ``$PHOENIX_COLLECTOR_ENDPOINT`` or ``http://127.0.0.1:6006``. Open the project
``budget-graph`` in the Phoenix UI: one trace per run, node spans (estimate, expand,
value) with their rolled-up ``budget.usage.*``, LLM-call spans with ``gen_ai.usage.*``
and the budget around each call (``budget.limit/spent/remaining/reserved``).
Runs on recorded GPT-4 outputs (the replay): no API key, no network beyond Phoenix.
"""

from __future__ import annotations

import os
import sys

from budget_graph import Budget
from budget_graph.planner import build_planner
from budget_graph.replay import ReplayChatModel
from budget_graph.tasks.game24 import Game24Task
from budget_graph.telemetry import instrument
from budget_graph.telemetry.export import otlp_tracer_provider


def main(
    endpoint: str | None = None, budget_tokens: int = 6_000, project: str = "budget-graph"
) -> dict:
    """Solve one Game of 24 puzzle under ``budget_tokens``, exporting spans to Phoenix."""
    base = endpoint or os.environ.get("PHOENIX_COLLECTOR_ENDPOINT") or "http://127.0.0.1:6006"
    provider = otlp_tracer_provider(f"{base.rstrip('/')}/v1/traces", project=project)
    handle = instrument(tracer_provider=provider)
    try:
        task = Game24Task()
        app = build_planner(
            ReplayChatModel(model_name="gpt-4"),
            task=task,
            budget=Budget(max_tokens=budget_tokens),
            breadth=5,
        )
        out = app.invoke({"item": task.items()[0]})
    finally:
        handle.uninstrument()
        provider.shutdown()  # sends the last batch
    spend = out["spend"]
    print(f"stop_reason={out['stop_reason']} answer={out['answer']!r}")
    print(f"spent {spend.units} of {budget_tokens} tokens in {spend.calls} calls "
          f"({spend.output_tokens} generated); per node:")
    for node, usage in sorted(spend.by_node.items()):
        print(f"  {node:<10} {usage.calls:>3} calls {usage.units:>6} tokens")
    print(f"see {base} (project {project!r})")
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else None, int(args[1]) if len(args) > 1 else 6_000)
