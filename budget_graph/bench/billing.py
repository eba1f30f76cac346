"""Bill every replayed request: an unrecorded one costs an estimate instead of nothing.

A replay answers a request it never saw with a typed ``NotRecordedError`` and never makes
up an answer. Left at that, a search could probe the recording for free ("was this state
expanded?"). In a benchmark the miss is billed in the loop, through the same budgeted call
lifecycle as a real call: its exact prompt tokens plus the mean recorded completion of the
same kind of request at the same step (``n`` times, each at most the call's clamped
``max_tokens``), marked estimated. The request's branch is dead (nothing comes back).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from budget_graph.accounting import count_messages, encoding_for_model
from budget_graph.budget import Usage
from budget_graph.replay import NotRecordedError, ReplayChatModel, ReplayRecord

__all__ = [
    "BilledReplayChatModel",
    "Classifier",
    "CompletionMeans",
    "UnrecordedTally",
]

Classifier = Callable[[Sequence[BaseMessage]], tuple[str | None, int | None]]
"""Says which kind of request (``"propose"``, ``"value"``...) and at which step a prompt is;
``None`` for what it cannot tell (the estimate then falls back to coarser means)."""


@dataclass(frozen=True)
class CompletionMeans:
    """Mean recorded completion tokens per sample, by (kind, step), by kind, and overall."""

    by_step: Mapping[tuple[str, int], float]
    by_kind: Mapping[str, float]
    overall: float
    model: str = "gpt-4"

    @classmethod
    def from_records(cls, records: Iterable[ReplayRecord]) -> CompletionMeans:
        """Means over every recorded completion (``meta.step`` gives the step, if any)."""
        step_sum: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        kind_sum: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        total = [0, 0]
        model = "gpt-4"
        for rec in records:
            model = rec.model
            enc = encoding_for_model(rec.model)
            step = rec.meta.get("step")
            for text in rec.completions:
                n = len(enc.encode(text, disallowed_special=()))
                for acc in (kind_sum[rec.kind], total) + (
                    (step_sum[(rec.kind, int(step))],) if isinstance(step, int) else ()
                ):
                    acc[0] += n
                    acc[1] += 1
        return cls(
            by_step={k: s / c for k, (s, c) in step_sum.items() if c},
            by_kind={k: s / c for k, (s, c) in kind_sum.items() if c},
            overall=total[0] / total[1] if total[1] else 0.0,
            model=model,
        )

    def mean(self, kind: str | None, step: int | None) -> float:
        """The most specific mean known for (kind, step)."""
        if kind is not None and step is not None and (kind, step) in self.by_step:
            return self.by_step[(kind, step)]
        if kind is not None and kind in self.by_kind:
            return self.by_kind[kind]
        return self.overall


class UnrecordedTally:
    """What a billed replay model charged for misses (thread-safe counters)."""

    def __init__(self) -> None:
        """Zero counters."""
        self.requests = 0
        """Unrecorded requests billed."""
        self.prompt_tokens = 0
        self.completion_tokens = 0
        """Estimated completion tokens billed (the means)."""
        self._lock = threading.Lock()

    def add(self, usage: Usage) -> None:
        """Count one billed miss."""
        with self._lock:
            self.requests += 1
            self.prompt_tokens += usage.input_tokens
            self.completion_tokens += usage.output_tokens

    @property
    def tokens(self) -> int:
        """Prompt plus estimated completion tokens billed for misses."""
        return self.prompt_tokens + self.completion_tokens


class BilledReplayChatModel(ReplayChatModel):
    """A :class:`~budget_graph.replay.ReplayChatModel` whose misses are billed, not free.

    On a request the recording never saw it still raises ``NotRecordedError`` (nothing is
    made up), with ``billed_usage`` set: the request's exact prompt tokens plus, per
    requested sample, the mean recorded completion of that kind of request at that step
    (``classify`` tells which), cut at the call's ``max_tokens``. A budgeted caller
    commits that usage against its meter, marked estimated; ``tally`` adds it up.
    """

    means: CompletionMeans = Field(exclude=True)
    classify: Classifier | None = Field(default=None, exclude=True)
    tally: UnrecordedTally = Field(default_factory=UnrecordedTally, exclude=True)

    def bill(self, messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]) -> Usage:
        """The usage an unrecorded request is billed."""
        kind, step = self.classify(messages) if self.classify is not None else (None, None)
        per_sample = round(self.means.mean(kind, step))
        cap = kwargs.get("max_tokens", kwargs.get("max_completion_tokens", self.max_tokens))
        if cap is not None:
            per_sample = min(per_sample, int(cap))
        n = int(kwargs.get("n", self.n))
        prompt = count_messages(list(messages), model=self.means.model)
        return Usage(input_tokens=prompt, output_tokens=n * per_sample, calls=1, estimated_calls=1)

    def _billed(
        self, exc: NotRecordedError, messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]
    ) -> NotRecordedError:
        usage = self.bill(messages, kwargs)
        exc.billed_usage = usage  # type: ignore[attr-defined]
        self.tally.add(usage)
        return exc

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        try:
            return super()._generate(messages, stop, run_manager, **kwargs)
        except NotRecordedError as exc:
            raise self._billed(exc, messages, kwargs) from None

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        try:
            return await super()._agenerate(messages, stop, run_manager, **kwargs)
        except NotRecordedError as exc:
            raise self._billed(exc, messages, kwargs) from None
