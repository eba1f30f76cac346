"""The Game of 24 benchmark's recordings: loading, the billed replay model per puzzle.

Part of :mod:`budget_graph.bench.game24`: which records a puzzle's replay model serves,
and how a request the recording never saw is classified for billing
(:mod:`budget_graph.bench.billing`).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from langchain_core.messages import BaseMessage

from budget_graph.bench.billing import BilledReplayChatModel, CompletionMeans
from budget_graph.replay import ReplayRecord, ReplayStore, load_records, request_key
from budget_graph.tasks.base import Item
from budget_graph.tasks.game24 import Game24Task

__all__ = ["RECORDINGS", "Recording", "classify", "load_recording", "replay_model"]

RECORDINGS: tuple[str, ...] = ("game24_tot", "game24_cot")
"""The shipped recordings the benchmark replays by default."""


@dataclass(frozen=True)
class Recording:
    """The records of one benchmark run, indexed the way the methods ask for them."""

    propose: dict[str, tuple[ReplayRecord, ...]]
    values: dict[str, ReplayRecord]
    cot: tuple[ReplayRecord, ...]
    means: CompletionMeans
    judged_final_states: bool = False
    """The log's judge scored four-step states (see ``budget-graph convert --final-states``)."""

    @classmethod
    def load(cls, sources: Sequence[str | Path]) -> Recording:
        """Load shipped dataset names or JSONL(.gz) paths."""
        propose: dict[str, list[ReplayRecord]] = defaultdict(list)
        values: dict[str, ReplayRecord] = {}
        cot: list[ReplayRecord] = []
        every: list[ReplayRecord] = []
        for src in sources:
            for rec in load_records(src):
                every.append(rec)
                if rec.kind == "value":
                    values.setdefault(rec.key, rec)
                elif rec.kind == "cot":
                    cot.append(rec)
                else:
                    propose[rec.item_id].append(rec)
        search = [r for r in every if r.kind != "cot"]
        return cls(
            propose={k: tuple(v) for k, v in propose.items()},
            values=values,
            cot=tuple(cot),
            means=CompletionMeans.from_records(search or every),
            judged_final_states=any(
                r.provenance.get("final_states") == "judged" for r in values.values()
            ),
        )

    def cap(self, kind: str, default: int = 1000) -> int:
        """The per-request output cap the recording was made with (its ``max_tokens``)."""
        recs = self.cot if kind == "cot" else [r for rs in self.propose.values() for r in rs]
        caps = [int(r.request["max_tokens"]) for r in recs if r.request.get("max_tokens")]
        return max(caps) if caps else default


@functools.cache
def load_recording(sources: tuple[str, ...]) -> Recording:
    """The recording of these sources, loaded once per process."""
    return Recording.load(sources)


def classify(messages: Sequence[BaseMessage]) -> tuple[str | None, int | None]:
    """Kind and ToT step of a Game of 24 request (for billing a miss)."""
    text = str(messages[-1].content) if messages else ""
    prompts = Game24Task().prompts
    if text.startswith(prompts["value_last_step"].split("{input}")[0]):
        return "value", 3
    if text.startswith(prompts["value"].split("{input}")[0]):
        return "value", 3 - len(text.rstrip().split("\n")[-1].split())
    if text.startswith(prompts["propose"].split("{input}")[0]):
        numbers = text.split("Input: ")[-1].split("\n")[0].split()
        return "propose", 4 - len(numbers)
    if "Steps:" in text:
        return "propose", 3
    return None, None


def replay_model(
    item: Item, recording: Recording | None = None, task: Game24Task | None = None
) -> BilledReplayChatModel:
    """A billed replay model serving ``item``'s recorded proposals and the run's judgements."""
    rec = recording or load_recording(RECORDINGS)
    task = task or Game24Task()
    mine = rec.propose.get(item.id, ())
    wanted: dict[str, ReplayRecord] = {}
    for r in mine:
        state = str(r.meta.get("state", ""))
        for completion in r.completions:
            for child in task.parse_proposals(item, state, completion):
                key = request_key([{"role": "user", "content": task.value_prompt(item, child)}])
                if key in rec.values:
                    wanted[key] = rec.values[key]
    store = ReplayStore([], records=(*mine, *wanted.values()))
    return BilledReplayChatModel(store=store, means=rec.means, classify=classify)
