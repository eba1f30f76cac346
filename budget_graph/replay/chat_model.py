"""``ReplayChatModel``: a LangChain chat model that answers with recorded real completions."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from budget_graph.replay.store import ReplayResponse, ReplayStore

__all__ = ["ReplayChatModel", "split_stream_chunks"]

_CHUNK = re.compile(r"\s*\S+|\s+")


def split_stream_chunks(text: str) -> list[str]:
    """Stream pieces of ``text``: words with their leading whitespace; they join to ``text``."""
    return _CHUNK.findall(text)


def _usage(resp: ReplayResponse) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=resp.prompt_tokens,
        output_tokens=resp.completion_tokens,
        total_tokens=resp.total_tokens,
    )


class ReplayChatModel(BaseChatModel):
    """A chat model that replays recorded real model outputs, never making one up.

    Each request gets the next recorded completion(s) for exactly its messages (see
    ``ReplayStore`` for the cursor semantics). Usage is reported the way
    ``ChatOpenAI`` reports it: every generation's ``usage_metadata`` holds the whole
    call's usage (prompt paid once for ``n`` completions) and ``llm_output["token_usage"]``
    has the OpenAI-style totals.

    Args:
        datasets: Shipped dataset names or JSONL paths (default: every shipped dataset).
        seed: ``None`` for recorded order, an int for a deterministic shuffle per request.
        n: Completions per request (``invoke`` returns the first; ``generate`` all).
        max_tokens: Cut each completion at this many tokens (``finish_reason="length"``).
        on_exhausted: ``"cycle"`` or ``"error"`` when a request's completions run out.
        store: A ready ``ReplayStore`` to share (e.g. with a replay server); overrides the above.

    Raises (on a call):
        NotRecordedError: The request was never recorded; names the closest recorded one.

    Example:
        >>> from budget_graph.replay import ReplayChatModel
        >>> from budget_graph.tasks.game24 import Game24Task
        >>> task = Game24Task()
        >>> llm = ReplayChatModel(datasets=["game24_cot"])
        >>> msg = llm.invoke(task.cot_prompt(task.items()[0]))
        >>> msg.usage_metadata["input_tokens"]
        437

    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    datasets: Sequence[str | Path] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    model_name: str = "replay"
    on_exhausted: Literal["cycle", "error"] = "cycle"
    store: ReplayStore | None = Field(default=None, exclude=True)
    _store: ReplayStore = PrivateAttr()

    def model_post_init(self, __context: Any) -> None:
        """Load the recordings (or adopt the given store)."""
        self._store = (
            self.store
            if self.store is not None
            else ReplayStore(self.datasets, seed=self.seed, on_exhausted=self.on_exhausted)
        )

    @property
    def replay_store(self) -> ReplayStore:
        """The store serving this model's requests (``reset()`` it to replay from the start)."""
        return self._store

    @property
    def _llm_type(self) -> str:
        return "replay"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "seed": self.seed,
            "n": self.n,
            "max_tokens": self.max_tokens,
        }

    def _serve(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        *,
        n: int | None = None,
    ) -> ReplayResponse:
        max_tokens = kwargs.get("max_tokens", kwargs.get("max_completion_tokens", self.max_tokens))
        return self._store.complete(
            messages, n=n or int(kwargs.get("n", self.n)), max_tokens=max_tokens, stop=stop
        )

    def _result(self, resp: ReplayResponse) -> ChatResult:
        usage = _usage(resp)
        gens = []
        for choice in resp.choices:
            meta = {
                "finish_reason": choice.finish_reason,
                "model_name": resp.model,
                "model_provider": "replay",
                "replay_task": resp.task,
                "replay_item_id": resp.item_id,
                "replay_kind": resp.kind,
            }
            msg = AIMessage(content=choice.text, usage_metadata=usage, response_metadata=meta)
            gens.append(
                ChatGeneration(message=msg, generation_info={"finish_reason": choice.finish_reason})
            )
        token_usage = {
            "prompt_tokens": resp.prompt_tokens,
            "completion_tokens": resp.completion_tokens,
            "total_tokens": resp.total_tokens,
        }
        return ChatResult(
            generations=gens, llm_output={"token_usage": token_usage, "model_name": resp.model}
        )

    def _combine_llm_outputs(self, llm_outputs: list[dict[str, Any] | None]) -> dict[str, Any]:
        usage: dict[str, int] = {}
        for out in llm_outputs:
            for k, v in ((out or {}).get("token_usage") or {}).items():
                usage[k] = usage.get(k, 0) + int(v)
        return {"token_usage": usage, "model_name": self.model_name}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._result(self._serve(messages, stop, kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._result(self._serve(messages, stop, kwargs))

    def _chunks(self, resp: ReplayResponse) -> Iterator[ChatGenerationChunk]:
        choice = resp.choices[0]
        for piece in split_stream_chunks(choice.text):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        meta = {
            "finish_reason": choice.finish_reason,
            "model_name": resp.model,
            "model_provider": "replay",
        }
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=_usage(resp),
                response_metadata=meta,
                chunk_position="last",
            ),
            generation_info={"finish_reason": choice.finish_reason},
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._chunks(self._serve(messages, stop, kwargs, n=1)):
            if run_manager and chunk.text:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(self._serve(messages, stop, kwargs, n=1)):
            if run_manager and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
