"""Budget configuration and the immutable, additive :class:`Spend` value."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from budget_graph.errors import BudgetError

__all__ = ["Budget", "CountMode", "ModelPrice", "Spend", "Usage"]

CountMode = Literal["output", "input+output", "cost"]
"""What a budget counts: generated tokens only, prompt + generated tokens, or money."""


class ModelPrice(BaseModel):
    """Prices of one model in USD per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(ge=0)
    """USD per million prompt tokens."""
    output_per_mtok: float = Field(ge=0)
    """USD per million generated tokens (reasoning tokens included)."""
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    """USD per million cached prompt tokens; ``None`` bills them as ordinary input."""


def _with_margin(counted: int, margin: float) -> int:
    """``counted`` tokens plus a fraction ``margin`` of them, rounded up."""
    return counted + math.ceil(counted * margin)


def _tighter_cap(a: int, b: int) -> int:
    """The smaller of two output caps, where 0 means no cap."""
    return b if b and (not a or b < a) else a


class Budget(BaseModel):
    """A token (or cost) budget for one run.

    In token modes the limit is ``max_tokens``. In ``"cost"`` mode the limit is
    ``max_cost_usd`` and the meter counts integer micro-dollars, priced per model
    from ``prices``.

    Example:
        >>> Budget(max_tokens=2_000, reserve=200).available_for_calls
        1800

    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: StrictInt | None = Field(default=None, gt=0)
    """Total tokens the run may spend (token modes)."""
    count: CountMode = "input+output"
    """What counts against the limit."""
    max_cost_usd: float | None = Field(default=None, gt=0)
    """Total USD the run may spend (``count="cost"``)."""
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Per-model prices for ``count="cost"``; keys are model names."""
    per_call_max_tokens: StrictInt | None = Field(default=None, gt=0)
    """Cap on any single call's ``max_tokens``."""
    reserve: StrictInt = Field(default=0, ge=0)
    """Units held back for the final answer; only calls marked ``final`` may use them."""
    prompt_margin: float = Field(default=0.05, ge=0, le=1)
    """Fraction added to the locally counted prompt when reserving, in case the provider
    counts a few more framing tokens; the unused part returns at commit."""

    def prompt_reservation(self, counted: int) -> int:
        """Prompt tokens to reserve for a locally counted prompt of ``counted`` tokens."""
        return _with_margin(counted, self.prompt_margin)

    @model_validator(mode="after")
    def _check_limits(self) -> Budget:
        if self.count == "cost":
            if self.max_cost_usd is None:
                raise ValueError("count='cost' needs max_cost_usd (got None)")
            if not self.prices:
                raise ValueError("count='cost' needs prices for at least one model (got {})")
        elif self.max_tokens is None:
            raise ValueError(f"count={self.count!r} needs max_tokens (got None)")
        if self.reserve >= self.limit:
            raise ValueError(
                f"reserve ({self.reserve}) must be smaller than the limit "
                f"({self.limit} {self.unit})"
            )
        return self

    @property
    def unit(self) -> str:
        """Name of the unit the meter counts in."""
        return "micro-USD" if self.count == "cost" else "tokens"

    @property
    def limit(self) -> int:
        """The limit in meter units (tokens, or micro-USD in cost mode)."""
        if self.count == "cost":
            assert self.max_cost_usd is not None
            return int(round(self.max_cost_usd * 1_000_000))
        assert self.max_tokens is not None
        return self.max_tokens

    @property
    def available_for_calls(self) -> int:
        """Units ordinary (non-final) calls may use: the limit less the reserve."""
        return self.limit - self.reserve

    def _price(self, model: str | None) -> ModelPrice:
        if model is not None:
            if model in self.prices:
                return self.prices[model]
            # Providers often answer with a dated snapshot name ("gpt-4o-2024-08-06").
            for name, price in self.prices.items():
                if model.startswith(name):
                    return price
        raise BudgetError(
            f"No price for model {model!r} in a cost budget; known models: {sorted(self.prices)}"
        )

    def units(
        self,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_tokens: int = 0,
        model: str | None = None,
    ) -> int:
        """Units charged for a call with this usage (rounded up in cost mode)."""
        if self.count == "output":
            return output_tokens
        if self.count == "input+output":
            return input_tokens + output_tokens
        price = self._price(model)
        cached_rate = (
            price.input_per_mtok
            if price.cached_input_per_mtok is None
            else price.cached_input_per_mtok
        )
        micro = (
            (input_tokens - cached_tokens) * price.input_per_mtok
            + cached_tokens * cached_rate
            + output_tokens * price.output_per_mtok
        )
        return math.ceil(micro - 1e-9)

    def max_output_for(self, units: int, *, model: str | None = None) -> int:
        """How many output tokens ``units`` can pay for."""
        if self.count != "cost":
            return max(units, 0)
        rate = self._price(model).output_per_mtok
        if rate == 0:
            return 2**31 - 1
        return max(int(math.floor(units / rate + 1e-9)), 0)


