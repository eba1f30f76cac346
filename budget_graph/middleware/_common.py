"""State schema, limit message and error of :class:`TokenBudgetMiddleware`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, NotRequired, Protocol

from langchain.agents.middleware.types import AgentState, PrivateStateAttr, ResponseT
from langchain_core.messages import AIMessage, SystemMessage
from langchain_core.runnables.config import var_child_runnable_config
from langgraph._internal._constants import CONFIG_KEY_RESUMING

from budget_graph._internal import observe
from budget_graph._internal.threads import athread_counter, thread_counter
from budget_graph.errors import BudgetExceededError

if TYPE_CHECKING:
    from budget_graph.middleware._meters import AgentMeter, StepMeters

__all__ = [
    "FINAL_NOTE",
    "AgentPolicy",
    "TokenBudgetExceededError",
    "TokenBudgetState",
    "add_units",
    "athread_catch_up",
    "build_budget_message",
    "report_exhausted",
    "report_refused",
    "thread_catch_up",
]

FINAL_NOTE = (
    "The token budget for this task is nearly spent. Do not call any tools. "
    "Give your best final answer now, briefly, from what you already know."
)
"""System note added to the last call of ``exit_behavior="finalize"``."""


def add_units(current: int | None, delta: int | None) -> int:
    """Reducer for spend counters: nodes write deltas (a negative delta resets a run)."""
    return (current or 0) + (delta or 0)


class TokenBudgetState(AgentState[ResponseT]):
    """State schema of :class:`TokenBudgetMiddleware`.

    Spend counters take deltas (parallel tool calls add up). ``thread_token_spend``
    lives as long as the thread's checkpoints; ``run_token_spend`` is reset when a
    new run starts, but survives an interrupt or a retry of the same run, so a
    resumed run cannot spend its budget twice.
    """

    thread_token_spend: NotRequired[Annotated[int, PrivateStateAttr, add_units]]
    run_token_spend: NotRequired[Annotated[int, PrivateStateAttr, add_units]]
    token_budget_run_limit: NotRequired[Annotated[int | None, PrivateStateAttr]]
    token_budget_thread_limit: NotRequired[Annotated[int | None, PrivateStateAttr]]


def build_budget_message(
    *,
    scope: str,
    limit: int,
    spent: int,
    requested: int | None,
    reserved: int = 0,
    unit: str = "tokens",
    action: str = "the next model call",
) -> str:
    """The one message used for the raised error, the final AIMessage and refused tools.

    Example:
        >>> build_budget_message(scope="run", limit=1000, spent=950, requested=120)
        'Token budget: the next model call would exceed the run limit of 1000 tokens (run_spent=950, reserved=0, requested=120, remaining=50)'

    """  # noqa: E501
    remaining = max(limit - spent - reserved, 0)
    if requested is None:
        return (
            f"Token budget exhausted: the {scope} limit of {limit} {unit} is spent "
            f"({scope}_spent={spent}, remaining={remaining})"
        )
    return (
        f"Token budget: {action} would exceed the {scope} limit of {limit} {unit} "
        f"({scope}_spent={spent}, reserved={reserved}, requested={requested}, "
        f"remaining={remaining})"
    )


class TokenBudgetExceededError(BudgetExceededError):
    """Raised with ``exit_behavior="error"`` when a model call would exceed a token limit.

    Attributes (besides :class:`BudgetExceededError`'s ``limit``, ``spent``,
    ``requested``, ``scope``, ``reserved``, ``unit``):
        run_spent: Units the run had spent.
        thread_spent: Units the thread had spent.
    """

    def __init__(
        self,
        *,
        scope: str,
        limit: int,
        spent: int,
        requested: int | None,
        reserved: int = 0,
        unit: str = "tokens",
        run_spent: int = 0,
        thread_spent: int = 0,
    ) -> None:
        """Build the error and its message from the numbers."""
        self.run_spent = run_spent
        self.thread_spent = thread_spent
        super().__init__(
            limit=limit,
            spent=spent,
            requested=requested or 0,
            scope=scope,
            reserved=reserved,
            unit=unit,
            message=build_budget_message(
                scope=scope,
                limit=limit,
                spent=spent,
                requested=requested,
                reserved=reserved,
                unit=unit,
            ),
        )
        self._requested_or_none = requested

    def __reduce__(self):  # type: ignore[no-untyped-def]
        kwargs = {
            "scope": self.scope,
            "limit": self.limit,
            "spent": self.spent,
            "requested": self._requested_or_none,
            "reserved": self.reserved,
            "unit": self.unit,
            "run_spent": self.run_spent,
            "thread_spent": self.thread_spent,
        }
        return (_rebuild_error, (kwargs,))


def _resumed_config() -> Any:
    config = var_child_runnable_config.get()
    return config if ((config or {}).get("configurable") or {}).get(CONFIG_KEY_RESUMING) else None


def _behind(state: Any, thread_total: int | None) -> int:
    spent = int((state if isinstance(state, Mapping) else {}).get("thread_token_spend") or 0)
    return max((thread_total or 0) - spent, 0)


def thread_catch_up(state: Any) -> int:
    """Units a resumed run's branch lacks of the thread's total (``0`` when not resuming).

    A run resumed or replayed from an earlier checkpoint without new input (time travel,
    an ``update_state`` fork) starts from its branch's spend; its first step raises it to
    the thread's total, as a new run does (read from the checkpointer).
    """
    config = _resumed_config()
    return 0 if config is None else _behind(state, thread_counter(config, "thread_token_spend"))


async def athread_catch_up(state: Any) -> int:
    """Async :func:`thread_catch_up`."""
    config = _resumed_config()
    if config is None:
        return 0
    return _behind(state, await athread_counter(config, "thread_token_spend"))


def report_refused(
    error: BudgetExceededError, *, model: str | None, node: str | None, remaining: int
) -> None:
    """Tell observers of a charge refused before it was sent (``budget.reservation_refused``).

    The same event, with the same fields, as a call ``budgeted()`` refuses.
    """
    observe.emit(
        "budget.reservation_refused",
        model=model,
        node=node,
        requested=error.requested,
        remaining=remaining,
        limit=error.limit,
        scope=error.scope,
    )


def report_exhausted(error: TokenBudgetExceededError, exit_behavior: str) -> None:
    """Tell observers a limit stopped the agent's next model call (``budget.exhausted``).

    It carries ``stop_reason="budget"`` unless a human may raise the limit (``"interrupt"``).
    """
    observe.emit(
        "budget.exhausted",
        limit=error.limit,
        spent=error.spent,
        requested=error._requested_or_none,
        scope=error.scope,
        exit_behavior=exit_behavior,
        stop_reason=None if exit_behavior == "interrupt" else "budget",
    )


def _rebuild_error(kwargs: dict[str, Any]) -> TokenBudgetExceededError:
    return TokenBudgetExceededError(**kwargs)


def _with_note(system: SystemMessage | None, note: str) -> SystemMessage:
    if system is None:
        return SystemMessage(content=note)
    if isinstance(system.content, str):
        return SystemMessage(content=f"{system.content}\n\n{note}" if system.content else note)
    return SystemMessage(content=[*system.content, {"type": "text", "text": note}])


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int (got {value!r})")
    return value


def _usd_units(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{name} must be a positive number of USD (got {value!r})")
    return int(round(value * 1_000_000))


def _nonneg(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0 (got {value!r})")
    return value


def _budget_message(exc: TokenBudgetExceededError) -> AIMessage:
    return AIMessage(
        content=str(exc),
        response_metadata={"stop_reason": "budget", "budget_scope": exc.scope},
    )


class AgentPolicy(Protocol):
    """What a model call and a tool call read from :class:`TokenBudgetMiddleware`.

    (Typed by this protocol, not the class, so those modules need not import it back.)
    """

    max_tokens_param: str | None
    min_output_tokens: int
    reserve: int
    unit: str
    exit_behavior: Literal["end", "error", "finalize", "interrupt"]
    tool_costs: dict[str, int]
    steps: StepMeters

    def meter(
        self, state: Mapping[str, Any], extra_spent: int = 0, *, reserve: int | None = None
    ) -> AgentMeter:
        """A meter holding the run's and the thread's spend recorded in ``state``."""

    def warning(self, meter: AgentMeter) -> str | None:
        """The system note for a call made past ``warn_at`` of a limit, else ``None``."""

    def error(
        self, meter: AgentMeter, state: Mapping[str, Any], requested: int | None
    ) -> TokenBudgetExceededError:
        """The error for the binding limit of ``meter``."""

    def limits(self, state: Mapping[str, Any]) -> tuple[int | None, int | None]:
        """Run and thread limits in force."""

    def spent(self, state: Mapping[str, Any]) -> tuple[int, int]:
        """Units the run and the thread have spent, from ``state``."""

    def parse_resume(self, value: Any) -> dict[str, Any] | None:
        """The state update a human's resume value approves, if any."""
