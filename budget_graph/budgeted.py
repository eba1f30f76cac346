"""``budgeted(model)``: a chat model whose every call reserves, clamps, then commits real usage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, NamedTuple, NoReturn

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from pydantic import ConfigDict, Field
from tenacity import AsyncRetrying, RetryCallState, Retrying

from budget_graph._internal import observe
from budget_graph.accounting import (
    count_messages,
    count_tokens,
    model_name,
    usage_counts,
    usage_from_message,
)
from budget_graph.budget import Budget, Usage, _tighter_cap, _usage
from budget_graph.context import current_ledger, current_meter
from budget_graph.errors import BudgetExceededError
from budget_graph.meter import Meter, Reservation
from budget_graph.retry import RetryPolicy

__all__ = ["BudgetedChatModel", "budgeted"]


class _Call(observe.CallInfo):
    """One call's reservation lifecycle; shared by the sync, async and streaming paths.

    It is also the call's :class:`~budget_graph._internal.observe.CallInfo`, the record
    observers receive. This runs on every model call, so it is written for speed: one
    config read, one object, and text or finish reasons are only gathered when an
    observer or a missing usage report needs them.
    """

    __slots__ = ("kwargs", "meter", "owner", "reservation", "messages")

    def __init__(
        self,
        owner: BudgetedChatModel,
        messages: list[BaseMessage],
        kwargs: dict,
        run_manager: Any = None,
    ) -> None:
        name, default_max, default_n = owner.inner_defaults or (None, None, None)
        node, allocated = owner.node, None
        # The running node, its allocated share and the meter: one read of the run config.
        cfg: RunnableConfig = var_child_runnable_config.get() or {}
        meta = cfg.get("metadata")
        if meta:
            allocated = meta.get("budget_allocated")
            if node is None:
                node = meta.get("langgraph_node")
        super().__init__(name, node if isinstance(node, str) else None)
        self.owner = owner
        self.messages = messages
        self.kwargs = kwargs = dict(kwargs)
        self.meter = owner.meter if owner.meter is not None else current_meter(cfg)
        self.reservation: Reservation | None = None
        if isinstance(allocated, int):
            self.allocated = allocated
        requested = _requested_max(kwargs, owner.max_tokens_param, default_max)
        if requested is not None:
            self.requested_max_tokens = requested
        n = kwargs.get("n") or default_n
        if n:
            self.n = int(n)
        if owner.capture_input or observe.content_wanted():
            self.input_messages = messages
        if observe.state.active:  # what observers describe the call with (telemetry)
            self.chat_model, self.request = owner.model, kwargs
            if run_manager is not None:
                self.run_id = run_manager.run_id

    def begin(self) -> None:
        """Reserve prompt + clamped output, then set the clamped ``max_tokens``."""
        info, meter = self, self.meter
        budget = getattr(meter, "budget", None)
        if budget is None:
            observe.notify("call_started", info)
            return
        model, n, final = info.model, info.n, self.owner.final
        counted = count_messages(self.messages, model=model, tools=self.kwargs.get("tools"))
        info.prompt_tokens_estimate = counted
        if type(meter) is Meter and meter.counts_tokens:  # the in-process meter clamps atomically
            requested = info.requested_max_tokens or 0
            held = meter._reserve_prompt(counted, n, requested, final, info.node)
            if held is None:
                self._refuse_prompt(meter, counted, n, final)
            self.reservation, cap = held
            units = self.reservation.units
        else:
            prompt = budget.prompt_reservation(counted)
            bound = _output_bound(info.requested_max_tokens, budget)
            cap, units = self._reserve_loop(budget, prompt, bound)
        info.max_tokens = cap
        info.reserved_units = units
        self.kwargs[self.owner.max_tokens_param] = cap
        if observe.state.active:
            info.limit, info.spent_before = meter.limit, meter.spent
            info.remaining_before = meter.remaining
            observe.notify("call_started", info)

    def adopt(self, held: _Held) -> _Call:
        """Take over a call the fast path reserved (for its rarer endings)."""
        self.reservation, cap = held.reservation, held.cap
        self.prompt_tokens_estimate = held.counted
        self.max_tokens, self.reserved_units = cap, held.reservation.units
        self.kwargs[self.owner.max_tokens_param] = cap
        return self

    def _reserve_loop(self, budget: Budget, prompt: int, bound: int) -> tuple[int, int]:
        """Look, then grab: for meters without an atomic clamp (Postgres, agent) and cost mode."""
        info, meter, final = self, self.meter, self.owner.final
        model, n = info.model, info.n
        prompt_units = budget.units(input_tokens=prompt, model=model)
        units = prompt_units
        for _ in range(3):  # another branch may reserve between the look and the grab
            avail = meter.available(final=final)
            cap = budget.max_output_for(avail - prompt_units, model=model) // n
            if bound and bound < cap:
                cap = bound
            if cap < 1:
                self._refuse(prompt_units + budget.units(output_tokens=n, model=model), avail)
            units = budget.units(input_tokens=prompt, output_tokens=cap * n, model=model)
            try:
                self.reservation = meter.reserve(units, final=final, node=info.node)
            except BudgetExceededError:
                continue
            return cap, units
        self._refuse(units, None)

    def _refuse_prompt(self, meter: Meter, counted: int, n: int, final: bool) -> NoReturn:
        """Refuse a call the in-process meter could not fit (one output token per sample)."""
        self._refuse(meter._prompt_units(counted) + n, meter.available(final=final))

    def _refuse(self, requested: int, remaining: int | None) -> NoReturn:
        info, meter = self, self.meter
        observe.emit(
            "budget.reservation_refused",
            model=info.model,
            node=info.node,
            requested=requested,
            remaining=remaining,
            limit=meter.limit,
        )
        raise BudgetExceededError(
            limit=meter.limit,
            spent=meter.spent,
            requested=requested,
            scope=getattr(meter, "scope", "run"),
            reserved=meter.reserved,
            unit=meter.budget.unit,
        )

    @property
    def wants_text(self) -> bool:
        """Whether the completion text must be kept (an observer asked for content)."""
        return self.owner.capture_output or observe.content_wanted()

    def finish(self, usage: Usage | None, text: str) -> Usage:
        """Commit the real (or, if unreported, locally counted) usage."""
        info = self
        if usage is None:
            info.estimated = True
            return self._commit(
                info.prompt_tokens_estimate or count_messages(self.messages, model=info.model),
                count_tokens(text, model=info.model),
                0,
                0,
                1,
                1,
                text,
            )
        return self._commit(
            usage.input_tokens,
            usage.output_tokens,
            usage.reasoning_tokens,
            usage.cached_tokens,
            usage.calls or 1,
            usage.estimated_calls,
            text,
        )

    def _commit(
        self,
        input_tokens: int,
        output_tokens: int,
        reasoning_tokens: int,
        cached_tokens: int,
        calls: int,
        estimated_calls: int,
        text: str,
    ) -> Usage:
        info, meter = self, self.meter
        budget = getattr(meter, "budget", None)
        units = (
            budget.units(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_tokens=cached_tokens,
                model=info.model,
            )
            if budget is not None
            else input_tokens + output_tokens
        )
        usage = _usage(
            input_tokens,
            output_tokens,
            reasoning_tokens,
            cached_tokens,
            calls,
            estimated_calls,
            units,
        )
        if self.reservation is not None:
            meter.commit(self.reservation, units, usage=usage)
        ledger = current_ledger()
        if ledger is not None:
            ledger.add(usage, info.node)
        info.usage, info.units = usage, units
        if observe.state.active:
            if self.wants_text:
                info.output_text = text
            observe.notify("call_finished", info)
        return usage

    def fail(self, error: BaseException, usage: Usage | None = None, text: str = "") -> None:
        """A failed call: commit what the provider reported billing, else release.

        An error carrying a :class:`~budget_graph.budget.Usage` as ``billed_usage`` is
        charged that usage (its ``estimated_calls`` say whether it was estimated).

        A timed-out request may still finish and be billed by the provider, so its
        outcome is unknown: it is charged in full (prompt + clamped output, marked
        estimated) rather than released, erring on the side of the cap.
        """
        self.error = error
        clamped = self.max_tokens
        billed = getattr(error, "billed_usage", None)
        if usage is None and isinstance(billed, Usage):
            # The error says what the request was billed (e.g. a replayed benchmark bills an
            # unrecorded request at an estimate, so a miss is never a free probe).
            usage = billed
            self.estimated = True
        if usage is None and _is_timeout(error) and clamped is not None:
            info = self
            usage = Usage(
                input_tokens=info.prompt_tokens_estimate,
                output_tokens=clamped * info.n,
                calls=1,
                estimated_calls=1,
            )
            info.estimated = True
        if usage is not None:
            self.finish(usage, text)
            return
        if self.reservation is not None:
            self.meter.release(self.reservation)
        observe.notify("call_finished", self)

    def finish_result(self, result: ChatResult) -> None:
        """Commit a finished (non-streamed) call's result."""
        if observe.state.active:
            self.finish_reasons = _finish_reasons(result)
            self.response = result
        meta = _single_usage_metadata(result)
        if meta:  # the common case, read without building an intermediate Usage
            text = _result_text(result) if self.wants_text else ""
            self._commit(*usage_counts(meta), 1, 0, text)
            return
        usage = _result_usage(result)
        _usage_on_first_choice(result)
        self.finish(usage, _result_text(result) if usage is None or self.wants_text else "")


