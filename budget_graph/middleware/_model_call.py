"""One model node run under :class:`TokenBudgetMiddleware`: reserve, call, exit behaviour."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain.agents.middleware.types import ExtendedModelResponse, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.types import Command, interrupt

from budget_graph._internal.threads import arecord_step_spend, record_step_spend
from budget_graph.accounting import count_messages
from budget_graph.budgeted import budgeted
from budget_graph.context import current_node
from budget_graph.errors import BudgetExceededError
from budget_graph.middleware._common import (
    FINAL_NOTE,
    AgentPolicy,
    _budget_message,
    _with_note,
    athread_catch_up,
    report_exhausted,
    report_refused,
    thread_catch_up,
)
from budget_graph.providers import client_of, model_label, output_cap, unwrap_chat_model

__all__ = ["CappedRequest", "ModelCall"]


@dataclass(init=False)
class CappedRequest(ModelRequest[Any]):
    """A model request whose model stays budgeted when another middleware swaps it.

    ``ModelFallbackMiddleware`` and routers swap the model with
    ``request.override(model=...)``; on this request the new model is wrapped by
    ``rewrap`` (the same meter) first, so the middleware order does not matter.
    """

    rewrap: Callable[[Any], Any] | None = None

    def __init__(self, *, rewrap: Callable[[Any], Any] | None = None, **fields: Any) -> None:
        super().__init__(**fields)
        object.__setattr__(self, "rewrap", rewrap)  # as ModelRequest sets its fields

    def override(self, **overrides: Any) -> ModelRequest[Any]:  # type: ignore[override]
        """``ModelRequest.override``, budgeting a swapped-in model."""
        if self.rewrap is not None and overrides.get("model") is not None:
            overrides["model"] = self.rewrap(overrides["model"])
        return super().override(**overrides)


def _capped(request: ModelRequest[Any], model: Any, rewrap: Callable[[Any], Any]) -> CappedRequest:
    return CappedRequest(
        rewrap=rewrap,
        model=model,
        messages=request.messages,
        system_message=request.system_message,
        tool_choice=request.tool_choice,
        tools=request.tools,
        response_format=request.response_format,
        state=request.state,
        runtime=request.runtime,
        model_settings=request.model_settings,
    )


class ModelCall:
    """One model node run: its meter, the exit behaviour on refusal, the state delta."""

    def __init__(self, mw: AgentPolicy, request: ModelRequest[Any], behind: int = 0) -> None:
        """``behind``: units the thread's total holds beyond the branch's thread spend."""
        self.mw = mw
        self.base = request
        self.state: dict[str, Any] = dict(request.state or {})
        self.behind = behind
        if behind:
            spent = int(self.state.get("thread_token_spend") or 0)
            self.state["thread_token_spend"] = spent + behind
        self.updates: dict[str, Any] = {}
        self.committed = 0
        self.meter = mw.meter(self.state)
        self.final = False

    @classmethod
    def start(cls, mw: AgentPolicy, request: ModelRequest[Any]) -> ModelCall:
        """The model node's call, caught up with the thread's total in a resumed run."""
        return cls(mw, request, thread_catch_up(request.state))

    @classmethod
    async def astart(cls, mw: AgentPolicy, request: ModelRequest[Any]) -> ModelCall:
        """Async :meth:`start`."""
        return cls(mw, request, await athread_catch_up(request.state))

    def _budgeted(self, model: Any, final: bool) -> Any:
        param = self.mw.max_tokens_param
        if param:
            return budgeted(model, meter=self.meter, final=final, max_tokens_param=param)
        return budgeted(model, meter=self.meter, final=final)

    def _wrap(self, request: ModelRequest[Any], *, final: bool) -> ModelRequest[Any]:
        model = self._budgeted(request.model, final)
        return _capped(request, model, lambda swapped: self._budgeted(swapped, final))

    def _prompt_units(self, request: ModelRequest[Any], *, tools: bool = True) -> int:
        """Units the prompt of ``request`` reserves (counted for its provider, with margin)."""
        inner = unwrap_chat_model(request.model)[0]
        messages = [request.system_message] if request.system_message else []
        schemas = (
            [t if isinstance(t, dict) else convert_to_openai_tool(t) for t in request.tools]
            if tools
            else []
        )
        name = model_label(inner)
        counted = count_messages(
            [*messages, *request.messages],
            model=name,
            tools=schemas or None,
            counting=client_of(inner).counting,
        )
        budget = self.meter.budget
        return budget.units(input_tokens=budget.prompt_reservation(counted), model=name)

    def _hold_for_final(self, request: ModelRequest[Any]) -> None:
        """Size the reserve from the final call's real prompt (``exit_behavior="finalize"``).

        The final call sends the messages so far without tools, plus ``FINAL_NOTE``. An
        ordinary call leaves that prompt plus the configured ``reserve`` for the answer;
        when prompt tokens count, it also leaves room for its own output, which the final
        prompt will repeat: it may use half of what is free after its prompt and that.
        """
        mw = self.mw
        hold = mw.reserve
        if self.meter.budget.count != "output":
            final = self.base.override(
                tools=[], system_message=_with_note(self.base.system_message, FINAL_NOTE)
            )
            hold += self._prompt_units(final, tools=False)
            free = self.meter.available(final=True) - self._prompt_units(request) - hold
            hold += max(free // 2, 0)
        self.meter = mw.meter(self.state, extra_spent=self.committed, reserve=hold)

    def request(self) -> ModelRequest[Any]:
        req = self.base
        note = self.mw.warning(self.meter)
        if note is not None:
            req = req.override(system_message=_with_note(req.system_message, note))
        if self.mw.exit_behavior == "finalize":
            self._hold_for_final(req)
        return self._wrap(req, final=False)

    def precheck(self, request: ModelRequest[Any]) -> None:
        """Refuse an ordinary call the budget would clamp below ``min_output_tokens``.

        The hard cap itself is enforced by the budgeted model; this only avoids sending
        a call whose answer would be cut off after a few tokens.
        """
        need = self.mw.min_output_tokens
        if self.final or need <= 1:
            return
        inner = unwrap_chat_model(request.model)[0]
        asked = output_cap(inner, request.model_settings, cap_param=self.mw.max_tokens_param)
        need = max(min(need, asked.cap), asked.minimum)
        name = model_label(inner)
        budget = self.meter.budget
        prompt_units = self._prompt_units(request)
        cap = budget.max_output_for(self.meter.available() - prompt_units, model=name)
        if cap < need:
            bind = self.meter.binding
            error = BudgetExceededError(
                limit=bind.limit,
                spent=bind.spent,
                requested=prompt_units + budget.units(output_tokens=need, model=name),
                scope=bind.scope,
                reserved=bind.reserved,
                unit=self.mw.unit,
            )
            report_refused(error, model=name, node=current_node(), remaining=self.meter.available())
            raise error

    def _final_request(self) -> ModelRequest[Any]:
        self.final = True
        req = self.base.override(
            tools=[],
            tool_choice=None,
            response_format=None,
            system_message=_with_note(self.base.system_message, FINAL_NOTE),
        )
        return self._wrap(req, final=True)

    def _renew_meter(self) -> None:
        self.committed += self.meter.committed
        self.meter = self.mw.meter(self.state, extra_spent=self.committed)

    def refused(self, exc: BudgetExceededError) -> Any:
        """The next request to try, or the result to return, after a refused call."""
        mw = self.mw
        err = mw.error(self.meter, self.state, exc.requested)
        report_exhausted(err, mw.exit_behavior)
        if mw.exit_behavior == "error":
            raise err from exc
        if mw.exit_behavior == "finalize" and not self.final:
            return self._final_request()
        if mw.exit_behavior == "interrupt":
            run_limit, thread_limit = mw.limits(self.state)
            run_spent, thread_spent = mw.spent(self.state)
            question = {
                "type": "token_budget",
                "message": str(err),
                "scope": err.scope,
                "limit": err.limit,
                "spent": err.spent,
                "requested": err.requested,
                "unit": err.unit,
                "run_limit": run_limit,
                "thread_limit": thread_limit,
                "run_spent": run_spent,
                "thread_spent": thread_spent,
            }
            answer = interrupt(question)
            while True:  # a bad answer is consumed: ask again, saying what was wrong
                try:
                    approved = mw.parse_resume(answer)
                    break
                except ValueError as bad:
                    answer = interrupt({**question, "error": str(bad)})
            if approved is not None:
                self.updates.update(approved)
                self.state.update(approved)
                self._renew_meter()
                return self.request()
        return self._result(ModelResponse(result=[_budget_message(err)]))

    def done(self, response: ModelResponse[Any]) -> Any:
        """Record the spend; a final answer never carries tool calls."""
        if self.final:
            response = ModelResponse(
                result=[_strip_tool_calls(m) for m in response.result],
                structured_response=response.structured_response,
            )
        return self._result(response)

    def _spend_update(self) -> dict[str, int]:
        units = self.committed + self.meter.committed
        update = {"run_token_spend": units, "thread_token_spend": units + self.behind}
        return {k: v for k, v in update.items() if v}

    def kept(self) -> None:
        """The model node failed after a billed call: keep its spend in the checkpoint.

        LangGraph drops a failed task's writes; the spend is written to the checkpoint
        the step started from instead (see :meth:`ToolCharge.kept
        <budget_graph.middleware._tools.ToolCharge.kept>`).
        """
        update = self._spend_update()
        if update:
            record_step_spend(var_child_runnable_config.get(), update)

    async def akept(self) -> None:
        """Async :meth:`kept` (for async checkpointers)."""
        update = self._spend_update()
        if update:
            await arecord_step_spend(var_child_runnable_config.get(), update)

    def _result(self, response: ModelResponse[Any]) -> Any:
        update = {**self.updates, **self._spend_update()}
        if not update:
            return response
        return ExtendedModelResponse(model_response=response, command=Command(update=update))


def _strip_tool_calls(message: Any) -> Any:
    if not isinstance(message, AIMessage) or not (message.tool_calls or message.invalid_tool_calls):
        return message
    return AIMessage(
        content=message.content or "I ran out of token budget before I could finish.",
        id=message.id,
        name=message.name,
        usage_metadata=message.usage_metadata,
        response_metadata={**message.response_metadata, "stop_reason": "budget"},
    )
