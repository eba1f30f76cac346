"""Budget-aware self-consistency on date understanding, with anytime answers and early stops.

Samples least-to-most reasoning chains for a few BIG-bench date questions from the
recorded code-davinci-002 outputs (no API key: the replay model answers each request
with the next recorded chain and bills its real token counts), votes, and stops when
Adaptive-Consistency is confident or the next batch no longer fits the budget.
Swap ``ReplayChatModel`` for ``ChatOpenAI(...)`` (or the replay server:
``budget-graph serve-replay`` + ``ChatOpenAI(base_url=...)``) to run it over HTTP.

    python examples/self_consistency_date.py
"""

from __future__ import annotations

from budget_graph import Budget
from budget_graph._internal import observe
from budget_graph.consistency import build_self_consistency
from budget_graph.replay import ReplayChatModel
from budget_graph.stopping import AdaptiveConsistency, FixedSamples
from budget_graph.tasks.date import DateTask


class PrintEarlyStops:
    """Prints the ``budget.early_stop`` events (telemetry turns them into span events)."""

    def event(self, name: str, attributes: dict) -> None:
        if name == "budget.early_stop":
            rule, statistic = attributes["rule"], attributes["statistic"]
            print(f"    event {name}: rule={rule} statistic={statistic}")


def main() -> None:
    task = DateTask()
    llm = ReplayChatModel(datasets=["date_ltm"])
    observe.add_observer(PrintEarlyStops())
    for budget in (1_800, 4_000):
        app = build_self_consistency(
            llm,
            task=task,
            budget=Budget(max_tokens=budget),  # prompt + generated tokens per question
            stop=AdaptiveConsistency(0.95) | FixedSamples(40),
            batch_size=8,  # at most 8 chains per request (the provider's n)
            max_tokens=256,  # per chain
        )
        print(f"budget {budget:,} tokens per question")
        llm.replay_store.reset()
        for item in [task.items()[i] for i in (0, 12, 123)]:
            out = app.invoke({"item": item})
            spend = out["spend"]
            verdict = "correct" if task.is_correct(item, out["answer"]) else "wrong"
            print(
                f"  q{item.id}: {out['answer']} ({verdict}, gold {item.gold}) "
                f"confidence {out['confidence']:.3f} after {len(out['samples'])} samples; "
                f"stop_reason={out['stop_reason']}; spent {spend.input_tokens:,} prompt + "
                f"{spend.output_tokens:,} generated = {spend.units:,} of {budget:,}"
            )


if __name__ == "__main__":
    main()
