"""Provider clients, detected not configured: each one's output-cap keyword, usage and counting.

budget_graph never imports a provider package: a chat model's client is recognised by
its class name (walking its MRO, so subclasses are recognised too). For each client this
module knows which keyword carries a call's output cap (``max_tokens``,
``max_completion_tokens``, ``max_output_tokens``, Ollama's ``options.num_predict``),
where a call's own cap is read from, how its prompts are counted offline, and where its
usage comes from. :func:`output_cap` is **the per-call output cap rule** shared by
``budgeted()``, the middleware and every meter:

1. the call's own cap (its keyword, else the model's field), else
2. the model profile's ``max_output_tokens`` (langchain-core model profiles), else
3. :data:`DEFAULT_OUTPUT_CAP`;

never above the profile's maximum, and never the whole remaining budget.
``Budget.per_call_max_tokens`` tightens it further; the meter's clamp then fits it to
what is left. ``docs/providers.md`` has a table per client.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

from budget_graph.accounting import EXACT, PromptCounting, model_field, model_name

__all__ = [
    "CLIENTS",
    "DEFAULT_OUTPUT_CAP",
    "ModelFacts",
    "OutputCap",
    "ProviderClient",
    "apply_cap",
    "client_of",
    "model_facts",
    "model_label",
    "output_cap",
    "profile_max_output",
    "unwrap_chat_model",
]

DEFAULT_OUTPUT_CAP = 4_096
"""Output cap of a call whose client sets none and whose model has no profile: about a
long answer, far below any remaining budget, so parallel branches each get a share."""

CapSource = Literal["call", "profile", "default"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderClient:
    """What budget_graph knows about one provider client class."""

    name: str
    """Short name (``"openai"``, ``"anthropic"``, ``"ollama"``...; ``"other"`` if unknown)."""
    cap_param: str
    """Keyword a call's output cap is passed in."""
    cap_fields: tuple[str, ...]
    """Call keywords and model fields that hold a requested cap, in priority order."""
    counting: PromptCounting
    """How prompts are counted offline."""
    usage: str
    """Where the provider's usage comes from (documentation)."""


_OPENAI_USAGE = (
    "usage (prompt_tokens, completion_tokens, completion_tokens_details.reasoning_tokens, "
    "prompt_tokens_details.cached_tokens); streamed with stream_options.include_usage"
)
_OTHER = PromptCounting(family="other", ratio=1.35)

CLIENTS: dict[str, ProviderClient] = {
    "ChatOpenAI": ProviderClient(
        name="openai",
        cap_param="max_tokens",
        cap_fields=("max_tokens", "max_completion_tokens"),
        counting=EXACT,
        usage=_OPENAI_USAGE,
    ),
    "AzureChatOpenAI": ProviderClient(
        name="azure_openai",
        cap_param="max_completion_tokens",
        cap_fields=("max_completion_tokens", "max_tokens"),
        counting=EXACT,
        usage=_OPENAI_USAGE,
    ),
    "BaseChatOpenAI": ProviderClient(  # OpenAI-compatible subclasses (DeepSeek, xAI...)
        name="openai_compatible",
        cap_param="max_tokens",
        cap_fields=("max_tokens", "max_completion_tokens"),
        counting=_OTHER,
        usage=_OPENAI_USAGE,
    ),
    "ChatAnthropic": ProviderClient(
        name="anthropic",
        cap_param="max_tokens",
        cap_fields=("max_tokens",),
        counting=PromptCounting(family="anthropic", ratio=1.35),
        usage="usage (input_tokens + cache_read_input_tokens + cache_creation_input_tokens, "
        "output_tokens incl. thinking); streamed in message_start and message_delta",
    ),
    "ChatGoogleGenerativeAI": ProviderClient(
        name="google_genai",
        cap_param="max_output_tokens",
        cap_fields=("max_output_tokens",),
        counting=PromptCounting(family="google", ratio=1.25),
        usage="usage_metadata (prompt_token_count, candidates_token_count, "
        "thoughts_token_count, cached_content_token_count)",
    ),
    "ChatVertexAI": ProviderClient(
        name="vertexai",
        cap_param="max_output_tokens",
        cap_fields=("max_output_tokens",),
        counting=PromptCounting(family="google", ratio=1.25),
        usage="usage_metadata (prompt_token_count, candidates_token_count)",
    ),
    "ChatOllama": ProviderClient(
        name="ollama",
        cap_param="num_predict",
        cap_fields=("num_predict",),
        counting=_OTHER,
        usage="prompt_eval_count and eval_count of the final (done) message",
    ),
    "ChatBedrockConverse": ProviderClient(
        name="bedrock_converse",
        cap_param="max_tokens",
        cap_fields=("max_tokens",),
        counting=_OTHER,
        usage="usage (inputTokens, outputTokens, cacheReadInputTokens); "
        "streamed in the metadata event",
    ),
    "ChatBedrock": ProviderClient(
        name="bedrock",
        cap_param="max_tokens",
        cap_fields=("max_tokens",),
        counting=_OTHER,
        usage="usage of the model's native response",
    ),
    "ChatMistralAI": ProviderClient(
        name="mistralai",
        cap_param="max_tokens",
        cap_fields=("max_tokens",),
        counting=_OTHER,
        usage="usage (prompt_tokens, completion_tokens), also when streaming",
    ),
    "ChatGroq": ProviderClient(
        name="groq",
        cap_param="max_tokens",
        cap_fields=("max_tokens", "max_completion_tokens"),
        counting=_OTHER,
        usage="usage (OpenAI fields; x_groq.usage when streaming)",
    ),
}
"""Known clients by class name (a subclass is matched through its MRO)."""

