"""Fake chat models that bill like a provider honouring ``max_tokens`` (tests, benchmarks)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from budget_graph.accounting import count_messages, encoding_for_model

__all__ = ["BillingFakeChat", "ExplodingChat", "ScriptedToolModel", "turn"]


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


def turn(*tool_calls: tuple[str, dict[str, Any]], output_tokens: int = 20, text: str = "") -> dict:
    """One scripted model turn: ``turn(("search", {"q": "x"}), output_tokens=40)``."""
    return {
        "tool_calls": [{"name": n, "args": a} for n, a in tool_calls],
        "output_tokens": output_tokens,
        "text": text,
    }


class ScriptedToolModel(BaseChatModel):
    """Plays scripted turns; after the script, answers ``final_text`` without tools."""

    steps: list[dict] = []
    final_text: str = "Final answer."
    final_output_tokens: int = 8
    max_tokens: int | None = None
    report_usage: bool = True
    calls_tools_unbound: bool = False
    """Emit scripted tool calls even when no tools are bound (an adversarial model);
    by default a turn without bound tools answers ``final_text`` instead."""
    calls: list[dict] = []
    """One record per call: ``max_tokens``, ``tools`` (names), ``input``, ``output``, ``billed``."""
    _lock: Any = None
    _index: Any = None

    def model_post_init(self, __context: Any) -> None:  # noqa: D102
        self._lock = threading.Lock()
        self._index = itertools.count()
        self.calls = []

    @property
    def _llm_type(self) -> str:
        return "scripted-tool-fake"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        """Bind tools as OpenAI schemas (counted in the prompt)."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    @property
    def billed_total(self) -> int:
        """Input plus output tokens of every call so far."""
        return sum(c["input"] + c["output"] for c in self.calls)

    @property
    def billed_output(self) -> int:
        """Output tokens of every call so far."""
        return sum(c["output"] for c in self.calls)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        i = next(self._index)
        if i < len(self.steps):
            step = self.steps[i]
        else:
            step = {"tool_calls": [], "output_tokens": self.final_output_tokens, "text": ""}
        tools = kwargs.get("tools")
        if not tools and not self.calls_tools_unbound and step["tool_calls"]:
            step = {**step, "tool_calls": [], "text": step.get("text") or self.final_text}
        text = step.get("text") or (self.final_text if not step["tool_calls"] else "")
        cap = kwargs.get("max_tokens", self.max_tokens)
        out = int(step["output_tokens"])
        tool_calls = [
            {"name": tc["name"], "args": tc["args"], "id": tc.get("id") or f"call_{i}_{j}"}
            for j, tc in enumerate(step["tool_calls"])
        ]
        finish = "tool_calls" if tool_calls else "stop"
        if cap is not None and out > cap:
            out, tool_calls, finish = cap, [], "length"
            text = text or "(truncated)"
        prompt = count_messages(messages, tools=tools)
        usage = {"input_tokens": prompt, "output_tokens": out, "total_tokens": prompt + out}
        with self._lock:
            self.calls.append(
                {
                    "max_tokens": cap,
                    "tools": [t["function"]["name"] for t in tools or ()],
                    "input": prompt,
                    "output": out,
                }
            )
        msg = AIMessage(
            content=text,
            tool_calls=tool_calls,
            usage_metadata=usage if self.report_usage else None,  # type: ignore[arg-type]
            response_metadata={"finish_reason": finish},
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])