# Hot paths (every call's commit, every merge of spend in state) build ``Usage`` and
# ``Spend`` through ``_usage``/``_spend``: a frozen dataclass's ``__init__`` sets each field
# through ``object.__setattr__`` (about 2.5 us for eight fields); setting the instance
# dict in one step costs a quarter of that. Hence no ``slots=True`` on either class.
_new = object.__new__
_setattr = object.__setattr__


@dataclass(frozen=True)
class Usage:
    """Token usage of one or more calls (no per-node breakdown)."""

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    """Part of ``output_tokens`` the model spent reasoning."""
    cached_tokens: int = 0
    """Part of ``input_tokens`` read from the provider's cache."""
    calls: int = 0
    estimated_calls: int = 0
    """Calls whose usage was counted locally because the provider reported none."""
    units: int = 0
    """What the budget charged for these calls, in meter units."""

    @property
    def total_tokens(self) -> int:
        """Prompt plus generated tokens."""
        return self.input_tokens + self.output_tokens

    def _asdict(self) -> dict[str, Any]:
        # LangGraph's checkpoint serializer stores an object with ``_asdict`` as
        # ``cls(**obj._asdict())``, its format for dataclasses, without the slow runtime
        # Protocol check it makes on other objects first. The instance dict is the fields.
        return dict(self.__dict__)

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        # Spelled out: this runs on every call's commit (a generator over fields was 3x slower).
        return _usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cached_tokens + other.cached_tokens,
            self.calls + other.calls,
            self.estimated_calls + other.estimated_calls,
            self.units + other.units,
        )

    def __radd__(self, other: Any) -> Usage:
        if other == 0:  # sum() starts from 0
            return self
        return NotImplemented

    def __sub__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(*(getattr(self, f) - getattr(other, f) for f in _USAGE_FIELDS))


_USAGE_FIELDS = tuple(f.name for f in fields(Usage))


def _usage(
    input_tokens: int,
    output_tokens: int,
    reasoning_tokens: int,
    cached_tokens: int,
    calls: int,
    estimated_calls: int,
    units: int,
) -> Usage:
    """``Usage(...)`` with every field given, built without the dataclass ``__init__``."""
    u = _new(Usage)
    _setattr(
        u,
        "__dict__",
        {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "reasoning_tokens": reasoning_tokens,
            "cached_tokens": cached_tokens,
            "calls": calls,
            "estimated_calls": estimated_calls,
            "units": units,
        },
    )
    return u


def _spend(
    input_tokens: int,
    output_tokens: int,
    reasoning_tokens: int,
    cached_tokens: int,
    calls: int,
    estimated_calls: int,
    units: int,
    by_node: dict[str, Usage],
) -> Spend:
    """``Spend(...)`` from trusted parts, without the dataclass ``__init__``.

    ``by_node`` must hold ``Usage`` values only: the ``__post_init__`` check is skipped.
    """
    s = _new(Spend)
    _setattr(
        s,
        "__dict__",
        {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "reasoning_tokens": reasoning_tokens,
            "cached_tokens": cached_tokens,
            "calls": calls,
            "estimated_calls": estimated_calls,
            "units": units,
            "by_node": by_node,
        },
    )
    return s


def _usage_from(value: Any) -> Usage:
    if isinstance(value, Mapping):
        return Usage(**{k: int(value.get(k, 0) or 0) for k in _USAGE_FIELDS})
    if isinstance(value, (list, tuple)):
        return Usage(*(int(v) for v in value))
    raise TypeError(f"Cannot read a per-node usage from {value!r}")