def _usage_on_first_choice(result: ChatResult) -> None:
    """Keep a response's usage on its first choice only, where a client copied it to all n.

    langchain-openai puts the whole response's usage on each of the n choices; anything
    summing the choices (OpenLLMetry's LangChain instrumentor does) would count the call
    n times. The call was billed once, as ``_result_usage`` reads it.
    """
    gens = result.generations
    first = getattr(gens[0].message, "usage_metadata", None) if gens else None
    if first and all(getattr(g.message, "usage_metadata", None) == first for g in gens[1:]):
        for gen in gens[1:]:
            if isinstance(gen.message, AIMessage):
                gen.message.usage_metadata = None


_TIMEOUT_NAMES = frozenset(
    {"APITimeoutError", "ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException"}
)


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    return any(cls.__name__ in _TIMEOUT_NAMES for cls in type(exc).__mro__)


def _requested_max(kwargs: dict[str, Any], param: str, default: Any) -> int | None:
    """The call's output cap: its keyword, else the wrapped model's default, if an int."""
    requested = kwargs.get(param)
    if requested is None:
        requested = default
    return requested if isinstance(requested, int) else None


def _output_bound(requested: int | None, budget: Budget) -> int:
    """Per-sample output cap from the request and ``per_call_max_tokens`` (0: unbounded)."""
    return _tighter_cap(requested or 0, budget.per_call_max_tokens or 0)


