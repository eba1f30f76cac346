"""Per-run records: one row per (task, item, method, budget) run, stored as JSONL.

A :class:`RunRecord` is what every efficiency metric, report and plot consumes.
Records come from a graph's final state (:func:`from_state`), from exported
OpenTelemetry spans (:func:`budget_graph.efficiency.spans.from_spans`, which reads
the ``ATTR_*`` attributes of :mod:`~budget_graph.efficiency.run_record`), or from a
JSONL file (:func:`read_jsonl`), so users can compute the same report for their own runs.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from budget_graph.budget import Spend
from budget_graph.efficiency.run_record import (
    ATTR_BUDGET,
    ATTR_CORRECT,
    ATTR_INPUT_TOKENS,
    ATTR_ITEM,
    ATTR_METHOD,
    ATTR_OUTPUT_TOKENS,
    ATTR_REASONING_TOKENS,
    ATTR_RUN_ID,
    ATTR_SPAN_KIND,
    ATTR_STOP_REASON,
    ATTR_TASK,
    SPAN_KIND_LLM,
    TOKEN_KINDS,
    RecordsError,
    RunRecord,
    token_count,
)

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
    "TOKEN_KINDS",
    "from_state",
    "read_jsonl",
    "token_count",
    "write_jsonl",
]


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
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results are meant to be shared
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
                    path=name,
                    line=lineno,
                ) from exc
            try:
                records.append(RunRecord.model_validate(data))
            except ValidationError as exc:
                err = exc.errors()[0]
                field = ".".join(str(p) for p in err["loc"]) or "<record>"
                raise RecordsError(
                    f"{name}:{lineno}: invalid field {field!r}: {err['msg']} "
                    f"(got {err.get('input')!r})",
                    path=name,
                    line=lineno,
                    field=field,
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


def _trace_of(value: Any) -> tuple[list[tuple[int, float]], list[tuple[int, int]]]:
    points: list[tuple[int, float]] = []
    usage: list[tuple[int, int]] = []
    for point in value or ():
        if isinstance(point, Mapping):
            points.append((int(point["tokens"]), float(point["quality"])))
            if "prompt_tokens" in point:
                usage.append((int(point["prompt_tokens"]), int(point.get("reasoning_tokens", 0))))
        else:
            tokens, quality, *rest = point
            points.append((int(tokens), float(quality)))
            if rest:
                usage.append((int(rest[0]), int(rest[1]) if len(rest) > 1 else 0))
    return points, (usage if len(usage) == len(points) else [])


def _graph_trace(
    value: Any, correct: bool | Callable[[str | None], bool]
) -> tuple[list[tuple[int, float]], list[tuple[int, int]]]:
    """The ``trace`` of our graphs (self-consistency, planner, anytime generation)."""
    points: list[tuple[int, float]] = []
    usage: list[tuple[int, int]] = []
    for p in value or ():
        tokens = getattr(p, "output_tokens", None)
        if tokens is None or not callable(correct):
            return [], []  # not our points, or no way to judge each answer
        answer = getattr(p, "answer", None)
        points.append((int(tokens), float(bool(correct(None if answer is None else str(answer))))))
        usage.append((int(getattr(p, "input_tokens", 0)), int(getattr(p, "reasoning_tokens", 0))))
    return points, usage


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
            ``"stop_reason"`` and ``"anytime"`` (``[(generated tokens, quality), ...]``,
            optionally ``(generated, quality, prompt, reasoning)`` or mappings with
            ``tokens``, ``quality``, ``prompt_tokens``, ``reasoning_tokens``). Without
            ``"anytime"``, the ``"trace"`` our graphs write (self-consistency, the
            planner, anytime generation) becomes the anytime trace when ``correct`` is
            a function: each point's answer judged by it, with the spend by then.
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
    if final_state.get("anytime") is not None:
        trace, trace_usage = _trace_of(final_state.get("anytime"))
    else:
        trace, trace_usage = _graph_trace(final_state.get("trace"), correct)
    try:
        return RunRecord(
            task=task,
            item=item,
            method=method,
            budget=budget,
            correct=bool(ok),
            prompt_tokens=spend.input_tokens,
            generated_tokens=spend.output_tokens,
            reasoning_tokens=spend.reasoning_tokens,
            calls=spend.calls,
            stop_reason=final_state.get("stop_reason"),
            answer=answer,
            anytime=trace,
            anytime_usage=trace_usage,
            extra=dict(extra or {}),
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise RecordsError(
            f"invalid field {field!r}: {err['msg']} (got {err.get('input')!r})", field=field
        ) from exc
