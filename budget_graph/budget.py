"""Budget configuration and the immutable, additive :class:`Spend` value."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from budget_graph._internal.records import record_fields
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
    max_cost_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
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
            if self.max_tokens is not None:
                raise ValueError(
                    f"max_tokens={self.max_tokens!r} is a limit only with a token count "
                    "(got count='cost'); use one Budget per limit and nest them"
                )
        elif self.max_tokens is None:
            raise ValueError(f"count={self.count!r} needs max_tokens (got None)")
        elif self.max_cost_usd is not None:
            raise ValueError(
                f"max_cost_usd={self.max_cost_usd!r} is a limit only with count='cost' "
                f"(got count={self.count!r}); use one Budget per limit and nest them"
            )
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


@dataclass(frozen=True, slots=True)
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
        # ``cls(**obj._asdict())`` (see ``_internal/records``): the fields not at default.
        return record_fields(self)

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
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
        return Usage(
            self.input_tokens - other.input_tokens,
            self.output_tokens - other.output_tokens,
            self.reasoning_tokens - other.reasoning_tokens,
            self.cached_tokens - other.cached_tokens,
            self.calls - other.calls,
            self.estimated_calls - other.estimated_calls,
            self.units - other.units,
        )

    @classmethod
    def parse(cls, value: Usage | Mapping[str, Any] | Sequence[int]) -> Usage:
        """A usage from itself, a mapping of its fields, or a sequence of them in order.

        Checkpoint serializers that do not know ``Usage`` restore it as one of those.
        """
        if isinstance(value, Usage):
            return value
        if isinstance(value, Mapping):
            return cls(**{f: int(value.get(f) or 0) for f in _USAGE_FIELDS})
        if isinstance(value, Sequence) and not isinstance(value, str):
            return cls(*(int(v) for v in value))
        raise TypeError(f"Cannot read a usage from {value!r}")


_USAGE_FIELDS = tuple(f.name for f in fields(Usage))


@dataclass(frozen=True, init=False)
class Spend:
    """Immutable, additive record of what a run (or a node) spent: a total and a per-node map.

    ``+`` and ``sum()`` merge two spends, including their per-node breakdowns, so
    spend can live in graph state under an additive reducer. ``Usage``'s fields
    (``spend.units``, ``spend.calls``...) read the total.

    Example:
        >>> a = Spend.of(Usage(input_tokens=10, output_tokens=5, calls=1), node="plan")
        >>> (a + a).by_node["plan"].output_tokens
        10

    """

    usage: Usage
    """The total."""
    # ``dict``, not ``Mapping``: LangGraph's strict checkpoint mode allows the types it finds
    # in the state schema, and it looks inside ``dict[...]`` but not ``Mapping[...]``.
    by_node: dict[str, Usage]
    """Per-node breakdown; treat as read-only."""

    def __init__(
        self,
        usage: Usage | None = None,
        by_node: Mapping[str, Any] | None = None,
        **totals: int,
    ) -> None:
        """A spend of ``usage`` (or of ``Usage``'s fields given as keywords) and ``by_node``.

        The keywords are also how checkpoints written before ``Spend`` held a ``Usage``
        stored it, so they load unchanged.
        """
        if totals:
            if usage is not None:
                raise TypeError("Spend takes usage= or Usage's fields as keywords, not both")
            usage = Usage(**totals)
        # A checkpoint written by another serializer may hold a node's usage as a mapping.
        nodes = {
            name: u if isinstance(u, Usage) else Usage.parse(u)
            for name, u in (by_node or {}).items()
        }
        # A frozen dataclass's own __init__ sets its fields this way.
        object.__setattr__(self, "usage", usage if usage is not None else _ZERO)
        object.__setattr__(self, "by_node", nodes)

    def _asdict(self) -> dict[str, Any]:
        # As ``Usage._asdict``: checkpoints store a spend as its fields.
        return {"usage": self.usage, "by_node": self.by_node}

    @classmethod
    def of(cls, usage: Usage, *, node: str | None = None) -> Spend:
        """A spend holding one usage, attributed to ``node`` if given."""
        return cls(usage, {node: usage} if node else None)

    @classmethod
    def fold(cls, items: Iterable[Spend | tuple[Usage, str | None]]) -> Spend:
        """The sum of spends and ``(usage, node)`` records (how meters keep calls cheaply)."""
        total = _ZERO
        by_node: dict[str, Usage] = {}
        for item in items:
            if isinstance(item, Spend):
                total = total + item.usage
                _merge_into(by_node, item.by_node.items())
            else:
                usage, node = item
                total = total + usage
                if node:
                    _merge_into(by_node, ((node, usage),))
        return cls(total, by_node)

    # The total's fields, read on the spend itself (``spend.units``, ``spend.calls``...).
    @property
    def input_tokens(self) -> int:
        """Prompt tokens."""
        return self.usage.input_tokens

    @property
    def output_tokens(self) -> int:
        """Generated tokens (reasoning included)."""
        return self.usage.output_tokens

    @property
    def reasoning_tokens(self) -> int:
        """Part of ``output_tokens`` spent reasoning."""
        return self.usage.reasoning_tokens

    @property
    def cached_tokens(self) -> int:
        """Part of ``input_tokens`` read from the provider's cache."""
        return self.usage.cached_tokens

    @property
    def calls(self) -> int:
        """Calls made."""
        return self.usage.calls

    @property
    def estimated_calls(self) -> int:
        """Calls whose usage was counted locally."""
        return self.usage.estimated_calls

    @property
    def units(self) -> int:
        """What the budget charged, in meter units (tokens, or micro-USD in cost mode)."""
        return self.usage.units

    @property
    def total_tokens(self) -> int:
        """Prompt plus generated tokens."""
        return self.usage.total_tokens

    def __add__(self, other: Spend) -> Spend:
        if not isinstance(other, Spend):
            return NotImplemented
        if other._is_zero():  # e.g. the reducer's initial ``Spend()``
            return self
        if self._is_zero():
            return other
        by_node = dict(self.by_node)
        _merge_into(by_node, other.by_node.items())
        return Spend(self.usage + other.usage, by_node)

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
        return Spend(self.usage - other.usage, by_node)

    def __bool__(self) -> bool:
        """Whether anything was spent (a call, a unit or a token)."""
        u = self.usage
        return u.calls > 0 or u.units > 0 or u.total_tokens > 0

    def _is_zero(self) -> bool:
        return not self.by_node and self.usage == _ZERO


_ZERO = Usage()


def _merge_into(by_node: dict[str, Usage], items: Iterable[tuple[str, Usage]]) -> None:
    for name, usage in items:
        prev = by_node.get(name)
        by_node[name] = usage if prev is None else prev + usage
