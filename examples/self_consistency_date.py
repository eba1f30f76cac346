"""Budget-aware self-consistency on date understanding, with anytime answers and early stops.

Needs: the core install (``pip install -e .``; ``[bench]`` covers it).

Samples least-to-most reasoning chains for a few BIG-bench date questions from the
recorded code-davinci-002 outputs (no API key: the replay model answers each request
with the next recorded chain and bills its real token counts), votes, and stops when
Adaptive-Consistency is confident or the next batch no longer fits the budget.
Swap ``ReplayChatModel`` for ``ChatOpenAI(...)`` (or the replay server:
``budget-graph serve-replay`` + ``ChatOpenAI(base_url=...)``) to run it over HTTP.

    python examples/self_consistency_date.py
"""

from __future__ import annotations

import sys

try:
    from budget_graph import Budget, add_observer
    from budget_graph.consistency import build_self_consistency
    from budget_graph.replay import ReplayChatModel
    from budget_graph.stopping import AdaptiveConsistency, FixedSamples
    from budget_graph.tasks.date import DateTask
except ImportError as exc:
    sys.exit(f"self_consistency_date.py needs {exc.name}: pip install -e '.[bench]'")

THRESHOLD = 0.95


def explain(rule: str, statistic: float | None) -> str:
    """Why sampling stopped, in words (the event's ``statistic`` depends on the rule)."""
    if rule == "budget":
        return (
            f"the next chain no longer fits: {statistic:,.0f} tokens left, less than "
            "its prompt plus a chain's output"
        )
    if rule.startswith("adaptive_consistency"):
        return (
            f"Adaptive-Consistency: P(the leading answer stays ahead) = {statistic:.3f} "
            f"> {THRESHOLD}"
        )
    return f"rule {rule} fired (statistic {statistic})"


class PrintEarlyStops:
    """Prints the ``budget.early_stop`` events (telemetry turns them into span events)."""

    def event(self, name: str, attributes: dict) -> None:
        if name == "budget.early_stop":
            print(f"    stopped sampling: {explain(attributes['rule'], attributes['statistic'])}")


def main() -> None:
    task = DateTask()
    llm = ReplayChatModel(datasets=["date_ltm"])
    add_observer(PrintEarlyStops())
    for budget in (1_800, 4_000):
        app = build_self_consistency(
            llm,
            task=task,
            budget=Budget(max_tokens=budget),  # prompt + generated tokens per question
            stop=AdaptiveConsistency(THRESHOLD) | FixedSamples(40),
            batch_size=8,  # at most 8 chains per request (the provider's n)
            max_tokens=256,  # per chain
        )
        print(f"budget {budget:,} tokens per question")
        llm.replay_store.reset()
        for item in [task.items()[i] for i in (0, 12, 123)]:
            out = app.invoke({"item": item})
            spend = out["spend"]
            verdict = "correct" if task.is_correct(item, out["answer"]) else "wrong"
            n = len(out["samples"])
            print(
                f"  q{item.id}: answer {out['answer']} ({verdict}, gold {item.gold}); "
                f"{n} chain{'s' if n != 1 else ''} sampled, vote confidence "
                f"{out['confidence']:.3f}, stop_reason={out['stop_reason']}\n"
                f"    spent {spend.input_tokens:,} prompt + {spend.output_tokens:,} generated "
                f"= {spend.units:,} of {budget:,} tokens"
            )


if __name__ == "__main__":
    main()
