"""Replay fidelity: re-run the recorded Tree-of-Thoughts BFS on Game of 24 from our own code.

Breadth 5, one propose call (n=1) per selected state, one value call (n=3) per new
candidate, value cache across the whole run, a candidate repeated within a step valued 0
without a call: the settings of the recorded run (princeton-nlp/tree-of-thought-llm,
``--method_generate propose --n_generate_sample 1 --n_evaluate_sample 3 --n_select_sample 5``).
Runs it twice: through ``ChatOpenAI`` against the replay HTTP server, and through
``ReplayChatModel`` in process, and compares both with the recorded 69/100 solved,
1,387,936 prompt and 547,859 completion tokens.

    python benchmarks/replay_fidelity.py [--limit N]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from budget_graph.replay import ReplayChatModel, ReplayStore
from budget_graph.replay.server import ReplayServer
from budget_graph.tasks.base import Item
from budget_graph.tasks.game24 import Game24Task

RECORDED_SOLVED = 69
RECORDED_PROMPT = 1_387_936
RECORDED_COMPLETION = 547_859


@dataclass
class Totals:
    solved: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    propose_calls: int = 0
    value_calls: int = 0
    solved_ids: list[str] = field(default_factory=list)

    def add(self, usage: dict[str, Any]) -> None:
        self.prompt_tokens += int(usage["input_tokens"])
        self.completion_tokens += int(usage["output_tokens"])


def bfs(llm: BaseChatModel, task: Game24Task, items: list[Item], *, breadth: int = 5,
        n_value: int = 3) -> Totals:
    totals = Totals()
    cache: dict[str, float] = {}  # value prompt -> value, for the whole run (as recorded)
    for item in items:
        ys = [""]
        for _ in range(task.max_depth):
            new_ys: list[str] = []
            for y in ys:
                msg = llm.invoke([HumanMessage(task.propose_prompt(item, y))])
                totals.add(msg.usage_metadata or {})
                totals.propose_calls += 1
                new_ys += task.parse_proposals(item, y, str(msg.content))
            values: list[float] = []
            local: set[str] = set()
            for y in new_ys:
                if y in local:  # duplicate candidate in this step: value 0, no call
                    values.append(0.0)
                    continue
                prompt = task.value_prompt(item, y)
                if prompt not in cache:
                    res = llm.generate([[HumanMessage(prompt)]], n=n_value)
                    gens = res.generations[0]
                    # Every generation carries the whole call's usage (prompt paid once).
                    totals.add(gens[0].message.usage_metadata or {})  # type: ignore[attr-defined]
                    totals.value_calls += 1
                    cache[prompt] = task.value(item, y, [g.text for g in gens])
                local.add(y)
                values.append(cache[prompt])
            order = sorted(range(len(new_ys)), key=lambda i: values[i], reverse=True)
            ys = [new_ys[i] for i in order[:breadth]]
        if any(task.verify(item, y) for y in ys):
            totals.solved += 1
            totals.solved_ids.append(item.id)
    return totals


def report(name: str, t: Totals, seconds: float) -> None:
    print(f"{name:<22} solved={t.solved} prompt={t.prompt_tokens:,} "
          f"completion={t.completion_tokens:,} propose_calls={t.propose_calls} "
          f"value_calls={t.value_calls} time={seconds:.1f}s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=int, default=None, help="only the first N puzzles")
    args = ap.parse_args(argv)
    task = Game24Task()
    items = list(task.items())[: args.limit]
    datasets = ["game24_tot"]

    from langchain_openai import ChatOpenAI

    with ReplayServer(ReplayStore(datasets)) as server:
        llm = ChatOpenAI(base_url=server.base_url, api_key="replay", model="gpt-4",
                         temperature=0.7, max_retries=0)
        t0 = time.perf_counter()
        http = bfs(llm, task, items)
        report("ChatOpenAI + server", http, time.perf_counter() - t0)
        billed = server.usage()
        print(f"{'server billed':<22} prompt={billed['prompt_tokens']:,} "
              f"completion={billed['completion_tokens']:,} requests={billed['requests']}")

    t0 = time.perf_counter()
    local = bfs(ReplayChatModel(datasets=datasets), task, items)
    report("ReplayChatModel", local, time.perf_counter() - t0)

    identical = (http.solved_ids, http.prompt_tokens, http.completion_tokens) == (
        local.solved_ids, local.prompt_tokens, local.completion_tokens)
    print(f"identical={identical}")
    print(f"recorded               solved={RECORDED_SOLVED} prompt={RECORDED_PROMPT:,} "
          f"completion={RECORDED_COMPLETION:,}")
    print(f"solved={http.solved} prompt_ratio={http.prompt_tokens / RECORDED_PROMPT:.4f} "
          f"completion_ratio={http.completion_tokens / RECORDED_COMPLETION:.4f}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
