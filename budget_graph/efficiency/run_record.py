"""The run record: one row per (task, item, method, budget) run, and the span attributes it maps to.

:class:`RunRecord` is what every efficiency metric, report and plot consumes;
:mod:`budget_graph.efficiency.records` reads and writes it (JSONL, final graph states).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from budget_graph.errors import BudgetError
from budget_graph.telemetry import attributes as _gen_ai

__all__ = [
    "ATTR_BUDGET",
    "ATTR_CORRECT",
    "ATTR_INPUT_TOKENS",
    "ATTR_ITEM",
    "ATTR_METHOD",
    "ATTR_OUTPUT_TOKENS",
    "ATTR_REASONING_TOKENS",
    "ATTR_RUN_ID",
    "ATTR_SPAN_KIND",
    "ATTR_STOP_REASON",
    "ATTR_TASK",
    "RecordsError",
    "RunRecord",
    "SPAN_KIND_LLM",
    "ScopeRecord",
    "TOKEN_KINDS",
    "token_count",
]


TOKEN_KINDS = ("visible", "generated", "reasoning", "prompt", "total")
"""Token kinds T may count: ``visible`` (generated minus hidden reasoning: what the
definition of T counts), ``generated`` (all output tokens), ``reasoning`` (hidden
reasoning only), ``prompt`` and ``total`` (prompt + generated)."""


def token_count(kind: str, prompt: int, generated: int, reasoning: int) -> int:
    """Tokens of ``kind`` from a run's prompt, generated and reasoning counts.

    Raises:
        ValueError: Unknown ``kind``.

    """
    if kind == "visible":
        return generated - reasoning
    if kind == "generated":
        return generated
    if kind == "reasoning":
        return reasoning
    if kind == "prompt":
        return prompt
    if kind == "total":
        return prompt + generated
    raise ValueError(f"Invalid token kind: {kind!r}. Must be one of {', '.join(TOKEN_KINDS)}")


# Span attributes read by spans.from_spans. Usage follows the OTel GenAI semantic conventions;
# the run's identity lives on any span of the run (usually the run's root span).
ATTR_INPUT_TOKENS = _gen_ai.GEN_AI_USAGE_INPUT_TOKENS
"""``gen_ai.usage.input_tokens``: prompt tokens of one LLM call (or a roll-up)."""
ATTR_OUTPUT_TOKENS = _gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
"""``gen_ai.usage.output_tokens``: generated tokens of one LLM call (or a roll-up)."""
ATTR_REASONING_TOKENS = _gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
"""``gen_ai.usage.reasoning.output_tokens``: the reasoning part of the output tokens."""
ATTR_SPAN_KIND = "budget_graph.span.kind"
"""Which of budget_graph's spans this is (``"llm"``, ``"node"``, ``"run"``)."""
SPAN_KIND_LLM = "llm"
""":data:`ATTR_SPAN_KIND` of an LLM-call span."""
ATTR_STOP_REASON = "budget.stop_reason"
"""Why the run ended (set on the terminator span)."""
ATTR_BUDGET = "budget.limit"
"""The run's budget limit in tokens."""
ATTR_RUN_ID = "budget_graph.run.id"
"""Groups the spans of one run; without it spans are grouped by trace id."""
ATTR_TASK = "budget_graph.task"
"""Task name (``"game24"``, ``"date"``, ...)."""
ATTR_METHOD = "budget_graph.method"
"""Method label of the run (``"tot-bfs"``, ``"sc-window5"``, ...)."""
ATTR_ITEM = "budget_graph.item"
"""Id of the problem the run solved."""
ATTR_CORRECT = "budget_graph.correct"
"""Whether the run's answer was correct (bool)."""


class RecordsError(BudgetError, ValueError):
    """A record could not be read or built; the message names the line and field.

    Attributes:
        path: File being read, if any.
        line: 1-based line number in the file, if any.
        field: Name of the offending field, if known.

    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        super().__init__(message)


class ScopeRecord(BaseModel):
    """One level of nested budgets within a run: its name, limit and the tokens spent in it.

    A level's tokens are those of the calls made within it, its nested levels' included
    (as its meter counts them), so the outermost level's are the run's.

    Example:
        >>> s = ScopeRecord(path=["request", "writer"], budget=300, prompt_tokens=120,
        ...                 generated_tokens=60, calls=2, stop_reason="budget")
        >>> s.scope, s.tokens("total")
        ('writer', 180)

    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: list[str] = Field(min_length=1)
    """Level names from the run's outermost level down to this one (``budget.scope``
    after ``budget.ancestors.scope`` on spans)."""
    budget: int | None = Field(default=None, gt=0)
    """The level's limit in meter units, when a span carried it."""
    prompt_tokens: int = Field(default=0, ge=0)
    """Prompt tokens of the calls made within the level."""
    generated_tokens: int = Field(default=0, ge=0)
    """Generated tokens of the calls made within the level, hidden reasoning included."""
    reasoning_tokens: int = Field(default=0, ge=0)
    """Hidden reasoning part of ``generated_tokens``."""
    calls: int = Field(default=0, ge=0)
    """LLM calls made within the level."""
    stop_reason: str | None = None
    """Why the level stopped, when it stopped itself (e.g. ``"budget"``: its own limit)."""

    @property
    def scope(self) -> str:
        """The level's own name (the last of ``path``)."""
        return self.path[-1]

    def tokens(self, kind: str = "generated") -> int:
        """Tokens of one kind (see :data:`TOKEN_KINDS`)."""
        return token_count(kind, self.prompt_tokens, self.generated_tokens, self.reasoning_tokens)


