"""The date benchmark's recordings: whole-chain samples indexed by their request.

Part of :mod:`budget_graph.bench.date`: how many chains each question has recorded, their
token counts (the replay's own counts), and the per-chain cap a recording implies.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from budget_graph.accounting import count_tokens
from budget_graph.replay import load_records, request_key
from budget_graph.tasks.base import Item, SampledTask

__all__ = ["RECORDINGS", "Recording", "load_recording"]

RECORDINGS: tuple[str, ...] = ("date_ltm",)
"""The shipped recording the benchmark replays by default."""

_DEFAULT_SAMPLES = 40


@dataclass(frozen=True)
class Recording:
    """The recorded chains of a date-style run, indexed by request key."""

    samples: dict[str, int]
    """Recorded completions per request key (records with the same key queue up)."""
    generated: dict[str, tuple[int, ...]]
    """Each request's completion tokens, in recorded order."""
    majority: dict[str, str]
    """The recorded majority answer per request key, where the recording has one."""
    cap: int
    """Per-chain output cap: the longest recorded completion, in tokens."""
    model: str
    """The recorded model (selects the tokenizer)."""

    @classmethod
    def load(cls, sources: Sequence[str | Path]) -> Recording:
        """Load shipped dataset names or JSONL(.gz) paths."""
        generated: dict[str, list[int]] = {}
        majority: dict[str, str] = {}
        model = "gpt-4"
        for src in sources:
            for rec in load_records(src):
                model = rec.model
                tokens = [count_tokens(c, model=rec.model) for c in rec.completions]
                generated.setdefault(rec.key, []).extend(tokens)
                if rec.meta.get("majority_answer") is not None:
                    majority.setdefault(rec.key, str(rec.meta["majority_answer"]))
        longest = max((t for ts in generated.values() for t in ts), default=0)
        return cls(
            samples={k: len(v) for k, v in generated.items()},
            generated={k: tuple(v) for k, v in generated.items()},
            majority=majority,
            cap=max(longest, 1),
            model=model,
        )

    def key(self, task: SampledTask, item: Item) -> str:
        """The request key of ``item``'s chain prompt."""
        return request_key([{"role": "user", "content": task.cot_prompt(item)}])

    def per_question(self, task: SampledTask, items: Sequence[Item]) -> int:
        """Samples every question can draw: the fewest any of ``items`` has recorded.

        Raises:
            ValueError: Some items have no recorded request (the message names them).

        """
        missing = [i.id for i in items if self.key(task, i) not in self.samples]
        if missing:
            raise ValueError(
                f"{len(missing)} of {len(items)} items have no recorded request for the "
                f"task's prompt (ids {missing[:5]}{' ...' if len(missing) > 5 else ''}): "
                "the recording must hold each item's cot_prompt"
            )
        return min((self.samples[self.key(task, i)] for i in items), default=_DEFAULT_SAMPLES)


@functools.cache
def load_recording(sources: tuple[str, ...]) -> Recording:
    """The recording of these sources, loaded once per process."""
    return Recording.load(sources)
