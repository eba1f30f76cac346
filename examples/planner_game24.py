"""Budget-aware tree search on a Game of 24 puzzle, on recorded GPT-4 outputs (no API key).

Needs: ``pip install -e '.[bench]'``.

The replay model answers each exact request with the completion GPT-4 gave in the
Tree-of-Thoughts run; a state the recording never expanded is a typed "not recorded"
outcome (the node is marked unexpandable), never a made-up answer.

Run: ``python examples/planner_game24.py [budget_tokens]`` (default 20,000 tokens).
"""

from __future__ import annotations

import sys

try:
    from budget_graph import Budget
    from budget_graph.bench.game24 import game24_reward, replay_model
    from budget_graph.nodes import BestFirst, JudgeValue, RewardValue, ValueCache, VerifierValue
    from budget_graph.planner import build_planner
    from budget_graph.tasks.game24 import VALUE_MAP, Game24Task
except ImportError as exc:
    sys.exit(f"planner_game24.py needs {exc.name}: pip install -e '.[bench]'")

DEFAULT_BUDGET = 20_000
"""Tokens per run when none are given (the puzzle is solved with about 12,500)."""


def main(budget_tokens: int = DEFAULT_BUDGET) -> dict:
    """Solve puzzle 901 ("1 2 4 7") under ``budget_tokens`` and print what happened."""
    task = Game24Task()
    item = next(i for i in task.items() if i.id == "901")
    model = replay_model(item)  # the puzzle's recorded proposals and the run's judgements
    value = (
        VerifierValue(task)  # a verified answer needs no judge
        | RewardValue(game24_reward)  # one or two numbers left: decided by arithmetic
        | JudgeValue(model, task, samples=3, cache=ValueCache())  # otherwise ask GPT-4
    )
    app = build_planner(
        model,
        task=task,
        budget=Budget(max_tokens=budget_tokens),
        value=value,
        policy=BestFirst(expand_at=VALUE_MAP["sure"]),
        lazy_value_at=VALUE_MAP["sure"],
    )
    out = app.invoke({"item": item})
    meter = app.last_meter
    print(f"puzzle: {item.input}")
    print("path:\n  " + "  ".join(out["path"]))
    print(f"answer: {out['answer']}  solved: {out['solved']}  stop_reason: {out['stop_reason']}")
    print(
        f"spent {out['spend'].total_tokens} of {budget_tokens} tokens "
        f"({out['spend'].calls} calls, {len(out['tree'])} tree nodes), "
        f"overshoot={max(meter.spent - budget_tokens, 0)}"
    )
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_BUDGET)