def _single_usage_metadata(result: ChatResult) -> Any:
    """The ``usage_metadata`` of a one-generation result (the common case), else ``None``."""
    gens = result.generations
    return getattr(gens[0].message, "usage_metadata", None) if len(gens) == 1 else None


def _result_usage(result: ChatResult) -> Usage | None:
    found = (usage_from_message(g.message) for g in result.generations)
    usages = [u for u in found if u is not None]
    if not usages:
        return None
    # OpenAI-style clients attach the whole response's usage to each of the n choices.
    if len(usages) > 1 and all(u == usages[0] for u in usages):
        return usages[0]
    return sum(usages, Usage())


def _result_text(result: ChatResult) -> str:
    return "".join(g.message.text for g in result.generations)


def _finish_reasons(result: ChatResult) -> list[str]:
    out = []
    for g in result.generations:
        reason = (g.generation_info or {}).get("finish_reason") or (
            g.message.response_metadata.get("finish_reason")
        )
        if reason:
            out.append(str(reason))
    return out


class _Held(NamedTuple):
    """A call the fast path reserved: what it needs to commit, or to hand over to ``_Call``."""

    meter: Meter
    reservation: Reservation
    cap: int
    counted: int
    kwargs: dict[str, Any]
    """The call's keyword arguments, ``max_tokens`` clamped."""


