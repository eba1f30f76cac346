"""Lookup of recorded completions with per-request cursors; shared by the chat model and server."""

from __future__ import annotations

import difflib
import functools
import json
import random
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import BaseMessage

from budget_graph.accounting import count_messages, encoding_for_model
from budget_graph.replay.format import (
    DATASETS,
    ReplayError,
    ReplayRecord,
    load_records,
    request_key,
)

__all__ = [
    "NotRecordedError",
    "ReplayChoice",
    "ReplayError",
    "ReplayExhaustedError",
    "ReplayResponse",
    "ReplayStore",
    "truncate",
]


class NotRecordedError(ReplayError):
    """The recording never saw this request; replay never makes up an answer.

    Attributes:
        key: The request's lookup key (its normalised messages).
        task: Task of the closest recorded request (``None`` if the store is empty).
        closest: The closest recorded key (by difflib), or ``None``.
        similarity: difflib ratio between ``key`` and ``closest`` (0..1).

    """

    def __init__(
        self, *, key: str, task: str | None, closest: str | None, similarity: float
    ) -> None:
        self.key = key
        self.task = task
        self.closest = closest
        self.similarity = similarity
        where = (
            f"; closest recorded request (task {task!r}, similarity {similarity:.3f}): "
            f"{_preview(closest)}"
            if closest
            else "; the store is empty"
        )
        super().__init__(f"Request not recorded: {_preview(key)}{where}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild_not_recorded, (self.key, self.task, self.closest, self.similarity))


def _rebuild_not_recorded(
    key: str, task: str | None, closest: str | None, similarity: float
) -> NotRecordedError:
    return NotRecordedError(key=key, task=task, closest=closest, similarity=similarity)


class ReplayExhaustedError(ReplayError):
    """All recorded completions of a request were served and ``on_exhausted="error"``.

    Attributes:
        key: The request's lookup key.
        task: The recorded task.
        recorded: How many completions were recorded for it.
        requested: How many the request asked for beyond the cursor.

    """

    def __init__(self, *, key: str, task: str, recorded: int, requested: int) -> None:
        self.key, self.task, self.recorded, self.requested = key, task, recorded, requested
        super().__init__(
            f"Replay exhausted for task {task!r}: {recorded} completions recorded, "
            f"{requested} more requested: {_preview(key)}"
        )


@functools.cache
def _shipped(name: str) -> tuple[ReplayRecord, ...]:
    # Records are immutable: parse each shipped dataset once per process.
    return tuple(load_records(name))


def _preview(key: str | None, width: int = 160) -> str:
    if key is None:
        return "None"
    try:
        text = " | ".join(f"{r}: {c}" for r, c in json.loads(key))
    except (ValueError, TypeError):
        text = key
    text = text.replace("\n", "\\n")
    if len(text) <= width:
        return repr(text)
    return repr(text[: width // 3] + " ... " + text[-(2 * width) // 3 :])


def truncate(text: str, max_tokens: int | None, *, model: str | None = None) -> tuple[str, str]:
    """``text`` cut at ``max_tokens`` tokens and its finish reason (``"length"`` or ``"stop"``)."""
    if max_tokens is None:
        return text, "stop"
    enc = encoding_for_model(model)
    tokens = enc.encode(text, disallowed_special=())
    if len(tokens) <= max_tokens:
        return text, "stop"
    return enc.decode(tokens[:max_tokens]), "length"  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ReplayChoice:
    """One served completion."""

    text: str
    finish_reason: str
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class ReplayResponse:
    """What one request gets back: its choices and honest usage."""

    choices: tuple[ReplayChoice, ...]
    prompt_tokens: int
    model: str
    task: str
    item_id: str
    kind: str

    @property
    def completion_tokens(self) -> int:
        """Completion tokens over all choices."""
        return sum(c.completion_tokens for c in self.choices)

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


class _Entry:
    __slots__ = ("completions", "cursor", "records")

    def __init__(self) -> None:
        self.records: list[ReplayRecord] = []
        self.completions: list[str] = []
        self.cursor = 0


class ReplayStore:
    """Recorded completions by exact request, served in order with one cursor per request.

    Requests with the same messages share one queue: their recorded completions are
    concatenated in file order (e.g. the propose prompt for the same numbers in several
    puzzles). Each request takes the next ``n``; when the queue runs out it starts over
    (``on_exhausted="cycle"``) or raises ``ReplayExhaustedError``. With ``seed`` set each
    queue is shuffled by a generator seeded by ``(seed, key)``. Thread-safe.

    Args:
        datasets: Shipped dataset names (default: all of ``DATASETS``) or JSONL paths.
        records: Extra records to serve (e.g. hand-built ones in tests).
        seed: ``None`` keeps recorded order; an int shuffles each queue deterministically.
        on_exhausted: ``"cycle"`` (start the queue again) or ``"error"``.

    """

    def __init__(
        self,
        datasets: Iterable[str | Path] | None = None,
        *,
        records: Iterable[ReplayRecord] = (),
        seed: int | None = None,
        on_exhausted: Literal["cycle", "error"] = "cycle",
    ) -> None:
        if on_exhausted not in ("cycle", "error"):
            raise ValueError(f"Invalid on_exhausted: {on_exhausted!r}. Must be 'cycle' or 'error'")
        self.seed = seed
        self.on_exhausted = on_exhausted
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        sources = list(DATASETS if datasets is None else datasets)
        for src in sources:
            self.add(
                _shipped(src) if isinstance(src, str) and src in DATASETS else load_records(src)
            )
        self.add(records)

    def add(self, records: Iterable[ReplayRecord]) -> None:
        """Add records (appended to the queues of their requests)."""
        with self._lock:
            for rec in records:
                entry = self._entries.setdefault(rec.key, _Entry())
                entry.records.append(rec)
                entry.completions.extend(rec.completions)
            if self.seed is not None:
                for key, entry in self._entries.items():
                    entry.completions = [c for r in entry.records for c in r.completions]
                    random.Random(f"{self.seed}:{key}").shuffle(entry.completions)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, messages: object) -> bool:
        if isinstance(messages, str):
            return messages in self._entries
        return request_key(messages) in self._entries  # type: ignore[arg-type]

    def records(self, messages: Sequence[BaseMessage | Mapping[str, Any]]) -> list[ReplayRecord]:
        """The records of a request (empty if never recorded)."""
        entry = self._entries.get(request_key(messages))
        return list(entry.records) if entry else []

    def reset(self) -> None:
        """Rewind every cursor to the start."""
        with self._lock:
            for entry in self._entries.values():
                entry.cursor = 0

    def draw(
        self, messages: Sequence[BaseMessage | Mapping[str, Any]], n: int = 1
    ) -> tuple[ReplayRecord, list[str]]:
        """The next ``n`` recorded completions of a request and its first record.

        Raises:
            NotRecordedError: The request was never recorded.
            ReplayExhaustedError: The queue ran out and ``on_exhausted="error"``.

        """
        if n < 1:
            raise ValueError(f"Invalid n: {n}. Must be >= 1")
        key = request_key(messages)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                raise self.not_recorded(key)
            size = len(entry.completions)
            if entry.cursor + n > size and self.on_exhausted == "error":
                raise ReplayExhaustedError(
                    key=key,
                    task=entry.records[0].task,
                    recorded=size,
                    requested=entry.cursor + n - size,
                )
            out = [entry.completions[(entry.cursor + i) % size] for i in range(n)]
            entry.cursor += n
            if self.on_exhausted == "cycle":
                entry.cursor %= size
        return entry.records[0], out

    def complete(
        self,
        messages: Sequence[BaseMessage | Mapping[str, Any]],
        *,
        n: int = 1,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> ReplayResponse:
        """Serve one request: ``n`` completions cut at ``stop``/``max_tokens``, with usage.

        Prompt tokens are counted on the real request ``messages`` with the recorded model's
        tokenizer and chat framing; completion tokens on each served text.
        """
        record, texts = self.draw(messages, n)
        model = record.model
        enc = encoding_for_model(model)
        choices = []
        for text in texts:
            reason = "stop"
            for s in stop or ():
                if s and s in text:
                    text = text[: text.index(s)]
            text, reason = truncate(text, max_tokens, model=model)
            n_tokens = len(enc.encode(text, disallowed_special=())) if text else 0
            choices.append(ReplayChoice(text, reason, n_tokens))
        return ReplayResponse(
            choices=tuple(choices),
            prompt_tokens=count_messages(list(messages), model=model),  # type: ignore[arg-type]
            model=model,
            task=record.task,
            item_id=record.item_id,
            kind=record.kind,
        )

    def not_recorded(self, key: str) -> NotRecordedError:
        """The error for an unrecorded ``key``, naming the closest recorded request."""
        if not self._entries:
            return NotRecordedError(key=key, task=None, closest=None, similarity=0.0)
        keys = list(self._entries)
        # Prompts share long few-shot prefixes: shortlist by common prefix, then difflib.
        scored = sorted(keys, key=lambda k: -_common_prefix_len(k, key))[:200]
        best, ratio = None, -1.0
        for cand in scored:
            sm = difflib.SequenceMatcher(None, key, cand, autojunk=False)
            if sm.real_quick_ratio() <= ratio or sm.quick_ratio() <= ratio:
                continue
            r = sm.ratio()
            if r > ratio:
                best, ratio = cand, r
        assert best is not None
        task = self._entries[best].records[0].task
        return NotRecordedError(key=key, task=task, closest=best, similarity=ratio)


def _common_prefix_len(a: str, b: str) -> int:
    # Binary search on slice equality: C-speed comparisons, O(log n) of them.
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