@dataclass(frozen=True)
class Spend:
    """Immutable, additive record of what a run (or a node) spent.

    ``+`` and ``sum()`` merge two spends, including their per-node breakdowns, so
    spend can live in graph state under an additive reducer.

    Example:
        >>> a = Spend.of(Usage(input_tokens=10, output_tokens=5, calls=1), node="plan")
        >>> (a + a).by_node["plan"].output_tokens
        10

    """

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    calls: int = 0
    estimated_calls: int = 0
    units: int = 0
    """What the budget charged, in meter units (tokens, or micro-USD in cost mode)."""
    # ``dict``, not ``Mapping``: LangGraph's strict checkpoint mode allows the types it finds
    # in the state schema, and it looks inside ``dict[...]`` but not ``Mapping[...]``.
    by_node: dict[str, Usage] = field(default_factory=dict)
    """Per-node breakdown; treat as read-only."""

    def _asdict(self) -> dict[str, Any]:
        # As ``Usage._asdict``: checkpoints store a spend as its fields.
        return dict(self.__dict__)

    def __post_init__(self) -> None:
        # A checkpoint serializer that does not allow ``Usage`` (e.g. an explicit allowlist
        # without it) restores it as a plain dict/list: rebuild them so ``+`` keeps working.
        for u in self.by_node.values():  # a loop, not all(genexpr): runs on every merge
            if type(u) is not Usage:
                fixed = {
                    name: u if isinstance(u, Usage) else _usage_from(u)
                    for name, u in self.by_node.items()
                }
                object.__setattr__(self, "by_node", fixed)
                return

    @classmethod
    def of(cls, usage: Usage, *, node: str | None = None) -> Spend:
        """A spend holding one usage, attributed to ``node`` if given."""
        return _spend(
            usage.input_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
            usage.cached_tokens,
            usage.calls,
            usage.estimated_calls,
            usage.units,
            {node: usage} if node else {},
        )

    @classmethod
    def fold(cls, items: Sequence[Spend | tuple[Usage, str | None]]) -> Spend:
        """The sum of spends and ``(usage, node)`` records (how meters keep calls cheaply)."""
        if len(items) == 1:
            item = items[0]
            return item if isinstance(item, Spend) else cls.of(item[0], node=item[1])
        total = Spend()
        by_node: dict[str, Usage] = {}
        usages: list[Usage] = []
        for item in items:
            if isinstance(item, Spend):
                total = total + item
                continue
            usage, node = item
            usages.append(usage)
            if node:
                prev = by_node.get(node)
                by_node[node] = usage if prev is None else prev + usage
        if not usages:
            return total
        u = sum(usages, Usage())
        calls = _spend(
            u.input_tokens,
            u.output_tokens,
            u.reasoning_tokens,
            u.cached_tokens,
            u.calls,
            u.estimated_calls,
            u.units,
            by_node,
        )
        return total + calls  # a zero total adds nothing (see __add__)

    @property
    def total_tokens(self) -> int:
        """Prompt plus generated tokens."""
        return self.input_tokens + self.output_tokens

    @property
    def usage(self) -> Usage:
        """The totals without the per-node breakdown."""
        return _usage(
            self.input_tokens,
            self.output_tokens,
            self.reasoning_tokens,
            self.cached_tokens,
            self.calls,
            self.estimated_calls,
            self.units,
        )

    def __add__(self, other: Spend) -> Spend:
        if not isinstance(other, Spend):
            return NotImplemented
        # A zero side (e.g. the reducer's initial ``Spend()``) adds nothing.
        if not other.by_node and other._is_zero():
            return self
        if not self.by_node and self._is_zero():
            return other
        if not other.by_node:
            by_node = self.by_node
        elif not self.by_node:
            by_node = other.by_node
        else:
            merged = dict(self.by_node)
            for name, usage in other.by_node.items():
                prev = merged.get(name)
                merged[name] = usage if prev is None else prev + usage
            by_node = merged
        return _spend(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cached_tokens + other.cached_tokens,
            self.calls + other.calls,
            self.estimated_calls + other.estimated_calls,
            self.units + other.units,
            by_node,
        )

    def __radd__(self, other: Any) -> Spend:
        if other == 0:  # sum() starts from 0
            return self
        return NotImplemented

    def __sub__(self, other: Spend) -> Spend:
        """What ``self`` spent beyond ``other`` (nodes whose difference is zero are dropped)."""
        if not isinstance(other, Spend):
            return NotImplemented
        zero = Usage()
        by_node: dict[str, Usage] = {}
        for name in {*self.by_node, *other.by_node}:
            diff = self.by_node.get(name, zero) - other.by_node.get(name, zero)
            if diff != zero:
                by_node[name] = diff
        diff_total = self.usage - other.usage
        totals: dict[str, Any] = {f: getattr(diff_total, f) for f in _USAGE_FIELDS}
        return Spend(**totals, by_node=by_node)

    def __bool__(self) -> bool:
        return self.calls > 0 or self.units > 0 or self.total_tokens > 0

    def _is_zero(self) -> bool:
        return not (
            self.by_node
            or self.input_tokens
            or self.output_tokens
            or self.reasoning_tokens
            or self.cached_tokens
            or self.calls
            or self.estimated_calls
            or self.units
        )
