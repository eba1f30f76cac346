"""``TokenBudgetMiddleware``: a hard token (or cost) cap for ``create_agent`` agents."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from langchain.agents.middleware.types import (
    AgentMiddleware,
    ContextT,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    ResponseT,
    hook_config,
)
from langchain_core.messages import AIMessage
from langchain_core.runnables.config import var_child_runnable_config

from budget_graph._internal.threads import athread_counter, thread_counter
from budget_graph.budget import Budget, ModelPrice
from budget_graph.context import current_meter
from budget_graph.errors import BudgetExceededError
from budget_graph.middleware._common import (
    FINAL_NOTE,
    TokenBudgetExceededError,
    TokenBudgetState,
    _budget_message,
    _nonneg,
    _positive_int,
    build_budget_message,
    report_exhausted,
)
from budget_graph.middleware._limits import (
    COUNTS,
    EXIT_BEHAVIORS,
    CountArg,
    ExitBehavior,
    limits_in_units,
    reserve_units,
    resume_limits,
    warning_note,
)
from budget_graph.middleware._meters import AgentMeter, StepMeters
from budget_graph.middleware._model_call import ModelCall
from budget_graph.middleware._tools import ToolCharge

if TYPE_CHECKING:
    from langchain.agents.middleware.types import ToolCallRequest
    from langchain_core.messages import ToolMessage
    from langgraph.runtime import Runtime
    from langgraph.types import Command

__all__ = [
    "FINAL_NOTE",
    "TokenBudgetExceededError",
    "TokenBudgetMiddleware",
    "TokenBudgetState",
    "build_budget_message",
]


class TokenBudgetMiddleware(AgentMiddleware[TokenBudgetState[ResponseT], ContextT, ResponseT]):
    """Caps the tokens (or money) an agent spends per run and per thread, before each call.

    Before each model call the middleware reserves the prompt plus the call's
    ``max_tokens``, clamped to what is left, on a meter holding the run's and the
    thread's spend; a call that cannot fit is refused before anything is sent. After
    the call it commits the provider's real usage. Tool calls are charged to the same
    budget: budgeted models called inside tools reserve on it (the meter is current
    inside tools, see :func:`~budget_graph.current_meter`) and ``tool_costs`` declares
    a fixed cost per tool. Parallel tool calls of one step share one meter.

    Its place in ``middleware=[...]`` does not matter: a model that a middleware
    wrapped inside it swaps in (``ModelFallbackMiddleware``, a router) through
    ``request.override(model=...)`` is budgeted on the same meter.

    Example:
        ```python
        from langchain.agents import create_agent
        from langgraph.checkpoint.memory import InMemorySaver
        from budget_graph.middleware import TokenBudgetMiddleware

        agent = create_agent(
            model,
            tools=[search],
            middleware=[TokenBudgetMiddleware(run_limit=20_000, thread_limit=100_000,
                                              count="total", exit_behavior="finalize")],
            checkpointer=InMemorySaver(),
        )
        ```

    """

    state_schema = TokenBudgetState  # type: ignore[assignment]

    def __init__(
        self,
        *,
        run_limit: int | None = None,
        thread_limit: int | None = None,
        count: CountArg = "output",
        run_limit_usd: float | None = None,
        thread_limit_usd: float | None = None,
        prices: Mapping[str, ModelPrice | Mapping[str, float]] | None = None,
        exit_behavior: ExitBehavior = "end",
        warn_at: float | None = None,
        tool_costs: Mapping[str, int] | None = None,
        reserve: int | None = None,
        min_output_tokens: int = 16,
        max_tokens_param: str | None = None,
        prompt_margin: float = 0.05,
        scope: str | None = None,
    ) -> None:
        """Configure the limits.

        Args:
            run_limit: Tokens one run (one ``invoke`` with new input) may spend; ``None``
                means no limit.
            thread_limit: Tokens the whole thread may spend across runs and forks (kept in
                its checkpoints); ``None`` means no limit.
            count: What counts: ``"output"`` tokens, ``"total"`` (``"input+output"``)
                tokens, or ``"cost"`` (priced per model from ``prices``).
            run_limit_usd: Run limit in USD (``count="cost"``).
            thread_limit_usd: Thread limit in USD (``count="cost"``).
            prices: Model name -> :class:`~budget_graph.ModelPrice` (``count="cost"``).
            exit_behavior: When a model call would exceed a limit: ``"end"`` ends with an
                AIMessage naming the limit and the numbers; ``"error"`` raises
                :class:`TokenBudgetExceededError`; ``"finalize"`` makes one last call
                with tools unbound, clamped to ``reserve`` plus what is left;
                the reserve grows to pay for the final call's real prompt, counted before
                each ordinary call; ``"interrupt"`` asks a human (LangGraph ``interrupt``)
                for a new limit: resume with ``Command(resume={"run_limit": n})`` (or
                ``thread_limit``, ``*_limit_usd``), or ``Command(resume=False)`` to end.
            warn_at: Fraction of a limit (e.g. ``0.8``) from which each model call gets a
                system note saying how much remains, so the model can wrap up.
            tool_costs: Tool name -> units charged whenever that tool runs (tokens, or
                micro-USD with ``count="cost"``), reserved before it runs.
            reserve: Units held back for the final answer of ``"finalize"`` (ordinary
                calls cannot use them), on top of the final call's prompt when prompt
                tokens count. Defaults to a tenth of the smallest limit with
                ``"finalize"``, else 0.
            min_output_tokens: An ordinary call whose output the budget would clamp below
                this many tokens is refused (and ``exit_behavior`` applies) instead of
                being sent for a truncated, useless answer. ``1`` clamps to the last token.
            max_tokens_param: The output-cap keyword of a chat model client budget_graph
                does not know; known clients are detected (see ``docs/providers.md``).
            prompt_margin: Fraction added to the locally counted prompt when reserving.
            scope: The agent's name as a level of nested budgets: its run limit's scope is
                ``scope`` and its thread limit's ``"<scope>:thread"`` (errors, spans).
                An agent running inside a budgeted run (a ``with_budget`` graph) nests in
                that run's meter either way: every call must fit both.

        Raises:
            ValueError: Naming the argument and value, for a missing or invalid limit,
                exit behaviour, count, fraction, cost or reserve.

        """
        super().__init__()
        if exit_behavior not in EXIT_BEHAVIORS:
            raise ValueError(
                f"Invalid exit_behavior: {exit_behavior}. "
                "Must be 'end', 'error', 'finalize' or 'interrupt'"
            )
        if count not in COUNTS:
            raise ValueError(f"Invalid count: {count}. Must be one of {sorted(COUNTS)}")
        self.count = count
        self._mode = COUNTS[count]
        self.prices = {
            k: v if isinstance(v, ModelPrice) else ModelPrice(**v)
            for k, v in (prices or {}).items()
        }
        self.run_limit, self.thread_limit = limits_in_units(
            count=count,
            run_limit=run_limit,
            thread_limit=thread_limit,
            run_limit_usd=run_limit_usd,
            thread_limit_usd=thread_limit_usd,
            prices=self.prices,
        )
        """Limits in meter units (tokens, or micro-USD with ``count="cost"``)."""
        if warn_at is not None and not 0 < warn_at < 1:
            raise ValueError(f"warn_at must be a fraction in (0, 1) (got {warn_at!r})")
        self.warn_at = warn_at
        self.tool_costs = {
            name: _nonneg(f"tool_costs[{name!r}]", cost)
            for name, cost in (tool_costs or {}).items()
        }
        reserve = reserve_units(reserve, (self.run_limit, self.thread_limit), exit_behavior)
        self.reserve = reserve
        self.exit_behavior = exit_behavior
        self.min_output_tokens = _positive_int("min_output_tokens", min_output_tokens)
        self.max_tokens_param = max_tokens_param
        self.prompt_margin = prompt_margin
        self.scope = scope
        self.unit = "micro-USD" if self._mode == "cost" else "tokens"
        self.steps = StepMeters()
        """The meters shared by the parallel tool calls of one step."""
        self._budgets: dict[tuple[int, int], Budget] = {}

    # --- meters -------------------------------------------------------------------

    def _budget(self, limit: int, reserve: int | None = None) -> Budget:
        reserve = min(self.reserve if reserve is None else reserve, limit - 1)
        budget = self._budgets.get((limit, reserve))
        if budget is None:
            common: dict[str, Any] = {"reserve": reserve, "prompt_margin": self.prompt_margin}
            if self._mode == "cost":
                budget = Budget(
                    count="cost", max_cost_usd=limit / 1_000_000, prices=self.prices, **common
                )
            else:
                budget = Budget(max_tokens=limit, count=self._mode, **common)  # type: ignore[arg-type]
            if len(self._budgets) < 256:
                self._budgets[limit, reserve] = budget
        return budget

    def limits(self, state: Mapping[str, Any]) -> tuple[int | None, int | None]:
        """Run and thread limits in force: the configured ones, or those a human approved."""
        run = state.get("token_budget_run_limit") or self.run_limit
        thread = state.get("token_budget_thread_limit") or self.thread_limit
        return run, thread

    def meter(
        self, state: Mapping[str, Any], extra_spent: int = 0, *, reserve: int | None = None
    ) -> AgentMeter:
        """A meter holding the run's and the thread's spend recorded in ``state``.

        ``reserve`` replaces the configured reserve (the units ordinary calls leave for
        the final answer) for this meter.
        """
        run_limit, thread_limit = self.limits(state)
        levels: list[tuple[str, Budget, int]] = []
        run_scope = self.scope or "run"
        if thread_limit is not None:
            spent = max(int(state.get("thread_token_spend") or 0) + extra_spent, 0)
            scope = f"{self.scope}:thread" if self.scope else "thread"
            levels.append((scope, self._budget(thread_limit, reserve), spent))
        if run_limit is not None:
            spent = max(int(state.get("run_token_spend") or 0) + extra_spent, 0)
            levels.append((run_scope, self._budget(run_limit, reserve), spent))
        # Nested budgets (#25): inside a budgeted run, the agent's limits are levels under
        # that run's meter (inside this agent's own tools, under what encloses the agent;
        # inside another agent's tools, under that agent's limits).
        enclosing = current_meter()
        if isinstance(enclosing, AgentMeter) and enclosing.owner is self:
            enclosing = enclosing.enclosing
        return AgentMeter.chain(levels, parent=enclosing, owner=self)

    def spent(self, state: Mapping[str, Any]) -> tuple[int, int]:
        """Units the run and the thread have spent, from ``state``."""
        return int(state.get("run_token_spend") or 0), int(state.get("thread_token_spend") or 0)

    def error(
        self, meter: AgentMeter, state: Mapping[str, Any], requested: int | None
    ) -> TokenBudgetExceededError:
        """The error for the binding limit of ``meter``."""
        bind = meter.binding
        run_spent, thread_spent = self.spent(state)
        return TokenBudgetExceededError(
            scope=bind.scope,
            limit=bind.limit,
            spent=bind.spent,
            requested=requested,
            reserved=bind.reserved,
            unit=self.unit,
            run_spent=run_spent,
            thread_spent=thread_spent,
        )

    def warning(self, meter: AgentMeter) -> str | None:
        """The system note for a call made past ``warn_at`` of a limit, else ``None``."""
        return warning_note(meter, warn_at=self.warn_at, unit=self.unit)

    # --- hooks --------------------------------------------------------------------

    def _run_start(
        self, state: Mapping[str, Any], thread_total: int | None
    ) -> dict[str, Any] | None:
        updates: dict[str, Any] = {}
        run_spent = int(state.get("run_token_spend") or 0)
        if run_spent:
            updates["run_token_spend"] = -run_spent
        # A run from an earlier checkpoint (a fork) starts from the thread's total, not
        # its branch's: the thread's head before the run holds every branch's spend.
        behind = (thread_total or 0) - int(state.get("thread_token_spend") or 0)
        if behind > 0:
            updates["thread_token_spend"] = behind
        if state.get("token_budget_run_limit") is not None:
            updates["token_budget_run_limit"] = None
        return updates or None

    def before_agent(
        self, state: TokenBudgetState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Start a new run: reset the run's spend and any run limit a human approved.

        The thread's spend is raised to the thread's total over every branch (read from
        the checkpointer), so a fork cannot spend the thread's limit again.
        """
        total = thread_counter(var_child_runnable_config.get(), "thread_token_spend")
        return self._run_start(state, total)

    async def abefore_agent(
        self, state: TokenBudgetState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Async :meth:`before_agent`."""
        total = await athread_counter(var_child_runnable_config.get(), "thread_token_spend")
        return self._run_start(state, total)

    @hook_config(can_jump_to=["end"])
    def before_model(
        self, state: TokenBudgetState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """End (or raise) at once when a limit is already spent (``"end"``/``"error"``).

        The exact check, with the prompt counted, happens in :meth:`wrap_model_call`.
        """
        if self.exit_behavior not in ("end", "error"):
            return None
        meter = self.meter(state)
        if meter.available() > 0:
            return None
        exc = self.error(meter, state, None)
        report_exhausted(exc, self.exit_behavior)
        if self.exit_behavior == "error":
            raise exc
        return {"jump_to": "end", "messages": [_budget_message(exc)]}

    @hook_config(can_jump_to=["end"])
    async def abefore_model(
        self, state: TokenBudgetState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Async :meth:`before_model`."""
        return self.before_model(state, runtime)

    def wrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], ModelResponse[ResponseT]],
    ) -> ModelResponse[ResponseT] | AIMessage | ExtendedModelResponse[ResponseT]:
        """Reserve, call, commit; on refusal apply ``exit_behavior``."""
        call = ModelCall.start(self, request)
        step: Any = call.request()
        while isinstance(step, ModelRequest):
            try:
                call.precheck(step)
                return call.done(handler(step))
            except BudgetExceededError as exc:
                step = call.refused(exc)
            except BaseException:  # what it billed before failing is kept
                call.kept()
                raise
        return step

    async def awrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], Awaitable[ModelResponse[ResponseT]]],
    ) -> ModelResponse[ResponseT] | AIMessage | ExtendedModelResponse[ResponseT]:
        """Async :meth:`wrap_model_call`."""
        call = await ModelCall.astart(self, request)
        step: Any = call.request()
        while isinstance(step, ModelRequest):
            try:
                call.precheck(step)
                return call.done(await handler(step))
            except BudgetExceededError as exc:
                step = call.refused(exc)
            except BaseException:  # what it billed before failing is kept
                await call.akept()
                raise
        return step

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        """Run a tool on the step's meter; charge its LLM calls and declared cost."""
        return ToolCharge.start(self, request).run(handler)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async :meth:`wrap_tool_call`."""
        return await (await ToolCharge.astart(self, request)).arun(handler)

    # --- interrupt ----------------------------------------------------------------

    def parse_resume(self, value: Any) -> dict[str, int] | None:
        """State updates for a human's answer to the budget interrupt; ``None`` to end."""
        return resume_limits(value, cost=self._mode == "cost")