def _fast_begin(
    owner: BudgetedChatModel, messages: list[BaseMessage], kwargs: dict[str, Any]
) -> _Held | None:
    """Reserve a call in one frame for the common case, else ``None`` (take ``_Call``).

    The common case: the in-process :class:`Meter` on a token budget, no observer and
    no capture. This is :meth:`_Call.begin` without the call record, which only
    observers read. A call that does not fit is refused here, with ``_Call``'s event
    and error.
    """
    if observe.state.active:
        return None
    # One read of the model's fields: an attribute read on a pydantic model goes through
    # its ``__getattr__`` hook, six times a plain read (and this runs on every call).
    fields = owner.__dict__
    if fields["capture_input"] or fields["capture_output"]:
        return None
    cfg = var_child_runnable_config.get()
    meter = fields["meter"]
    if meter is None:
        meter = current_meter(cfg)
    if type(meter) is not Meter or not meter.counts_tokens:
        return None
    node = fields["node"]
    if node is None and cfg:
        meta = cfg.get("metadata")
        node = meta.get("langgraph_node") if meta else None
        if not isinstance(node, str):
            node = None
    name, default_max, default_n = fields["inner_defaults"] or (None, None, None)
    param, final = fields["max_tokens_param"], fields["final"]
    n = int(kwargs.get("n") or default_n or 1)
    counted = count_messages(messages, model=name, tools=kwargs.get("tools"))
    requested = _requested_max(kwargs, param, default_max) or 0
    held = meter._reserve_prompt(counted, n, requested, final, node)
    if held is None:  # refused (and counted) by the meter once; _Call only reports it
        _Call(owner, messages, kwargs)._refuse_prompt(meter, counted, n, final)
    kwargs = dict(kwargs)
    kwargs[param] = held[1]
    return _Held(meter, held[0], held[1], counted, kwargs)


