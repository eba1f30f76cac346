"""Per-run records: one row per (task, item, method, budget) run, stored as JSONL.

A :class:`RunRecord` is what every efficiency metric, report and plot consumes.
Records come from a graph's final state (:func:`from_state`), from exported
OpenTelemetry spans (:func:`from_spans`), or from a JSONL file
(:func:`read_jsonl`), so users can compute the same report for their own runs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _gen_ai
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from budget_graph.budget import Spend
from budget_graph.errors import BudgetError

__all__ = [
    "ATTR_BUDGET",
    "ATTR_CORRECT",
    "ATTR_INPUT_TOKENS",
    "ATTR_ITEM",
    "ATTR_METHOD",
    "ATTR_OUTPUT_TOKENS",
    "ATTR_REASONING_TOKENS",
    "ATTR_RUN_ID",
    "ATTR_STOP_REASON",
    "ATTR_TASK",
    "RecordsError",
    "RunRecord",
    "from_spans",
    "from_state",
    "read_jsonl",
    "write_jsonl",
]

# Span attributes read by from_spans. Usage follows the OTel GenAI semantic conventions;
# the run's identity lives on any span of the run (usually the run's root span).
ATTR_INPUT_TOKENS = _gen_ai.GEN_AI_USAGE_INPUT_TOKENS
"""``gen_ai.usage.input_tokens``: prompt tokens of one LLM call (or a roll-up)."""
ATTR_OUTPUT_TOKENS = _gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
"""``gen_ai.usage.output_tokens``: generated tokens of one LLM call (or a roll-up)."""
ATTR_REASONING_TOKENS = _gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
"""``gen_ai.usage.reasoning.output_tokens``: the reasoning part of the output tokens."""
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
        self, message: str, *, path: str | None = None, line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        super().__init__(message)


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
    """T: generated (output) tokens over all calls, reasoning included."""
    reasoning_tokens: int = Field(default=0, ge=0)
    """Part of ``generated_tokens`` spent reasoning."""
    calls: int = Field(default=0, ge=0)
    """LLM calls made."""
    stop_reason: str | None = None
    """Why the run ended (``"budget"``, ``"converged"``, ``"solved"``, ...)."""
    answer: str | None = None
    """Final answer, if kept."""
    anytime: list[tuple[int, float]] = Field(default_factory=list)
    """Anytime trace: (tokens spent, quality of the best answer so far), tokens non-decreasing."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Free-form extras (e.g. ``{"samples": 5}``); must be JSON-serialisable."""

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

    @property
    def total_tokens(self) -> int:
        """Prompt plus generated tokens."""
        return self.prompt_tokens + self.generated_tokens

    def tokens(self, kind: str = "generated") -> int:
        """Tokens of one kind: ``"generated"``, ``"prompt"`` or ``"total"``."""
        if kind == "generated":
            return self.generated_tokens
        if kind == "prompt":
            return self.prompt_tokens
        if kind == "total":
            return self.total_tokens
        raise ValueError(f"Invalid token kind: {kind!r}. Must be 'generated', 'prompt' or 'total'")


# ---------------------------------------------------------------- JSONL


