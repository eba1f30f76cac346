"""Charging tool calls (their budgeted LLM calls and declared costs) to the agent's budget."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.types import Command

from budget_graph._internal.threads import arecord_step_spend, record_step_spend
from budget_graph.budget import Spend
from budget_graph.context import current_ledger, open_ledger, use_meter
from budget_graph.errors import BudgetExceededError
from budget_graph.meter import Reservation
from budget_graph.middleware._common import athread_catch_up, report_refused, thread_catch_up

if TYPE_CHECKING:
    from langchain.agents.middleware.types import ToolCallRequest

    from budget_graph.middleware._common import AgentPolicy
    from budget_graph.middleware._meters import AgentMeter

__all__ = ["ToolCharge"]

ToolResult = ToolMessage | Command[Any]


def _issuing_message(state: Any, call_id: str) -> AIMessage | None:
    messages = state.get("messages", []) if isinstance(state, dict) else []
    for msg in reversed(messages):
        if isinstance(msg, AIMessage) and any(tc.get("id") == call_id for tc in msg.tool_calls):
            return msg
    return None


class ToolCharge:
    """One tool call's charge: its step's shared meter, declared cost and LLM spend."""

    def __init__(self, mw: AgentPolicy, request: ToolCallRequest, behind: int = 0) -> None:
        """``behind``: units the thread's total holds beyond the branch's thread spend."""
        self.mw = mw
        self.request = request
        self.call = request.tool_call
        self.name = str(self.call.get("name"))
        self.call_id = str(self.call.get("id"))
        state = request.state if isinstance(request.state, dict) else {}
        if behind:
            spent = int(state.get("thread_token_spend") or 0)
            state = {**state, "thread_token_spend": spent + behind}
        self.state = state
        issuer = _issuing_message(state, self.call_id)
        self.key: Any = None
        self.behind = behind
        if issuer is not None:
            self.key = (id(mw), issuer.id or tuple(tc.get("id") for tc in issuer.tool_calls))
            ids = {str(tc.get("id")) for tc in issuer.tool_calls}
            build = lambda: mw.meter(state)  # noqa: E731
            self.meter: AgentMeter = mw.steps.acquire(self.key, ids, build, behind)
        else:
            self.meter = mw.meter(state)
        self.declared = mw.tool_costs.get(self.name, 0)
        self.reservation: Reservation | None = None
        self.spend = Spend()
        self.charged = 0

    @classmethod
    def start(cls, mw: AgentPolicy, request: ToolCallRequest) -> ToolCharge:
        """The tool call's charge, caught up with the thread's total in a resumed run."""
        return cls(mw, request, thread_catch_up(request.state))

    @classmethod
    async def astart(cls, mw: AgentPolicy, request: ToolCallRequest) -> ToolCharge:
        """Async :meth:`start`."""
        return cls(mw, request, await athread_catch_up(request.state))

    def _delta(self, units: int) -> dict[str, int]:
        """The state update for ``units`` spent; the step's catch-up is added once."""
        if self.key is None:
            behind, self.behind = self.behind, 0
        else:
            behind = self.mw.steps.claim_behind(self.key)
        delta = {"run_token_spend": units, "thread_token_spend": units + behind}
        return {k: v for k, v in delta.items() if v}

    def _refusal(self, exc: BudgetExceededError, action: str) -> ToolMessage:
        from budget_graph.middleware._common import build_budget_message

        bind = self.meter.binding
        text = build_budget_message(
            scope=bind.scope,
            limit=bind.limit,
            spent=bind.spent,
            requested=exc.requested,
            reserved=bind.reserved,
            unit=self.mw.unit,
            action=action,
        )
        return ToolMessage(
            content=f"Tool '{self.name}' stopped: {text}",
            tool_call_id=self.call_id,
            name=self.name,
            status="error",
        )

    def begin(self) -> ToolMessage | None:
        """Reserve the declared cost; a refusal is the tool's (error) result."""
        if not self.declared:
            return None
        try:
            self.reservation = self.meter.reserve(self.declared, node=self.name)
        except BudgetExceededError as exc:
            report_refused(exc, model=None, node=self.name, remaining=self.meter.available())
            return self._refusal(exc, f"running tool '{self.name}'")
        return None

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Make the step's meter current (for budgeted models in the tool) and collect spend."""
        outer = current_ledger()
        with use_meter(self.meter), open_ledger() as ledger:
            try:
                yield
            finally:
                self.spend = ledger.spend
                if outer is not None and ledger.spend:
                    outer.add(ledger.spend)

    def refused(self, exc: BudgetExceededError) -> ToolMessage:
        """The tool's result when an LLM call inside it was refused."""
        return self._refusal(exc, f"an LLM call inside tool '{self.name}'")

    def result(self, result: ToolMessage | Command[Any]) -> ToolMessage | Command[Any]:
        """Commit the declared cost and add the tool's spend to the state update."""
        if self.reservation is not None:
            self.meter.commit(self.reservation, self.declared)
            self.reservation = None
            self.charged += self.declared
        delta = self._delta(self.charged + self.spend.units)
        if not delta:
            return result
        if isinstance(result, ToolMessage):
            return Command(update={"messages": [result], **delta})
        if isinstance(result, Command) and isinstance(result.update, dict):
            update = dict(result.update)
            for key, value in delta.items():
                update[key] = int(update.get(key) or 0) + value
            return Command(
                graph=result.graph, update=update, resume=result.resume, goto=result.goto
            )
        if isinstance(result, Command) and result.update is None:
            return Command(graph=result.graph, update=delta, resume=result.resume, goto=result.goto)
        return result

    def abort(self) -> None:
        """The tool raised: release the declared cost (the tool did not complete)."""
        if self.reservation is not None:
            self.meter.release(self.reservation)
            self.reservation = None

    def _kept_update(self) -> dict[str, int] | None:
        self.abort()
        return self._delta(self.spend.units) or None

    def _config(self) -> Any:
        return getattr(self.request.runtime, "config", None) or var_child_runnable_config.get()

    def kept(self) -> None:
        """The tool raised or was paused by ``interrupt()``: keep what its LLM calls spent.

        LangGraph drops the writes of a task that raised or paused (a paused one reruns
        on resume); the calls it made were billed, so their spend is written to the
        checkpoint the step started from
        (:func:`~budget_graph._internal.threads.record_step_spend`), where the agent's
        state gets it once: ``get_state`` shows it, and the next run or the resume applies
        it. The declared cost is released: the tool did not complete.
        """
        update = self._kept_update()
        if update is not None:
            record_step_spend(self._config(), update)

    async def akept(self) -> None:
        """Async :meth:`kept` (for async checkpointers)."""
        update = self._kept_update()
        if update is not None:
            await arecord_step_spend(self._config(), update)

    def done(self) -> None:
        """Tell the step this tool call is over."""
        if self.key is not None:
            self.mw.steps.done(self.key, self.call_id)

    # --- the hooks' twins: the decisions above, driven around the tool's handler ---------

    def run(self, handler: Callable[[ToolCallRequest], ToolResult]) -> ToolResult:
        """Run the tool through ``handler``: reserve, charge, or refuse (``wrap_tool_call``)."""
        try:
            refused = self.begin()
            if refused is not None:
                return self.result(refused)
            with self.scope():
                try:
                    result = handler(self.request)
                except BudgetExceededError as exc:
                    result = self.refused(exc)
            return self.result(result)
        except BaseException:  # raised or paused: what its LLM calls spent is kept
            self.kept()
            raise
        finally:
            self.done()

    async def arun(self, handler: Callable[[ToolCallRequest], Awaitable[ToolResult]]) -> ToolResult:
        """Async :meth:`run` (``awrap_tool_call``)."""
        try:
            refused = self.begin()
            if refused is not None:
                return self.result(refused)
            with self.scope():
                try:
                    result = await handler(self.request)
                except BudgetExceededError as exc:
                    result = self.refused(exc)
            return self.result(result)
        except BaseException:
            await self.akept()
            raise
        finally:
            self.done()
