"""Run records from exported OpenTelemetry spans (``ReadableSpan`` or their JSON)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from budget_graph.efficiency.records import (
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
    RecordsError,
    RunRecord,
)
from budget_graph.efficiency.run_record import ScopeRecord
from budget_graph.telemetry import attributes as _attrs

__all__ = ["from_spans"]


_IDENTITY = (ATTR_TASK, ATTR_METHOD, ATTR_ITEM, ATTR_BUDGET, ATTR_CORRECT, ATTR_STOP_REASON)
_LEVEL = (ATTR_BUDGET, ATTR_STOP_REASON)
"""Identity a span of a nested budget level describes for its own level only."""


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
        _hex(ctx.trace_id),
        _hex(ctx.span_id),
        _hex(parent),
        _flatten(dict(span.attributes or {})),
    )


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _path(attrs: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The span's level as names from the outermost down (``None``: no ``budget.scope``)."""
    scope = attrs.get(_attrs.BUDGET_SCOPE)
    if not isinstance(scope, str):
        return None
    ancestors = attrs.get(_attrs.BUDGET_ANCESTORS_SCOPE) or ()
    if isinstance(ancestors, Mapping):  # OTLP JSON: {"values": [{"stringValue": "a"}]}
        ancestors = [next(iter(v.values()), "") for v in ancestors.get("values") or ()]
    elif isinstance(ancestors, str):  # a JSON export may flatten a one-name array
        ancestors = (ancestors,)
    return (*(str(a) for a in ancestors), scope)


class _Levels:
    """The budget levels seen in one run's spans: each level's limit, stop and calls."""

    def __init__(self) -> None:
        self.limits: dict[tuple[str, ...], int] = {}
        self.stops: dict[tuple[str, ...], str] = {}
        self.calls: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}

    def see(self, attrs: Mapping[str, Any]) -> None:
        """Note the limit and stop reason a span states for its own level."""
        path = _path(attrs)
        if path is None:
            return
        self.calls.setdefault(path, [])
        limit = attrs.get(ATTR_BUDGET)
        if isinstance(limit, int | str) and str(limit).isdigit() and int(limit) > 0:
            # A run span states its level's limit; an LLM span the limit it reserved under.
            if attrs.get(ATTR_SPAN_KIND) == _attrs.SPAN_KIND_RUN or path not in self.limits:
                self.limits[path] = int(limit)
        stop = attrs.get(ATTR_STOP_REASON)
        if isinstance(stop, str):
            self.stops.setdefault(path, stop)

    def records(self, calls: Iterable[Mapping[str, Any]], root: str | None) -> list[ScopeRecord]:
        """The levels under ``root`` (it first, then depth first), when there are several."""
        for attrs in calls:
            path = _path(attrs) or ()
            for depth in range(1, len(path) + 1):
                self.calls.setdefault(path[:depth], []).append(attrs)
        levels = sorted(p for p in self.calls.items() if p[0][0] == root)
        if len(levels) < 2:
            return []
        return [
            ScopeRecord(
                path=list(path),
                budget=self.limits.get(path),
                prompt_tokens=_sum(inside, ATTR_INPUT_TOKENS),
                generated_tokens=_sum(inside, ATTR_OUTPUT_TOKENS),
                reasoning_tokens=_sum(inside, ATTR_REASONING_TOKENS),
                calls=len(inside),
                stop_reason=self.stops.get(path),
            )
            for path, inside in levels
        ]


def _sum(calls: Iterable[Mapping[str, Any]], name: str) -> int:
    return sum(int(a.get(name) or 0) for a in calls)


def from_spans(
    spans: Iterable[Any], *, task: str | None = None, method: str | None = None
) -> list[RunRecord]:
    """Build one record per run from exported OTel spans.

    Spans are grouped by :data:`ATTR_RUN_ID` (falling back to the trace id). Usage
    (:data:`ATTR_INPUT_TOKENS`, :data:`ATTR_OUTPUT_TOKENS`,
    :data:`ATTR_REASONING_TOKENS`) is summed over budget_graph's own LLM-call spans
    (:data:`ATTR_SPAN_KIND` ``= "llm"``) when the run has any; otherwise over its
    *leaf usage spans*, those carrying usage none of whose descendants do, so spans
    carrying rolled-up usage of their children are not counted twice. ``calls`` is
    the number of spans summed. Identity
    (:data:`ATTR_TASK`, :data:`ATTR_METHOD`, :data:`ATTR_ITEM`, :data:`ATTR_BUDGET`,
    :data:`ATTR_CORRECT`, :data:`ATTR_STOP_REASON`) is read from whichever span of the
    run carries it; a run without :data:`ATTR_CORRECT` counts as not correct. With
    nested budgets the record is the outermost level's: the budget and stop reason of
    an inner level's spans (those carrying ``budget.ancestors.scope``) are not the run's.
    The record's ``scope`` is the outermost level's name (``budget.scope``), and when
    the spans name more than one level, ``scopes`` holds each level's limit, stop
    reason and the usage of the calls made within it.

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
            run_key(view), {"leaf": [], "ours": [], "attrs": {}, "levels": _Levels()}
        )
        run["levels"].see(attrs)
        inner = _attrs.BUDGET_ANCESTORS_SCOPE in attrs  # a nested level's limit and stop
        if not inner and isinstance(attrs.get(_attrs.BUDGET_SCOPE), str):
            run.setdefault("scope", attrs[_attrs.BUDGET_SCOPE])
        for name in _IDENTITY:
            if name in attrs and not (inner and name in _LEVEL):
                run["attrs"].setdefault(name, attrs[name])
        if ATTR_INPUT_TOKENS in attrs or ATTR_OUTPUT_TOKENS in attrs:
            if attrs.get(ATTR_SPAN_KIND) == SPAN_KIND_LLM:
                run["ours"].append(attrs)
            if span_id not in usage_parents:
                run["leaf"].append(attrs)

    records = []
    for key, run in runs.items():
        # Our own LLM spans are authoritative; an outer instrumentor's sibling spans
        # for the same call would otherwise be counted twice.
        calls = run["ours"] or run["leaf"]
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
        records.append(
            RunRecord(
                task=str(run_task),
                item=str(attrs.get(ATTR_ITEM, key)),
                method=str(run_method),
                budget=None if budget is None else int(budget),
                correct=_as_bool(attrs.get(ATTR_CORRECT, False)),
                prompt_tokens=_sum(calls, ATTR_INPUT_TOKENS),
                generated_tokens=_sum(calls, ATTR_OUTPUT_TOKENS),
                reasoning_tokens=_sum(calls, ATTR_REASONING_TOKENS),
                calls=len(calls),
                stop_reason=attrs.get(ATTR_STOP_REASON),
                scope=run.get("scope"),
                scopes=run["levels"].records(calls, run.get("scope")),
            )
        )
    return records