def _fast_finish(held: _Held, result: ChatResult) -> bool:
    """Commit a fast-path call's reported usage; ``False`` if it needs ``_Call`` to finish."""
    meta = _single_usage_metadata(result)
    if not meta:
        return False
    reservation = held.reservation
    usage = held.meter._commit_tokens(reservation, *usage_counts(meta))
    ledger = current_ledger()
    if ledger is not None:
        ledger.add(usage, reservation.node)
    return True


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
    inner_defaults: tuple[str | None, Any, Any] | None = Field(
        default=None, exclude=True, repr=False
    )
    """The wrapped model's name, default max_tokens and n, read once at construction."""

    def model_post_init(self, __context: Any) -> None:  # noqa: D102
        # Read once: a pydantic attribute lookup that misses costs an exception, and doing
        # it per call showed up in the measured per-call overhead.
        inner = self.model
        self.inner_defaults = (
            model_name(inner),
            getattr(inner, self.max_tokens_param, None),
            getattr(inner, "n", None),
        )

    @property
    def _llm_type(self) -> str:
        return f"budgeted-{self.model._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model._identifying_params, "budgeted": True}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        # Trace as the wrapped model (the base class would report our ``model`` field,
        # a model object, as the model name).
        return self.model._get_ls_params(stop=stop, **kwargs)

    def bind_tools(
        self, tools: Sequence[Any], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools the way the wrapped model does, keeping the budget around it."""
        bound = self.model.bind_tools(tools, **kwargs)
        return self.bind(**getattr(bound, "kwargs", {}))

    def _retrying(self) -> Retrying:
        assert self.retry is not None
        return Retrying(**self.retry.tenacity_kwargs(), before_sleep=_on_retry)

    def _aretrying(self) -> AsyncRetrying:
        assert self.retry is not None
        return AsyncRetrying(**self.retry.tenacity_kwargs(), before_sleep=_on_retry)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.retry is None:
            return self._generate_once(messages, stop, run_manager, **kwargs)
        for attempt in self._retrying():
            with attempt:
                return self._generate_once(messages, stop, run_manager, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.retry is None:
            return await self._agenerate_once(messages, stop, run_manager, **kwargs)
        async for attempt in self._aretrying():
            with attempt:
                return await self._agenerate_once(messages, stop, run_manager, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if self.retry is None:
            yield from self._stream_once(messages, stop, run_manager, **kwargs)
            return
        # Retry only failures before the first chunk: once text reached the caller, a
        # retry would repeat it.
        first: ChatGenerationChunk | None = None
        for attempt in self._retrying():
            with attempt:
                it = self._stream_once(messages, stop, run_manager, **kwargs)
                first = next(it, None)
        if first is not None:
            yield first
            yield from it

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if self.retry is None:
            async for chunk in self._astream_once(messages, stop, run_manager, **kwargs):
                yield chunk
            return
        first: ChatGenerationChunk | None = None
        async for attempt in self._aretrying():
            with attempt:
                ait = self._astream_once(messages, stop, run_manager, **kwargs)
                first = await anext(ait, None)
        if first is not None:
            yield first
            async for chunk in ait:
                yield chunk

    def _generate_once(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> ChatResult:
        held = _fast_begin(self, messages, kwargs)
        if held is not None:
            try:
                result = self.model._generate(
                    messages, stop=stop, run_manager=run_manager, **held.kwargs
                )
            except BaseException as exc:
                _Call(self, messages, kwargs).adopt(held).fail(exc)
                raise
            if not _fast_finish(held, result):
                _Call(self, messages, kwargs).adopt(held).finish_result(result)
            return result
        call = _Call(self, messages, kwargs, run_manager)
        call.begin()
        try:
            result = self.model._generate(
                messages, stop=stop, run_manager=run_manager, **call.kwargs
            )
        except BaseException as exc:
            call.fail(exc)
            raise
        call.finish_result(result)
        return result

    async def _agenerate_once(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> ChatResult:
        held = _fast_begin(self, messages, kwargs)
        if held is not None:
            try:
                result = await self.model._agenerate(
                    messages, stop=stop, run_manager=run_manager, **held.kwargs
                )
            except BaseException as exc:
                _Call(self, messages, kwargs).adopt(held).fail(exc)
                raise
            if not _fast_finish(held, result):
                _Call(self, messages, kwargs).adopt(held).finish_result(result)
            return result
        call = _Call(self, messages, kwargs, run_manager)
        call.begin()
        try:
            result = await self.model._agenerate(
                messages, stop=stop, run_manager=run_manager, **call.kwargs
            )
        except BaseException as exc:
            call.fail(exc)
            raise
        call.finish_result(result)
        return result

    def _inner_streams(self) -> bool:
        return type(self.model)._stream is not BaseChatModel._stream

    def _stream_once(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if not self._inner_streams():
            yield _as_chunk(self._generate_once(messages, stop, run_manager, **kwargs))
            return
        call = _Call(self, messages, kwargs, run_manager)
        call.streamed = True
        if hasattr(self.model, "stream_usage"):
            call.kwargs.setdefault("stream_usage", True)
        call.begin()
        acc = _StreamAcc()
        try:
            for chunk in self.model._stream(
                messages, stop=stop, run_manager=run_manager, **call.kwargs
            ):
                acc.add(chunk)
                yield chunk
        except BaseException as exc:
            call.fail(exc, acc.usage, acc.text)
            raise
        call.finish_reasons = acc.finish_reasons
        call.finish(acc.usage, acc.text)

    async def _astream_once(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if type(self.model)._astream is BaseChatModel._astream and not self._inner_streams():
            yield _as_chunk(await self._agenerate_once(messages, stop, run_manager, **kwargs))
            return
        call = _Call(self, messages, kwargs, run_manager)
        call.streamed = True
        if hasattr(self.model, "stream_usage"):
            call.kwargs.setdefault("stream_usage", True)
        call.begin()
        acc = _StreamAcc()
        try:
            async for chunk in self.model._astream(
                messages, stop=stop, run_manager=run_manager, **call.kwargs
            ):
                acc.add(chunk)
                yield chunk
        except BaseException as exc:
            call.fail(exc, acc.usage, acc.text)
            raise
        call.finish_reasons = acc.finish_reasons
        call.finish(acc.usage, acc.text)


def _on_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else None
    observe.emit(
        "budget.retry",
        attempt=state.attempt_number,
        wait_s=wait,
        error=type(exc).__name__ if exc else None,
        message=str(exc)[:200] if exc else None,
    )


class _StreamAcc:
    __slots__ = ("finish_reasons", "parts", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.parts: list[str] = []
        self.finish_reasons: list[str] = []

    def add(self, chunk: ChatGenerationChunk) -> None:
        msg = chunk.message
        if isinstance(msg.content, str):
            self.parts.append(msg.content)
        u = usage_from_message(msg)
        if u is not None:
            self.usage = (
                u
                if self.usage is None
                else self.usage
                + Usage(u.input_tokens, u.output_tokens, u.reasoning_tokens, u.cached_tokens)
            )
        reason = (chunk.generation_info or {}).get("finish_reason") or (
            msg.response_metadata.get("finish_reason")
        )
        if reason:
            self.finish_reasons.append(str(reason))

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _as_chunk(result: ChatResult) -> ChatGenerationChunk:
    gen: ChatGeneration = result.generations[0]
    msg = gen.message
    chunk = AIMessageChunk(
        content=msg.content,
        id=msg.id,
        usage_metadata=getattr(msg, "usage_metadata", None),
        tool_calls=getattr(msg, "tool_calls", []) or [],
        response_metadata=msg.response_metadata,
    )
    return ChatGenerationChunk(message=chunk, generation_info=gen.generation_info)


def budgeted(
    model: BaseChatModel,
    *,
    meter: Any = None,
    node: str | None = None,
    final: bool = False,
    max_tokens_param: str = "max_tokens",
    retry: RetryPolicy | None = None,
) -> BudgetedChatModel:
    """Wrap a chat model so every call is budgeted.

    Each call reserves its prompt tokens plus its (clamped) ``max_tokens`` on the
    run's meter before it is sent, and commits the provider's real usage after it
    (counted locally and marked estimated when the provider reports none). A call
    that cannot fit raises :class:`~budget_graph.errors.BudgetExceededError` before
    anything is sent. ``.bind_tools()``, streaming and async work as on the model.

    Args:
        model: Any LangChain chat model.
        meter: A fixed meter; by default the current run's (``with_budget``/``budget_config``).
        node: Name to attribute spend to; by default the running LangGraph node.
        final: Allow the call to use the budget's ``reserve`` (final answers).
        max_tokens_param: The model's keyword for the output cap.
        retry: Retry transient failures (429, 5xx, timeouts, dropped connections) with
            tenacity, honouring ``Retry-After``; each attempt reserves anew.

    Returns:
        A chat model to use in place of ``model``.

    Example:
        >>> from langchain_core.language_models import FakeListChatModel
        >>> from budget_graph import Budget, Meter
        >>> meter = Meter(Budget(max_tokens=1_000))
        >>> llm = budgeted(FakeListChatModel(responses=["hi"]), meter=meter)
        >>> llm.invoke("hello").content, meter.spent > 0
        ('hi', True)

    """
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
            }
        )
    return BudgetedChatModel(
        model=model,
        meter=meter,
        node=node,
        final=final,
        max_tokens_param=max_tokens_param,
        retry=retry,
    )
