"""Fake chat models that bill like a provider honouring ``max_tokens`` (tests, benchmarks)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from budget_graph.accounting import count_messages, encoding_for_model

__all__ = ["BillingFakeChat", "ExplodingChat"]


class BillingFakeChat(BaseChatModel):
    """Answers with scripted texts and bills like a provider honouring ``max_tokens``.

    Usage is the prompt counted like OpenAI plus the output truncated to ``max_tokens``;
    ``report_usage=False`` reports none; ``billed`` lists each call's total tokens.
    """

    texts: list[str] = ["ok"]
    answers: dict[str, str] = {}
    """Substring of the last message -> text to answer with (checked before ``texts``)."""
    report_usage: bool = True
    fail_after_billing: bool = False
    billed: list[int] = []
    _lock: Any = None
    _cycle: Any = None

    def model_post_init(self, __context: Any) -> None:  # noqa: D102
        self._lock = threading.Lock()
        self._cycle = itertools.cycle(self.texts)
        self.billed = []

    @property
    def _llm_type(self) -> str:
        return "billing-fake"

    def _reply(self, messages: list[BaseMessage], max_tokens: int | None) -> tuple[str, dict]:
        last = messages[-1].text if messages else ""
        text = next((t for key, t in self.answers.items() if key in last), None)
        if text is None:
            with self._lock:
                text = next(self._cycle)
        enc = encoding_for_model(None)
        ids = enc.encode(text)
        if max_tokens is not None and len(ids) > max_tokens:
            ids = ids[:max_tokens]
            text = enc.decode(ids)
        usage = {
            "input_tokens": count_messages(messages),
            "output_tokens": len(ids),
            "total_tokens": count_messages(messages) + len(ids),
        }
        with self._lock:
            self.billed.append(usage["total_tokens"])
        return text, usage

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text, usage = self._reply(messages, kwargs.get("max_tokens"))
        if self.fail_after_billing:
            raise RuntimeError("provider failed after billing")
        msg = AIMessage(content=text, usage_metadata=usage if self.report_usage else None)
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text, usage = self._reply(messages, kwargs.get("max_tokens"))
        for word in text.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
        if self.report_usage:
            yield ChatGenerationChunk(
                message=AIMessageChunk(content="", usage_metadata=usage)  # type: ignore[arg-type]
            )


class ExplodingChat(BaseChatModel):
    """Raises mid-call without billing."""

    @property
    def _llm_type(self) -> str:
        return "exploding-fake"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        raise ConnectionError("connection dropped")
