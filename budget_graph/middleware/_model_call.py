"""One model node run under :class:`TokenBudgetMiddleware`: reserve, call, exit behaviour."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain.agents.middleware.types import ExtendedModelResponse, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.types import Command, interrupt

from budget_graph.accounting import count_messages
from budget_graph.budgeted import budgeted
from budget_graph.errors import BudgetExceededError
from budget_graph.middleware._common import FINAL_NOTE, _budget_message, _with_note

if TYPE_CHECKING:
    from budget_graph.middleware.token_budget import TokenBudgetMiddleware

__all__ = ["ModelCall"]


class ModelCall:
    """One model node run: its meter, the exit behaviour on refusal, the state delta."""

    def __init__(self, mw: TokenBudgetMiddleware[Any, Any], request: ModelRequest[Any]) -> None:
        self.mw = mw
        self.base = request
        self.state: dict[str, Any] = dict(request.state or {})
        self.updates: dict[str, Any] = {}
        self.committed = 0
        self.meter = mw.meter(self.state)
        self.final = False

    def _wrap(self, request: ModelRequest[Any], *, final: bool) -> ModelRequest[Any]:
        model = budgeted(
            request.model,
            meter=self.meter,
            final=final,
            max_tokens_param=self.mw.max_tokens_param,
        )
        return request.override(model=model)

    def request(self) -> ModelRequest[Any]:
        req = self.base
        note = self.mw.warning(self.meter)
        if note is not None:
            req = req.override(system_message=_with_note(req.system_message, note))
        return self._wrap(req, final=False)

    def precheck(self, request: ModelRequest[Any]) -> None:
        """Refuse an ordinary call the budget would clamp below ``min_output_tokens``.

        The hard cap itself is enforced by the budgeted model; this only avoids sending
        a call whose answer would be cut off after a few tokens.
        """
        need = self.mw.min_output_tokens
        if self.final or need <= 1:
            return
        asked = request.model_settings.get(self.mw.max_tokens_param)
        inner = getattr(request.model, "model", request.model)
        if asked is None:
            asked = getattr(inner, self.mw.max_tokens_param, None)
        if isinstance(asked, int):
            need = min(need, asked)
        name = _model_name(inner)
        messages = [request.system_message] if request.system_message else []
        tools = [t if isinstance(t, dict) else convert_to_openai_tool(t) for t in request.tools]
        budget = self.meter.budget
        prompt = budget.prompt_reservation(
            count_messages([*messages, *request.messages], model=name, tools=tools or None)
        )
        prompt_units = budget.units(input_tokens=prompt, model=name)
        cap = budget.max_output_for(self.meter.available() - prompt_units, model=name)
        if cap < need:
            bind = self.meter.binding
            raise BudgetExceededError(
                limit=bind.limit,
                spent=bind.spent,
                requested=prompt_units + budget.units(output_tokens=need, model=name),
                scope=bind.scope,
                reserved=bind.reserved,
                unit=self.mw.unit,
            )

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
        if mw.exit_behavior == "error":
            raise err from exc
        if mw.exit_behavior == "finalize" and not self.final:
            return self._final_request()
        if mw.exit_behavior == "interrupt":
            run_limit, thread_limit = mw.limits(self.state)
            run_spent, thread_spent = mw._spent(self.state)
            answer = interrupt(
                {
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
            )
            approved = mw.parse_resume(answer)
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

    def _result(self, response: ModelResponse[Any]) -> Any:
        units = self.committed + self.meter.committed
        update = dict(self.updates)
        if units:
            update["run_token_spend"] = units
            update["thread_token_spend"] = units
        if not update:
            return response
        return ExtendedModelResponse(model_response=response, command=Command(update=update))


def _model_name(model: Any) -> str | None:
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str):
            return value
    return None


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
