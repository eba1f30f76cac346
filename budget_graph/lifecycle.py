"""One budgeted call's lifecycle: count, reserve (clamped), call, then commit, release or charge.

Written once for every way a call is made: the sync, async and streaming paths of
:func:`~budget_graph.budgeted` (and so the agent middleware, which calls through it).
The meter work has a sync and an async spelling (``begin``/``abegin``...); everything
else, including what a call is charged, is decided in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from budget_graph import providers
from budget_graph._internal import observe
from budget_graph.accounting import EXACT, PromptCounting, count_messages, count_output
from budget_graph.budget import Budget, Usage
from budget_graph.context import current_ledger
from budget_graph.errors import BudgetExceededError
from budget_graph.meter import BaseMeter, Reservation

__all__ = ["Call", "output_cap"]


def output_cap(model: Any, kwargs: Mapping[str, Any], param: str | None) -> providers.OutputCap:
    """The per-call output cap a call asks for, before the budget clamps it.

    The rule of :func:`budget_graph.providers.output_cap`: the call's own cap (its
    provider client's keyword, else the model's field), else the model profile's
    maximum output, else ``DEFAULT_OUTPUT_CAP``; never the whole remaining budget.
    ``param`` names the keyword of a client budget_graph does not know.
    """
    return providers.output_cap(model, kwargs, cap_param=param)


def _tighter(a: int | None, b: int | None) -> int | None:
    """The smaller of two caps, where ``None`` means no cap."""
    if a is None:
        return b
    return a if b is None or a <= b else b


_TIMEOUT_NAMES = frozenset(
    {"APITimeoutError", "ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException"}
)


def _outcome_unknown(exc: BaseException) -> bool:
    """Whether a failed call may still have been billed: a timeout or a cancellation."""
    if isinstance(exc, (TimeoutError, asyncio.CancelledError)):
        return True
    return any(cls.__name__ in _TIMEOUT_NAMES for cls in type(exc).__mro__)


_UNMETERED = Budget(max_tokens=2**62)
"""How a call that runs without a meter (allowed explicitly) is counted: prompt + output."""


class Call(observe.CallInfo):
    """One call's reservation: reserve → call → commit / release / charge on cancel.

    It is also the call's :class:`~budget_graph._internal.observe.CallInfo`, the record
    observers receive (``call_started`` once reserved, ``call_finished`` once settled).
    """

    __slots__ = (
        "budget",
        "capture_output",
        "counting",
        "final",
        "kwargs",
        "messages",
        "min_output",
        "param",
        "place_cap",
        "reservation",
    )

    def __init__(
        self,
        meter: BaseMeter | None,
        messages: Sequence[BaseMessage],
        kwargs: Mapping[str, Any],
        *,
        model: str | None,
        node: str | None,
        requested: int | None,
        n: int = 1,
        final: bool = False,
        param: str = "max_tokens",
        capture_output: bool = False,
        min_output: int = 1,
        counting: PromptCounting = EXACT,
        place_cap: Callable[[dict[str, Any], int], dict[str, Any]] | None = None,
    ) -> None:
        """A call of ``model`` with ``kwargs`` on ``meter``; ``requested`` is its own output cap.

        Without a meter (an unbudgeted call, allowed explicitly) nothing is reserved
        or clamped; the call is still counted, recorded and observed.

        ``final`` lets it use the budget's ``reserve``; ``param`` is the model's keyword
        for the output cap; ``capture_output`` keeps the completion for observers.
        From the provider client (see :mod:`budget_graph.providers`): ``min_output``, the
        fewest output tokens the call can be sent with; ``counting``, how its prompt is
        estimated; ``place_cap``, which puts the clamped cap where the client reads it
        (default: the ``param`` keyword).
        """
        super().__init__(model, node)
        self.meter = meter
        self.budget: Budget = meter.budget if meter is not None else _UNMETERED
        self.messages = messages
        self.kwargs = dict(kwargs)
        self.final = final
        self.param = param
        self.capture_output = capture_output
        self.min_output = max(min_output, 1)
        self.counting = counting
        self.place_cap = place_cap
        self.reservation: Reservation | None = None
        self.requested_max_tokens = requested
        self.n = n

    # --- reserve ------------------------------------------------------------------

    def _ask(self) -> tuple[int, int, int]:
        """Count the prompt: the units to hold for it, the output bound and its units."""
        budget, model = self.budget, self.model
        counted = count_messages(
            self.messages, model=model, tools=self.kwargs.get("tools"), counting=self.counting
        )
        self.prompt_tokens_estimate = counted
        prompt_units = budget.units(input_tokens=budget.prompt_reservation(counted), model=model)
        bound = _tighter(self.requested_max_tokens, budget.per_call_max_tokens) or 0
        bound_units = budget.units(output_tokens=bound, model=model) if bound else 0
        return prompt_units, bound, bound_units

    def _minimum(self, prompt_units: int) -> int:
        """Units of the smallest call that may be sent: ``min_output`` tokens per sample."""
        out = self.budget.units(output_tokens=self.min_output, model=self.model)
        return prompt_units + self.n * out

    def _granted(
        self, meter: BaseMeter, reservation: Reservation, out_units: int, bound: int
    ) -> bool:
        """Take a reservation granting ``out_units`` per sample; ``False``: under ``min_output``."""
        cap = self.budget.max_output_for(out_units, model=self.model)
        if bound and bound < cap:
            cap = bound
        if cap < self.min_output:
            return False
        self.reservation = reservation
        self.max_tokens = cap
        self.reserved_units = reservation.units
        if self.place_cap is not None:
            placed = self.place_cap(self.kwargs, cap)
            self.kwargs.clear()  # in place: observers hold this dict as the request
            self.kwargs.update(placed)
        else:
            self.kwargs[self.param] = cap
        if observe.state.active:
            self.limit, self.spent_before = meter.limit, meter.spent
            self.remaining_before = meter.remaining
            observe.notify("call_started", self)
        return True

    def _refused(self, meter: BaseMeter, error: BudgetExceededError) -> BudgetExceededError:
        observe.emit(
            "budget.reservation_refused",
            model=self.model,
            node=self.node,
            requested=error.requested,
            remaining=meter.available(final=self.final),
            limit=error.limit,
        )
        return error

    def _too_small(self, meter: BaseMeter, prompt_units: int) -> BudgetExceededError:
        """The refusal when even the smallest reservation buys no whole output token."""
        return self._refused(
            meter,
            BudgetExceededError(
                limit=meter.limit,
                spent=meter.spent,
                requested=self._minimum(prompt_units),
                scope=meter.scope,
                reserved=meter.reserved,
                unit=self.budget.unit,
            ),
        )

    def begin(self) -> None:
        """Reserve the prompt plus the clamped output, or raise :class:`BudgetExceededError`.

        A call that does not fit asks the meter for its smallest form (one output token
        per sample), so the refusal comes from, and names, the level that refused.
        """
        meter = self.meter
        if meter is None:
            observe.notify("call_started", self)
            return
        prompt_units, bound, bound_units = self._ask()
        held = meter.reserve_output(
            prompt_units, n=self.n, max_output=bound_units, final=self.final, node=self.node
        )
        if held is not None and self._granted(meter, *held, bound):
            return
        if held is not None:
            meter.release(held[0])
        try:
            res = meter.reserve(self._minimum(prompt_units), final=self.final, node=self.node)
        except BudgetExceededError as exc:
            raise self._refused(meter, exc) from None
        if not self._granted(meter, res, (res.units - prompt_units) // self.n, bound):
            meter.release(res)
            raise self._too_small(meter, prompt_units)

    async def abegin(self) -> None:
        """:meth:`begin` for async code."""
        meter = self.meter
        if meter is None:
            observe.notify("call_started", self)
            return
        prompt_units, bound, bound_units = self._ask()
        held = await meter.areserve_output(
            prompt_units, n=self.n, max_output=bound_units, final=self.final, node=self.node
        )
        if held is not None and self._granted(meter, *held, bound):
            return
        if held is not None:
            await meter.arelease(held[0])
        try:
            res = await meter.areserve(
                self._minimum(prompt_units), final=self.final, node=self.node
            )
        except BudgetExceededError as exc:
            raise self._refused(meter, exc) from None
        if not self._granted(meter, res, (res.units - prompt_units) // self.n, bound):
            await meter.arelease(res)
            raise self._too_small(meter, prompt_units)

    # --- settle -------------------------------------------------------------------

    def charge(
        self, usage: Usage | None, text: str = "", output: BaseMessage | None = None
    ) -> Usage:
        """What the call is charged: the reported usage, else counted locally (estimated).

        Counted locally, the output is ``output`` (the reply, tool calls' names and
        arguments included) when given, else ``text``.
        """
        if usage is None:
            self.estimated = True
            prompt = self.prompt_tokens_estimate or count_messages(
                self.messages, model=self.model, counting=self.counting
            )
            usage = Usage(
                input_tokens=prompt,
                output_tokens=count_output(
                    output if output is not None else text,
                    model=self.model,
                    counting=self.counting,
                ),
                calls=1,
                estimated_calls=1,
            )
        units = self.budget.units(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            model=self.model,
        )
        return Usage(
            usage.input_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
            usage.cached_tokens,
            usage.calls or 1,
            usage.estimated_calls,
            units,
        )

    def charge_unknown(self) -> Usage:
        """The charge of a call whose outcome is unknown: its whole reservation, estimated."""
        self.estimated = True
        held = self.budget.prompt_reservation(self.prompt_tokens_estimate)
        out = (self.max_tokens or 0) * self.n
        units = self.reservation.units if self.reservation is not None else 0
        return Usage(input_tokens=held, output_tokens=out, calls=1, estimated_calls=1, units=units)

    def settle(
        self,
        error: BaseException | None = None,
        usage: Usage | None = None,
        text: str = "",
        *,
        received: bool = False,
        output: BaseMessage | None = None,
    ) -> Usage | None:
        """What to commit when the call ends, or ``None`` to release its reservation.

        - finished: the reported usage, else the prompt and ``text`` counted locally;
        - failed with usage reported (or an error's ``billed_usage``): that usage;
        - abandoned (a stream closed early) or cancelled after output began
          (``received``): the prompt plus what was received, estimated;
        - timed out or cancelled with nothing received: the whole reservation, estimated;
        - any other failure with nothing reported: ``None`` (released, not billed).
        """
        if error is not None:
            self.error = error
            billed = getattr(error, "billed_usage", None)
            if usage is None and isinstance(billed, Usage):
                # The error says what the request was billed (e.g. a replayed benchmark
                # bills an unrecorded request at an estimate: a miss is never free).
                self.estimated = True
                usage = billed
        if error is None or usage is not None:
            return self.charge(usage, text, output)
        if isinstance(error, GeneratorExit) or (received and _outcome_unknown(error)):
            return self.charge(None, text, output)
        if _outcome_unknown(error):
            return self.charge_unknown()
        return None

    def _recorded(self, usage: Usage | None, text: str) -> None:
        if usage is not None:
            self.usage, self.units = usage, usage.units
            ledger = current_ledger()
            if ledger is not None:
                ledger.add(usage, self.node)
        if observe.state.active:
            if usage is not None and text and (self.capture_output or observe.content_wanted()):
                self.output_text = text
            observe.notify("call_finished", self)

    def end(
        self,
        error: BaseException | None = None,
        usage: Usage | None = None,
        text: str = "",
        *,
        received: bool = False,
        output: BaseMessage | None = None,
    ) -> Usage | None:
        """Settle the call on the meter (see :meth:`settle`) and record it.

        ``output`` is the reply (when known), counted if the provider reported no usage.
        """
        charged = self.settle(error, usage, text, received=received, output=output)
        res, self.reservation, meter = self.reservation, None, self.meter
        if res is not None and meter is not None:
            if charged is None:
                meter.release(res)
            else:
                meter.commit(res, charged.units, usage=charged)
        self._recorded(charged, text)
        return charged

    async def aend(
        self,
        error: BaseException | None = None,
        usage: Usage | None = None,
        text: str = "",
        *,
        received: bool = False,
        output: BaseMessage | None = None,
    ) -> Usage | None:
        """:meth:`end` for async code."""
        charged = self.settle(error, usage, text, received=received, output=output)
        res, self.reservation, meter = self.reservation, None, self.meter
        if res is not None and meter is not None:
            if charged is None:
                await meter.arelease(res)
            else:
                await meter.acommit(res, charged.units, usage=charged)
        self._recorded(charged, text)
        return charged