_GENERIC = ProviderClient(
    name="other",
    cap_param="max_tokens",
    cap_fields=("max_tokens",),
    counting=EXACT,
    usage="AIMessage.usage_metadata if the client sets it, else counted locally (estimated)",
)


def unwrap_chat_model(model: Any) -> tuple[Any, dict[str, Any]]:
    """The provider's chat model inside bindings and wrappers, and the bindings' kwargs.

    Looks through ``RunnableBinding``s (``bind_tools``, ``bind``) and chat-model
    wrappers that hold the wrapped chat model in ``.model`` (``budgeted()``).
    """
    from langchain_core.language_models import BaseChatModel

    kwargs: dict[str, Any] = {}
    for _ in range(16):
        bound, bound_kwargs = model_field(model, "bound"), model_field(model, "kwargs")
        if bound is not None and bound_kwargs is not None:
            kwargs = {**bound_kwargs, **kwargs}  # the outer binding's kwargs win
            model = bound
        elif isinstance(model_field(model, "model"), BaseChatModel):
            model = model.model
        else:
            break
    return model, kwargs


@functools.cache
def _client_of_type(cls: Any) -> ProviderClient:
    for klass in cls.__mro__:
        found = CLIENTS.get(klass.__name__)
        if found is not None:
            if found.name == "openai" and klass is not cls and "azure" in cls.__name__.lower():
                return CLIENTS["AzureChatOpenAI"]
            return found
    return _GENERIC


def client_of(model: Any, *, cap_param: str | None = None) -> ProviderClient:
    """The :class:`ProviderClient` of a chat model (``"other"`` if its class is unknown).

    ``cap_param`` names the keyword of an unknown client (default ``max_tokens``).
    """
    found = _client_of_type(type(model))  # type: ignore[arg-type]
    if found is _GENERIC and cap_param and cap_param != _GENERIC.cap_param:
        return replace(_GENERIC, cap_param=cap_param, cap_fields=(cap_param,))
    return found


def profile_max_output(model: Any) -> int | None:
    """The model profile's ``max_output_tokens`` (langchain-core ``model.profile``), if any."""
    profile = model_field(model, "profile")
    value = profile.get("max_output_tokens") if isinstance(profile, Mapping) else None
    return value if isinstance(value, int) and value > 0 else None


def _as_cap(value: Any) -> int | None:
    # Ollama's num_predict uses -1 (no limit) and -2 (fill the context): no cap asked.
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _thinking(model: Any, kwargs: Mapping[str, Any]) -> Any:
    fixed = model_field(model, "thinking")
    return fixed if fixed is not None else kwargs.get("thinking")


_CAP_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict")
"""Every output-cap keyword: a call may use any (callers write ``max_tokens``)."""


def _requested(client: ProviderClient, model: Any, kwargs: Mapping[str, Any]) -> int | None:
    for key in (*client.cap_fields, *_CAP_KEYS):
        found = _as_cap(kwargs.get(key))
        if found is not None:
            return found
    if client.name == "ollama":
        found = _as_cap((kwargs.get("options") or {}).get("num_predict"))
        if found is not None:
            return found
    for key in client.cap_fields:
        found = _as_cap(model_field(model, key))
        if found is not None:
            return found
    extra = model_field(model, "model_kwargs")
    if isinstance(extra, Mapping):
        for key in client.cap_fields:
            found = _as_cap(extra.get(key))
            if found is not None:
                return found
    return None


@dataclass(frozen=True, slots=True)
class OutputCap:
    """The per-call output cap of one call, before the budget's clamp."""

    cap: int
    """Most output tokens per sample the call may be sent with."""
    source: CapSource
    """Where it came from: the call's own cap, the model profile, or the default."""
    minimum: int = 1
    """Fewest output tokens the call can be sent with (Anthropic thinking: budget + 1)."""
    param: str = "max_tokens"
    """The keyword the cap is passed in."""


