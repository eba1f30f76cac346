"""Span attribute builders and the rolled-up usage a node or run span carries."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry.util.types import AttributeValue

from budget_graph._internal.observe import CallInfo
from budget_graph.budget import Spend, Usage
from budget_graph.telemetry import attributes as A

__all__ = [
    "Rollup",
    "add_budget_attributes",
    "call_attributes",
    "event_attributes",
    "usage_attributes",
]


class Rollup:
    """Running sum of the usage of the calls under a node or run span.

    A call adds to the innermost node or run only; a node adds its total to the node or
    run around it once, when it closes. Parallel branches finish calls and nodes on
    different threads, hence the lock. A call that lands after its node closed goes to
    the nearest ancestor still open.
    """

    __slots__ = (
        "_lock",
        "absorb",
        "cached",
        "calls",
        "closed",
        "input",
        "meter",
        "output",
        "owned",
        "parent",
        "picked",
        "reasoning",
        "span",
        "state",
        "units",
    )

    def __init__(
        self, span: Any, parent: Rollup | None, meter: Any = None, *, owned: bool = True
    ) -> None:
        self.span = span
        self.owned = owned
        """Whether the span is ours to end (else another instrumentor's, which we enrich)."""
        self.parent = parent
        self.meter: Any = meter
        self.picked = False
        """Whether ``meter`` came from the calls (none was known here or above)."""
        self.input = self.output = self.reasoning = self.cached = self.calls = self.units = 0
        self.closed = False
        self.absorb = False
        """A wrapper run span waiting to absorb the run reported inside it."""
        self.state: Any = None
        """The final state the absorbed run reported (a wrapper may not see it)."""
        self._lock = threading.Lock()

    def find_meter(self) -> Any:
        """The first meter known here or in an enclosing node or run."""
        node: Rollup | None = self
        while node is not None:
            if node.meter is not None:
                return node.meter
            node = node.parent
        return None

    def follow(self, meter: Any) -> None:
        """Read the span's budget off ``meter``, a finished call's, when it has none of its own.

        With no meter here or above (a ``traced()`` run around a graph whose calls bring
        theirs), the latest call's meter at the level first seen (same scope) is used:
        an agent middleware builds one per step, each holding the total so far.
        """
        if self.meter is None:
            self.meter = self.find_meter()
            self.picked = self.meter is None
        if self.picked and meter is not None:
            if self.meter is None or getattr(meter, "scope", 0) == getattr(self.meter, "scope", 1):
                self.meter = meter

    def add(
        self, input: int, output: int, reasoning: int, cached: int, calls: int, units: int
    ) -> None:
        """Add usage here, or to the nearest open ancestor once this one closed."""
        node: Rollup | None = self
        while node is not None:
            with node._lock:
                if not node.closed:
                    node.input += input
                    node.output += output
                    node.reasoning += reasoning
                    node.cached += cached
                    node.calls += calls
                    node.units += units
                    return
            node = node.parent

    def close(self) -> None:
        """Stop counting here and hand the total to the node or run around this one."""
        with self._lock:
            self.closed = True
        if self.parent is not None and self.calls:
            self.parent.add(
                self.input, self.output, self.reasoning, self.cached, self.calls, self.units
            )

    def attributes(self) -> dict[str, AttributeValue]:
        """``budget.usage.*``: the rolled-up total; empty when no call was billed beneath.

        Left out because they add nothing (each attribute costs the SDK a cleaning pass):
        ``units`` when it equals input + output tokens (the rule LLM spans follow with
        ``budget.units``), reasoning and cached tokens when zero (most models report none).
        """
        if not self.calls:
            return {}
        attrs: dict[str, AttributeValue] = {
            A.USAGE_INPUT_TOKENS: self.input,
            A.USAGE_OUTPUT_TOKENS: self.output,
            A.USAGE_CALLS: self.calls,
        }
        if self.units != self.input + self.output:
            attrs[A.USAGE_UNITS] = self.units
        if self.reasoning:
            attrs[A.USAGE_REASONING_TOKENS] = self.reasoning
        if self.cached:
            attrs[A.USAGE_CACHED_TOKENS] = self.cached
        return attrs


def usage_attributes(usage: Usage | Spend) -> dict[str, AttributeValue]:
    """``budget.usage.*`` for one call's usage (LLM spans under another instrumentor).

    Reasoning and cached tokens are left out when zero (most models report none).
    """
    attrs: dict[str, AttributeValue] = {
        A.USAGE_INPUT_TOKENS: usage.input_tokens,
        A.USAGE_OUTPUT_TOKENS: usage.output_tokens,
        A.USAGE_CALLS: usage.calls,
        A.USAGE_UNITS: usage.units,
    }
    if usage.reasoning_tokens:
        attrs[A.USAGE_REASONING_TOKENS] = usage.reasoning_tokens
    if usage.cached_tokens:
        attrs[A.USAGE_CACHED_TOKENS] = usage.cached_tokens
    return attrs


def add_budget_attributes(
    attrs: dict[str, AttributeValue], meter: Any, *, run: bool = False
) -> None:
    """Add ``budget.scope/spent/remaining`` read off a meter now (``limit``, ``unit`` for a run).

    Every span reads them the same way, when it ends: one moment for both numbers.
    They describe the meter's own level (the innermost of nested budgets); a meter with
    a ``parent`` adds its ancestors' names and remaining units, outermost first.

    Adds nothing when the meter is unknown or unreachable. Span attributes are the main
    cost of tracing, so node spans skip the run-constant ones.

    Example:
        >>> from budget_graph import Budget
        >>> from budget_graph.meter import Meter
        >>> request = Meter(Budget(max_tokens=100), scope="request")
        >>> writer = Meter(Budget(max_tokens=40), scope="writer", parent=request)
        >>> attrs = {}
        >>> add_budget_attributes(attrs, writer)
        >>> attrs["budget.scope"], attrs["budget.ancestors.scope"]
        ('writer', ('request',))
        >>> attrs["budget.ancestors.remaining"], attrs["budget.remaining"]
        ((100,), 40)

    """
    if meter is None:
        return
    try:
        spent, remaining = int(meter.spent), int(meter.remaining)
        limit = int(meter.limit) if run else None
        names: list[str] = []
        left: list[int] = []
        parent = getattr(meter, "parent", None)
        while parent is not None:
            names.append(str(parent.scope))
            left.append(int(parent.remaining))
            parent = getattr(parent, "parent", None)
    except Exception:  # noqa: BLE001 - a remote meter may be unreachable; never break a run
        return
    scope = getattr(meter, "scope", None)
    if isinstance(scope, str):
        attrs[A.BUDGET_SCOPE] = scope
    if names:
        attrs[A.BUDGET_ANCESTORS_SCOPE] = tuple(reversed(names))
        attrs[A.BUDGET_ANCESTORS_REMAINING] = tuple(reversed(left))
    attrs[A.BUDGET_SPENT] = spent
    attrs[A.BUDGET_REMAINING] = remaining
    if limit is not None:
        attrs[A.BUDGET_LIMIT] = limit
        name = getattr(getattr(meter, "budget", None), "unit", None)
        if isinstance(name, str):
            attrs[A.BUDGET_UNIT] = name


def call_attributes(
    call: CallInfo, meter: Any, *, genai_usage: bool, foreign: bool = False
) -> dict[str, AttributeValue]:
    """An LLM call's attributes: the request as sent, the budget when it ended, usage.

    Built once, when the call ends, in a single dict: the SDK cleans every attribute it
    is given, so each one set costs (see ``benchmarks/telemetry_overhead.py``).
    ``foreign=True`` builds them for another instrumentor's span of the call, which
    already counts its tokens: no usage is added there.
    """
    attrs: dict[str, AttributeValue] = {
        A.SPAN_KIND: A.SPAN_KIND_LLM,
        A.OPENINFERENCE_SPAN_KIND: A.OPENINFERENCE_LLM,
        A.GEN_AI_OPERATION_NAME: call.operation,
    }
    if call.model is not None:
        attrs[A.GEN_AI_REQUEST_MODEL] = call.model
    if call.max_tokens is not None:
        attrs[A.GEN_AI_REQUEST_MAX_TOKENS] = call.max_tokens
    if call.n != 1:
        attrs[A.GEN_AI_REQUEST_CHOICE_COUNT] = call.n
    if call.limit is not None:
        attrs[A.BUDGET_LIMIT] = call.limit
        attrs[A.BUDGET_RESERVED] = call.reserved_units
    add_budget_attributes(attrs, meter)
    if call.allocated is not None:
        attrs[A.BUDGET_ALLOCATED] = call.allocated
    if call.finish_reasons:
        attrs[A.GEN_AI_RESPONSE_FINISH_REASONS] = call.finish_reasons
    usage = call.usage
    if usage is None:
        return attrs
    if foreign:
        pass  # the instrumentor's span counts the tokens
    elif genai_usage:
        attrs[A.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
        attrs[A.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
        if usage.reasoning_tokens:
            attrs[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
        if usage.cached_tokens:
            attrs[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cached_tokens
    else:  # another span counts gen_ai.usage.*; ours stay under budget.usage.*
        attrs.update(usage_attributes(usage))
    units = call.units if call.units is not None else usage.units
    if units != usage.input_tokens + usage.output_tokens:  # "output" or cost budgets
        attrs[A.BUDGET_UNITS] = units
    if call.estimated:
        attrs[A.BUDGET_ESTIMATED] = True
    return attrs


_SCALARS = (str, bool, int, float)


def _attr_value(value: Any) -> AttributeValue | None:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value):
        return list(value)
    return str(value)


def event_attributes(attributes: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """A budget event's attributes as OTel values.

    Bare keys get the ``budget.`` prefix, ``model`` becomes ``gen_ai.request.model``,
    ``None`` values are dropped.
    """
    out: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        converted = _attr_value(value)
        if converted is None:
            continue
        if key == "model":
            name = A.GEN_AI_REQUEST_MODEL
        elif "." in key:
            name = key
        else:
            name = A.BUDGET_PREFIX + key
        out[name] = converted
    return out