def write_jsonl(path: str | os.PathLike[str], records: Iterable[RunRecord]) -> Path:
    """Write records as JSON lines, atomically (temp file then rename).

    A crash mid-write leaves the previous file (or none), never half a file.

    Returns:
        The path written.

    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(record.model_dump_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_jsonl(path: str | os.PathLike[str]) -> list[RunRecord]:
    """Read records from a JSONL file; blank lines are skipped.

    Raises:
        RecordsError: A line is not JSON or not a valid record; the message names the
            file, the 1-based line number and the field.

    """
    records: list[RunRecord] = []
    name = str(path)
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordsError(
                    f"{name}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})",
                    path=name, line=lineno,
                ) from exc
            try:
                records.append(RunRecord.model_validate(data))
            except ValidationError as exc:
                err = exc.errors()[0]
                field = ".".join(str(p) for p in err["loc"]) or "<record>"
                raise RecordsError(
                    f"{name}:{lineno}: invalid field {field!r}: {err['msg']} "
                    f"(got {err.get('input')!r})",
                    path=name, line=lineno, field=field,
                ) from exc
    return records


# ---------------------------------------------------------------- from graph state


def _spend_of(value: Any) -> Spend:
    if isinstance(value, Spend):
        return value
    if isinstance(value, Mapping):
        return Spend(
            input_tokens=int(value.get("input_tokens", 0)),
            output_tokens=int(value.get("output_tokens", 0)),
            reasoning_tokens=int(value.get("reasoning_tokens", 0)),
            calls=int(value.get("calls", 0)),
        )
    raise RecordsError(
        f"state['spend'] must be a Spend (got {type(value).__name__})", field="spend"
    )


def _trace_of(value: Any) -> list[tuple[int, float]]:
    points: list[tuple[int, float]] = []
    for point in value or ():
        if isinstance(point, Mapping):
            points.append((int(point["tokens"]), float(point["quality"])))
        else:
            tokens, quality = point
            points.append((int(tokens), float(quality)))
    return points


def from_state(
    final_state: Mapping[str, Any],
    *,
    task: str,
    item: str,
    method: str,
    correct: bool | Callable[[str | None], bool],
    budget: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> RunRecord:
    """Build a record from a graph's final state.

    Args:
        final_state: The state a graph run returned; needs ``"spend"`` (a
            :class:`~budget_graph.budget.Spend`), optionally ``"answer"``,
            ``"stop_reason"`` and ``"anytime"`` (``[(tokens, quality), ...]``).
        task: Task name.
        item: Item id.
        method: Method label.
        correct: Whether the answer was correct, or a function of the answer saying so.
        budget: The run's budget limit in tokens, if any.
        extra: Extra JSON-serialisable fields.

    Returns:
        The record.

    Raises:
        RecordsError: The state has no ``"spend"``, or a field is invalid.

    Example:
        >>> from budget_graph.budget import Spend
        >>> state = {"spend": Spend(input_tokens=50, output_tokens=20, calls=1),
        ...          "answer": "24", "stop_reason": "solved"}
        >>> from_state(state, task="game24", item="1", method="cot",
        ...            correct=lambda a: a == "24").correct
        True

    """
    if "spend" not in final_state:
        raise RecordsError(
            f"final state has no 'spend' key (keys: {sorted(final_state)})", field="spend"
        )
    spend = _spend_of(final_state["spend"])
    answer = final_state.get("answer")
    answer = None if answer is None else str(answer)
    ok = correct(answer) if callable(correct) else correct
    try:
        return RunRecord(
            task=task, item=item, method=method, budget=budget, correct=bool(ok),
            prompt_tokens=spend.input_tokens, generated_tokens=spend.output_tokens,
            reasoning_tokens=spend.reasoning_tokens, calls=spend.calls,
            stop_reason=final_state.get("stop_reason"), answer=answer,
            anytime=_trace_of(final_state.get("anytime")), extra=dict(extra or {}),
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise RecordsError(
            f"invalid field {field!r}: {err['msg']} (got {err.get('input')!r})", field=field
        ) from exc


# ---------------------------------------------------------------- from spans


def _hex(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int):
        return f"{value:x}"
    text = str(value).lower()
    return text[2:] if text.startswith("0x") else text


def _flatten(attrs: Any, prefix: str = "") -> dict[str, Any]:
    """Attributes as a flat dict, from a mapping, nested mapping or OTLP key/value list."""
    out: dict[str, Any] = {}
    if isinstance(attrs, Sequence) and not isinstance(attrs, str):
        for kv in attrs:  # OTLP JSON: [{"key": k, "value": {"intValue": "3"}}]
            value = next(iter(kv["value"].values()), None) if kv.get("value") else None
            out[prefix + kv["key"]] = value
        return out
    for key, value in (attrs or {}).items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _span_view(span: Any) -> tuple[str | None, str | None, str | None, dict[str, Any]]:
    """(trace id, span id, parent span id, flat attributes) of a ReadableSpan or dict."""
    if isinstance(span, Mapping):
        ctx = span.get("context") or {}
        trace_id = ctx.get("trace_id", span.get("trace_id", span.get("traceId")))
        span_id = ctx.get("span_id", span.get("span_id", span.get("spanId")))
        parent = span.get("parent_id", span.get("parentSpanId"))
        return _hex(trace_id), _hex(span_id), _hex(parent), _flatten(span.get("attributes"))
    ctx = span.context
    parent = span.parent.span_id if span.parent is not None else None
    return (
        _hex(ctx.trace_id), _hex(ctx.span_id), _hex(parent), _flatten(dict(span.attributes or {}))
    )


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def from_spans(
    spans: Iterable[Any], *, task: str | None = None, method: str | None = None
) -> list[RunRecord]:
    """Build one record per run from exported OTel spans.

    Spans are grouped by :data:`ATTR_RUN_ID` (falling back to the trace id). Usage is
    summed over the *leaf usage spans* of a run: spans carrying
    :data:`ATTR_INPUT_TOKENS` or :data:`ATTR_OUTPUT_TOKENS` none of whose descendants
    do. Node and run spans that carry rolled-up usage of their children are thus not
    counted twice; ``calls`` is the number of leaf usage spans. Identity
    (:data:`ATTR_TASK`, :data:`ATTR_METHOD`, :data:`ATTR_ITEM`, :data:`ATTR_BUDGET`,
    :data:`ATTR_CORRECT`, :data:`ATTR_STOP_REASON`) is read from whichever span of the
    run carries it; a run without :data:`ATTR_CORRECT` counts as not correct.

    Args:
        spans: ``ReadableSpan`` objects, or dicts as ``ReadableSpan.to_json()`` gives
            (attributes may also be nested mappings or OTLP ``key``/``value`` lists).
        task: Task name for runs whose spans carry none.
        method: Method label for runs whose spans carry none.

    Returns:
        Records in the order runs first appear.

    Raises:
        RecordsError: A run has no task or method and no default was given.

    """
    views = [_span_view(s) for s in spans]
    by_id = {sid: v for v in views if (sid := v[1]) is not None}
    run_of: dict[str | None, str] = {}

    def run_key(view: tuple[str | None, str | None, str | None, dict[str, Any]]) -> str:
        trace_id, span_id, parent, attrs = view
        if ATTR_RUN_ID in attrs:
            return str(attrs[ATTR_RUN_ID])
        if span_id in run_of:
            return run_of[span_id]
        key = run_key(by_id[parent]) if parent in by_id else f"trace:{trace_id}"
        run_of[span_id] = key
        return key

    usage_parents: set[str | None] = set()
    for _, _, parent, attrs in views:
        if ATTR_INPUT_TOKENS in attrs or ATTR_OUTPUT_TOKENS in attrs:
            # Mark every ancestor as having a usage-bearing descendant.
            seen = parent
            while seen is not None and seen not in usage_parents:
                usage_parents.add(seen)
                seen = by_id[seen][2] if seen in by_id else None

    runs: dict[str, dict[str, Any]] = {}
    for view in views:
        _, span_id, _, attrs = view
        run = runs.setdefault(
            run_key(view), {"prompt": 0, "generated": 0, "reasoning": 0, "calls": 0, "attrs": {}}
        )
        for name in (ATTR_TASK, ATTR_METHOD, ATTR_ITEM, ATTR_BUDGET, ATTR_CORRECT,
                     ATTR_STOP_REASON):
            if name in attrs:
                run["attrs"].setdefault(name, attrs[name])
        has_usage = ATTR_INPUT_TOKENS in attrs or ATTR_OUTPUT_TOKENS in attrs
        if has_usage and span_id not in usage_parents:
            run["prompt"] += int(attrs.get(ATTR_INPUT_TOKENS) or 0)
            run["generated"] += int(attrs.get(ATTR_OUTPUT_TOKENS) or 0)
            run["reasoning"] += int(attrs.get(ATTR_REASONING_TOKENS) or 0)
            run["calls"] += 1

    records = []
    for key, run in runs.items():
        attrs = run["attrs"]
        run_task = attrs.get(ATTR_TASK, task)
        run_method = attrs.get(ATTR_METHOD, method)
        if run_task is None or run_method is None:
            missing = ATTR_TASK if run_task is None else ATTR_METHOD
            raise RecordsError(
                f"run {key!r} has no {missing!r} attribute and no default was given",
                field=missing,
            )
        budget = attrs.get(ATTR_BUDGET)
        records.append(RunRecord(
            task=str(run_task), item=str(attrs.get(ATTR_ITEM, key)), method=str(run_method),
            budget=None if budget is None else int(budget),
            correct=_as_bool(attrs.get(ATTR_CORRECT, False)),
            prompt_tokens=run["prompt"], generated_tokens=run["generated"],
            reasoning_tokens=run["reasoning"], calls=run["calls"],
            stop_reason=attrs.get(ATTR_STOP_REASON),
        ))
    return records
