"""``budgeted(model)``: a chat model whose every call reserves, clamps, then commits real usage."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import var_child_runnable_config
from pydantic import ConfigDict, PrivateAttr, model_validator

from budget_graph._internal import observe
from budget_graph._internal.rebind import swap_model
from budget_graph._internal.results import (
    StreamAcc,
    as_chunk,
    finish_reasons,
    keep_usage_on_first_choice,
    result_text,
    result_usage,
    single_reply,
)
from budget_graph.accounting import model_name
from budget_graph.budget import Usage
from budget_graph.context import as_meter, current_meter, current_node, no_meter_error
from budget_graph.lifecycle import Call, output_cap
from budget_graph.providers import ModelFacts, apply_cap, model_facts
from budget_graph.retry import (
    RetryPolicy,
    retried,
    retried_astream,
    retried_async,
    retried_stream,
)

__all__ = ["BudgetedChatModel", "budgeted"]


class BudgetedChatModel(BaseChatModel):
    """Wraps a chat model so each call is reserved, clamped and committed against a meter.

    Use :func:`budgeted` to build one.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: BaseChatModel
    """The wrapped chat model."""
    meter: Any = None
    """A fixed meter; ``None`` uses the current run's meter (see ``with_budget``)."""
    node: str | None = None
    """Name the spend is attributed to; ``None`` uses the LangGraph node running the call."""
    final: bool = False
    """Whether calls may use the budget's ``reserve`` (for final answers)."""
    max_tokens_param: str = "max_tokens"
    """The keyword the wrapped model takes its output cap in."""
    capture_input: bool = False
    """Keep the prompt on the call record (telemetry opt-in)."""
    capture_output: bool = False
    """Keep the completion text on the call record (telemetry opt-in)."""
    retry: RetryPolicy | None = None
    """Retry transient failures; each attempt reserves anew (``None``: no retries)."""
    require_meter: bool = True
    """Raise :class:`~budget_graph.errors.NoMeterError` when a call finds no meter;
    ``False`` sends such a call unbudgeted."""

    _facts: ModelFacts = PrivateAttr()

    @model_validator(mode="after")
    def _adopt_wrapped_profile(self) -> BudgetedChatModel:
        # What LangChain reads from a chat model (create_agent picks its structured-output
        # strategy from the profile and the model name) is the wrapped model's; what each
        # call reads from it is read once, here.
        if self.profile is None:
            self.profile = self.model.profile
        self._facts = model_facts(self.model, cap_param=self.max_tokens_param)
        return self

    @property
    def model_name(self) -> str:
        """The wrapped model's name (its ``_llm_type`` if it has none), as LangChain reads it."""
        return model_name(self.model) or self.model._llm_type

    @property
    def _llm_type(self) -> str:
        return f"budgeted-{self.model._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model._identifying_params, "budgeted": True}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        # Trace as the wrapped model (the base class would name it by our ``model`` field).
        return self.model._get_ls_params(stop=stop, **kwargs)

    def with_structured_output(
        self, schema: Any, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        """The wrapped model's own structured output (``method=``, ``strict=``...), budgeted.

        The provider builds its chain (JSON schema, JSON mode or tool calling, as asked)
        around its model, which is then swapped for this budgeted one.
        """
        built = self.model.with_structured_output(schema, include_raw=include_raw, **kwargs)
        found: list[bool] = []
        chain = swap_model(built, self.model, self, found)
        if found:
            return chain  # type: ignore[no-any-return]
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)

    def bind_tools(
        self, tools: Sequence[Any], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools the way the wrapped model does, keeping the budget around it."""
        bound = self.model.bind_tools(tools, **kwargs)
        return self.bind(**getattr(bound, "kwargs", {}))

    def _call(
        self,
        messages: list[BaseMessage],
        kwargs: dict[str, Any],
        run_manager: Any,
        stop: list[str] | None = None,
        *,
        streamed: bool = False,
    ) -> Call:
        """The call's lifecycle on the meter it finds (none: an allowed unbudgeted call)."""
        cfg = var_child_runnable_config.get()
        meter = self.meter if self.meter is not None else current_meter(cfg)
        if meter is None and self.require_meter:
            raise no_meter_error()
        meta = (cfg or {}).get("metadata") or {}
        node = self.node if self.node is not None else current_node(cfg)
        inner, param, facts = self.model, self.max_tokens_param, self._facts
        # The per-provider rule (issue #20); a call without keywords asks the model's own.
        cap = output_cap(inner, kwargs, param) if kwargs else facts.cap
        call = Call(
            meter,
            messages,
            kwargs,
            model=facts.name,
            node=node if isinstance(node, str) else None,
            requested=cap.cap,
            min_output=cap.minimum,
            counting=facts.client.counting,
            place_cap=functools.partial(apply_cap, facts.provider, stop=stop, client=facts.client),
            n=int(kwargs.get("n") or facts.n),
            final=self.final,
            param=self.max_tokens_param,
            capture_output=self.capture_output,
        )
        if streamed:
            call.streamed = True
            if "stream_usage" in vars(inner):  # a field of the client (langchain-openai)
                call.kwargs.setdefault("stream_usage", True)
        allocated = meta.get("budget_allocated")
        if isinstance(allocated, int):
            call.allocated = allocated
        if self.capture_input or observe.content_wanted():
            call.input_messages = messages
        if observe.state.active:  # what observers describe the call with (telemetry)
            call.chat_model, call.request = inner, call.kwargs
            if run_manager is not None:
                call.run_id = run_manager.run_id
        return call

    def _outcome(
        self, call: Call, result: ChatResult
    ) -> tuple[Usage | None, str, BaseMessage | None]:
        """A finished call's reported usage, its text if wanted, its reply if counted."""
        usage = result_usage(result)
        keep_usage_on_first_choice(result)
        if observe.state.active:
            call.finish_reasons, call.response = finish_reasons(result), result
        if usage is not None and not (self.capture_output or observe.content_wanted()):
            return usage, "", None
        return usage, result_text(result), single_reply(result) if usage is None else None

    # --- one attempt --------------------------------------------------------------

    def _generate_once(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._call(messages, kwargs, run_manager, stop)
        call.begin()
        try:
            result = self.model._generate(
                messages, stop=stop, run_manager=run_manager, **call.kwargs
            )
        except BaseException as exc:
            call.end(exc)
            raise
        usage, text, reply = self._outcome(call, result)
        call.end(None, usage, text, output=reply)
        return result

    async def _agenerate_once(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._call(messages, kwargs, run_manager, stop)
        await call.abegin()
        try:
            result = await self.model._agenerate(
                messages, stop=stop, run_manager=run_manager, **call.kwargs
            )
        except BaseException as exc:
            await call.aend(exc)
            raise
        usage, text, reply = self._outcome(call, result)
        await call.aend(None, usage, text, output=reply)
        return result

    def _stream_once(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if type(self.model)._stream is BaseChatModel._stream:  # the model cannot stream
            yield as_chunk(self._generate_once(messages, stop, run_manager, **kwargs))
            return
        call = self._call(messages, kwargs, run_manager, stop, streamed=True)
        call.begin()
        acc = StreamAcc()
        try:
            for chunk in self.model._stream(
                messages, stop=stop, run_manager=run_manager, **call.kwargs
            ):
                acc.add(chunk)
                yield chunk  # GeneratorExit here: the consumer stopped (charged, estimated)
        except BaseException as exc:
            call.end(exc, acc.usage, acc.text, received=acc.received, output=acc.message())
            raise
        call.finish_reasons, call.response = acc.finish_reasons, acc.last
        call.end(None, acc.usage, acc.text, output=acc.message())

    async def _astream_once(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        model = type(self.model)
        if model._astream is BaseChatModel._astream and model._stream is BaseChatModel._stream:
            yield as_chunk(await self._agenerate_once(messages, stop, run_manager, **kwargs))
            return
        call = self._call(messages, kwargs, run_manager, stop, streamed=True)
        await call.abegin()
        acc = StreamAcc()
        try:
            async for chunk in self.model._astream(
                messages, stop=stop, run_manager=run_manager, **call.kwargs
            ):
                acc.add(chunk)
                yield chunk  # GeneratorExit here: the consumer stopped (charged, estimated)
        except BaseException as exc:
            await call.aend(exc, acc.usage, acc.text, received=acc.received, output=acc.message())
            raise
        call.finish_reasons, call.response = acc.finish_reasons, acc.last
        await call.aend(None, acc.usage, acc.text, output=acc.message())

    # --- the entry points: one attempt, retried under ``retry`` -----------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        once = functools.partial(self._generate_once, messages, stop, run_manager, **kwargs)
        return retried(self.retry, once)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        once = functools.partial(self._agenerate_once, messages, stop, run_manager, **kwargs)
        return await retried_async(self.retry, once)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        once = functools.partial(self._stream_once, messages, stop, run_manager, **kwargs)
        return retried_stream(self.retry, once)

    def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        once = functools.partial(self._astream_once, messages, stop, run_manager, **kwargs)
        return retried_astream(self.retry, once)


def budgeted(
    model: Any,
    *,
    meter: Any = None,
    node: str | None = None,
    final: bool = False,
    max_tokens_param: str = "max_tokens",
    retry: RetryPolicy | None = None,
    require_meter: bool = True,
) -> Any:
    """Wrap a chat model so every call is budgeted.

    Each call reserves its prompt tokens plus its (clamped) ``max_tokens`` on the
    run's meter before it is sent, and commits the provider's real usage after it
    (counted locally and marked estimated when the provider reports none). A call
    that cannot fit raises :class:`~budget_graph.errors.BudgetExceededError` before
    anything is sent. ``.bind_tools()``, streaming and async work as on the model.

    Args:
        model: Any LangChain chat model, or one with tools or arguments bound
            (``llm.bind_tools(tools)``): the bound model is budgeted, the binding kept.
        meter: A fixed meter, or a :class:`~budget_graph.Budget` to make one for this
            model; by default the current run's (``with_budget``/``budget_config``).
        node: Name to attribute spend to; by default the running LangGraph node.
        final: Allow the call to use the budget's ``reserve`` (final answers).
        max_tokens_param: The model's keyword for the output cap.
        retry: Retry transient failures (429, 5xx, timeouts, dropped connections) with
            tenacity, honouring ``Retry-After``; each attempt reserves anew.
        require_meter: A call that finds no meter raises :class:`~budget_graph.NoMeterError`
            (``False``: it is sent unbudgeted). Threads started inside a node find the
            run's meter when their function is wrapped in :func:`~budget_graph.carry_context`.

    Returns:
        A chat model (a :class:`BudgetedChatModel`, or the same binding around one) to
        use in place of ``model``.

    Example:
        >>> from langchain_core.language_models import FakeListChatModel
        >>> from budget_graph import Budget, Meter
        >>> meter = Meter(Budget(max_tokens=1_000))
        >>> llm = budgeted(FakeListChatModel(responses=["hi"]), meter=meter)
        >>> llm.invoke("hello").content, meter.spent > 0
        ('hi', True)

    """
    if not isinstance(model, BaseChatModel) and isinstance(getattr(model, "bound", None), Runnable):
        # llm.bind_tools(...) / llm.bind(...): budget the bound model, keep the binding.
        inner = budgeted(
            model.bound,
            meter=meter,
            node=node,
            final=final,
            max_tokens_param=max_tokens_param,
            retry=retry,
            require_meter=require_meter,
        )
        return model.model_copy(update={"bound": inner})
    meter = as_meter(meter)
    if isinstance(model, BudgetedChatModel) and (
        meter is None or model.meter is None or meter is model.meter
    ):
        # Wrapping a budgeted model again (e.g. a factory wrapping the user's budgeted
        # model) must not reserve and commit twice: merge into one wrapper.
        return model.model_copy(
            update={
                "meter": meter if meter is not None else model.meter,
                "node": node or model.node,
                "final": final or model.final,
                "retry": retry if retry is not None else model.retry,
                "require_meter": require_meter and model.require_meter,
            }
        )
    return BudgetedChatModel(
        model=model,
        meter=meter,
        node=node,
        final=final,
        max_tokens_param=max_tokens_param,
        retry=retry,
        require_meter=require_meter,
    )