class RunRecord(BaseModel):
    """One run of one method on one item.

    Example:
        >>> r = RunRecord(task="date", item="q1", method="sc-fixed5", correct=True,
        ...               prompt_tokens=900, generated_tokens=300, calls=5)
        >>> r.total_tokens
        1200

    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str = Field(min_length=1)
    """Task name."""
    item: str
    """Problem id within the task."""
    method: str = Field(min_length=1)
    """Method label; one row of a report per (task, method, budget)."""
    budget: int | None = Field(default=None, gt=0)
    """Budget limit in tokens; ``None`` for an unbudgeted method."""
    correct: bool
    """S: whether the final answer was correct."""
    prompt_tokens: int = Field(default=0, ge=0)
    """Prompt (input) tokens over all calls."""
    generated_tokens: int = Field(default=0, ge=0)
    """Generated (output) tokens over all calls, hidden reasoning included."""
    reasoning_tokens: int = Field(default=0, ge=0)
    """Hidden reasoning part of ``generated_tokens``; T counts the rest (the visible tokens)."""
    calls: int = Field(default=0, ge=0)
    """LLM calls made."""
    stop_reason: str | None = None
    """Why the run ended (``"budget"``, ``"converged"``, ``"solved"``, ...)."""
    answer: str | None = None
    """Final answer, if kept."""
    anytime: list[tuple[int, float]] = Field(default_factory=list)
    """Anytime trace: (generated tokens spent, quality of the run's answer at that point),
    tokens non-decreasing. Curves take the running maximum (the best answer so far)."""
    anytime_usage: list[tuple[int, int]] = Field(default_factory=list)
    """(prompt tokens, reasoning tokens) spent at each ``anytime`` point, so a trace can be
    read in any token kind; empty when only generated tokens were traced."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Free-form extras (e.g. ``{"samples": 5}``); must be JSON-serialisable."""
    scope: str | None = None
    """The name of the run's own budget level (``with_budget(..., name=)``), if known."""
    scopes: list[ScopeRecord] = Field(default_factory=list)
    """With nested budgets, every level of the run, outermost (the run's own) first, then
    depth first; empty for a run with one level (records written before it load so)."""

    @field_validator("anytime")
    @classmethod
    def _check_trace(cls, trace: list[tuple[int, float]]) -> list[tuple[int, float]]:
        last = 0
        for i, (tokens, quality) in enumerate(trace):
            if tokens < 0 or tokens < last:
                raise ValueError(
                    f"anytime[{i}] tokens must be >= 0 and non-decreasing (got {tokens} "
                    f"after {last})"
                )
            if not math.isfinite(quality):
                raise ValueError(f"anytime[{i}] quality must be finite (got {quality})")
            last = tokens
        return trace

    @field_validator("anytime_usage")
    @classmethod
    def _check_usage(cls, usage: list[tuple[int, int]]) -> list[tuple[int, int]]:
        last = (0, 0)
        for i, (prompt, reasoning) in enumerate(usage):
            if prompt < last[0] or reasoning < last[1] or reasoning < 0:
                raise ValueError(
                    f"anytime_usage[{i}] must be >= 0 and non-decreasing (got "
                    f"{(prompt, reasoning)} after {last})"
                )
            last = (prompt, reasoning)
        return usage

    @model_validator(mode="after")
    def _check_lengths(self) -> RunRecord:
        if self.reasoning_tokens > self.generated_tokens:
            raise ValueError(
                f"reasoning_tokens ({self.reasoning_tokens}) must be <= generated_tokens "
                f"({self.generated_tokens})"
            )
        if self.scopes and self.scope is not None and self.scopes[0].path != [self.scope]:
            raise ValueError(
                f"scopes[0] must be the run's own level {[self.scope]} (got {self.scopes[0].path})"
            )
        if self.anytime_usage and len(self.anytime_usage) != len(self.anytime):
            raise ValueError(
                f"anytime_usage must have one entry per anytime point (got "
                f"{len(self.anytime_usage)} for {len(self.anytime)})"
            )
        return self

    @property
    def total_tokens(self) -> int:
        """Prompt plus generated tokens."""
        return self.prompt_tokens + self.generated_tokens

    @property
    def visible_tokens(self) -> int:
        """Generated tokens the model showed: generated minus hidden reasoning."""
        return self.generated_tokens - self.reasoning_tokens

    def tokens(self, kind: str = "generated") -> int:
        """Tokens of one kind (see :data:`TOKEN_KINDS`)."""
        return token_count(kind, self.prompt_tokens, self.generated_tokens, self.reasoning_tokens)

    def trace(self, kind: str = "generated") -> list[tuple[int, float]] | None:
        """The anytime trace as ``(tokens of kind, quality)``; ``None`` if it cannot be read so.

        A trace records generated tokens; other kinds need ``anytime_usage``, unless
        the part they add is zero for the whole run (no reasoning tokens: visible =
        generated; no prompt tokens: total = generated). ``[]`` for a run without a trace.
        """
        token_count(kind, 0, 0, 0)  # validates kind
        if kind == "generated" or not self.anytime:
            return list(self.anytime)
        if self.anytime_usage:
            return [
                (token_count(kind, p, g, r), q)
                for (g, q), (p, r) in zip(self.anytime, self.anytime_usage, strict=True)
            ]
        # Without usage per point a kind is still exact when the part it adds is zero.
        if kind in ("visible", "reasoning") and self.reasoning_tokens == 0:
            return [(g if kind == "visible" else 0, q) for g, q in self.anytime]
        if kind in ("prompt", "total") and self.prompt_tokens == 0:
            return [(0 if kind == "prompt" else g, q) for g, q in self.anytime]
        return None