def output_cap(
    model: Any,
    kwargs: Mapping[str, Any] | None = None,
    *,
    per_call_max_tokens: int | None = None,
    cap_param: str | None = None,
) -> OutputCap:
    """The per-call output cap rule (see the module docstring).

    Args:
        model: The chat model that makes the call (bindings are looked through).
        kwargs: The call's keyword arguments.
        per_call_max_tokens: ``Budget.per_call_max_tokens``; tightens the cap.
        cap_param: The keyword of a client this module does not know.

    Example:
        >>> from langchain_core.language_models import FakeListChatModel
        >>> output_cap(FakeListChatModel(responses=["x"]), {"max_tokens": 300}).cap
        300
        >>> output_cap(FakeListChatModel(responses=["x"]), {}).source
        'default'

    """
    model, bound = unwrap_chat_model(model)
    call = {**bound, **(kwargs or {})}
    client = client_of(model, cap_param=cap_param)
    profile = profile_max_output(model)
    requested = _requested(client, model, call)
    source: CapSource
    if requested is not None:
        cap, source = requested, "call"
    elif profile is not None:
        cap, source = profile, "profile"
    else:
        cap, source = DEFAULT_OUTPUT_CAP, "default"
    if profile is not None and cap > profile:
        cap = profile  # the provider would reject more than the model can write
    if per_call_max_tokens and per_call_max_tokens < cap:
        cap = per_call_max_tokens
    minimum = 1
    thinking = _thinking(model, call) if client.name == "anthropic" else None
    if isinstance(thinking, Mapping) and thinking.get("type") == "enabled":
        budget_tokens = _as_cap(thinking.get("budget_tokens"))
        if budget_tokens is not None:
            # Anthropic's thinking budget counts inside max_tokens, which must exceed it.
            minimum = budget_tokens + 1
    return OutputCap(cap=cap, source=source, minimum=minimum, param=client.cap_param)


_OLLAMA_OPTIONS = (
    "mirostat",
    "mirostat_eta",
    "mirostat_tau",
    "num_ctx",
    "num_gpu",
    "num_thread",
    "repeat_last_n",
    "repeat_penalty",
    "temperature",
    "seed",
    "tfs_z",
    "top_k",
    "top_p",
)


def apply_cap(
    model: Any,
    kwargs: Mapping[str, Any],
    cap: int,
    *,
    stop: list[str] | None = None,
    cap_param: str | None = None,
    client: ProviderClient | None = None,
) -> dict[str, Any]:
    """The call's keyword arguments with its output cap set where ``model``'s client reads it.

    OpenAI: ``max_tokens`` (langchain-openai sends it as ``max_completion_tokens``, which
    reasoning models require); Azure: ``max_completion_tokens``; Ollama: inside
    ``options`` (``num_predict``), which then also carries the model's own options, since
    ``ChatOllama`` ignores its fields once a call passes ``options``; Google:
    ``max_output_tokens``; the others: ``max_tokens``. Other cap keywords are removed (a
    caller's ``max_tokens`` would break a client that does not take it). ``client``, when
    given, is ``model``'s (``model`` then is the provider's own, as in :class:`ModelFacts`).
    """
    if client is None:
        model, _ = unwrap_chat_model(model)
        client = client_of(model, cap_param=cap_param)
    out = {k: v for k, v in kwargs.items() if k not in _CAP_KEYS}
    if client.name == "ollama":
        options = out.get("options")
        if not isinstance(options, Mapping):
            options = {k: getattr(model, k, None) for k in _OLLAMA_OPTIONS}
            fixed_stop = stop if stop is not None else getattr(model, "stop", None)
            options = {k: v for k, v in {**options, "stop": fixed_stop}.items() if v is not None}
        if stop is not None and "stop" not in options:
            options = {**options, "stop": stop}
        out["options"] = {**options, "num_predict": cap}
        return out
    out[client.cap_param] = cap
    return out


class ModelFacts(NamedTuple):
    """What every call reads from a chat model: ``budgeted()`` reads it once, on wrapping."""

    name: str | None
    n: int
    """Samples per call by default."""
    client: ProviderClient
    cap: OutputCap
    """The output cap of a call that passes no keyword arguments."""
    provider: Any
    """The provider's chat model inside wrappers (whose ``client`` a call's cap goes to)."""


def model_facts(model: Any, *, cap_param: str | None = None) -> ModelFacts:
    """The :class:`ModelFacts` of a chat model (its client: the one inside wrappers)."""
    provider, _ = unwrap_chat_model(model)
    return ModelFacts(
        name=model_name(model),
        n=model_field(model, "n") or 1,
        client=client_of(provider, cap_param=cap_param),
        cap=output_cap(model, {}, cap_param=cap_param),
        provider=provider,
    )


def model_label(model: Any) -> str | None:
    """The model name of a chat model, looking through bindings."""
    return model_name(unwrap_chat_model(model)[0])
