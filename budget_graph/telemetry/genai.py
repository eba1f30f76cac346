"""What the GenAI conventions say about a call: provider, server, sampling, response.

Read off the call record: the wrapped chat model (provider and server, once per
model), the keyword arguments sent (sampling parameters, over the model's defaults)
and the reply (response model and id). Only what is known is reported.
"""

from __future__ import annotations

import weakref
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.util.types import AttributeValue

from budget_graph._internal.observe import CallInfo
from budget_graph.telemetry import attributes as A

__all__ = [
    "ModelFacts",
    "model_facts",
    "provider_name",
    "request_attributes",
    "response_attributes",
]

# LangChain's ``ls_provider`` -> ``gen_ai.provider.name`` (the conventions' well-known values).
_PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "google_vertexai": "gcp.vertex_ai",
    "google_genai": "gcp.gen_ai",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "ibm": "ibm.watsonx.ai",
}

# Where chat-model classes keep their endpoint.
_URL_FIELDS = ("openai_api_base", "base_url", "anthropic_api_url", "azure_endpoint", "endpoint")

# (request keyword and model field, attribute) for the sampling parameters.
_SAMPLING = (
    ("temperature", A.GEN_AI_REQUEST_TEMPERATURE),
    ("top_p", A.GEN_AI_REQUEST_TOP_P),
    ("top_k", A.GEN_AI_REQUEST_TOP_K),
    ("seed", A.GEN_AI_REQUEST_SEED),
    ("frequency_penalty", A.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    ("presence_penalty", A.GEN_AI_REQUEST_PRESENCE_PENALTY),
)


def provider_name(ls_provider: str | None) -> str | None:
    """``gen_ai.provider.name`` for LangChain's provider name (others kept as they are).

    Example:
        >>> provider_name("azure"), provider_name("ollama"), provider_name(None)
        ('azure.ai.openai', 'ollama', None)

    """
    if not ls_provider:
        return None
    return _PROVIDERS.get(ls_provider.lower(), ls_provider.lower())


class ModelFacts:
    """A chat model's constant GenAI attributes, read once per model object."""

    __slots__ = ("__weakref__", "attributes", "label_key", "metric_labels", "provider")

    def __init__(self, model: Any) -> None:
        attrs: dict[str, AttributeValue] = {}
        try:
            ls = model._get_ls_params() or {}
        except Exception:  # noqa: BLE001 - a model without LangSmith params
            ls = {}
        self.provider = provider_name(ls.get("ls_provider"))
        if self.provider is not None:
            attrs[A.GEN_AI_PROVIDER_NAME] = self.provider
        for name in _URL_FIELDS:
            url = getattr(model, name, None)
            if isinstance(url, str) and url:
                parts = urlsplit(url if "//" in url else f"//{url}")
                if parts.hostname:
                    attrs[A.SERVER_ADDRESS] = parts.hostname
                    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
                    if port:
                        attrs[A.SERVER_PORT] = port
                break
        for name, attr in _SAMPLING:
            value = getattr(model, name, None)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attrs[attr] = value
        stop = getattr(model, "stop", None) or getattr(model, "stop_sequences", None)
        if isinstance(stop, list | tuple) and stop:
            attrs[A.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
        self.attributes = attrs
        """Provider, server and the model's default sampling parameters."""
        self.metric_labels = {
            k: v
            for k, v in attrs.items()
            if k in (A.GEN_AI_PROVIDER_NAME, A.SERVER_ADDRESS, A.SERVER_PORT)
        }
        """The part of :attr:`attributes` metrics are labelled with."""
        self.label_key = tuple(self.metric_labels.values())


_facts: dict[int, tuple[weakref.ref[Any], ModelFacts]] = {}
"""Facts by model id, with a weak reference to tell a live model from a reused id
(chat models are pydantic models: unhashable, so no ``WeakKeyDictionary``)."""
_EMPTY = ModelFacts(None)


def model_facts(model: Any) -> ModelFacts:
    """The constant GenAI attributes of ``model`` (read once while the model lives)."""
    if model is None:
        return _EMPTY
    entry = _facts.get(id(model))
    if entry is not None and entry[0]() is model:
        return entry[1]
    facts, key = ModelFacts(model), id(model)
    try:
        ref = weakref.ref(model, lambda _: _facts.pop(key, None))
    except TypeError:  # not weak-referenceable: not cached
        return facts
    _facts[key] = (ref, facts)
    return facts


def request_attributes(call: CallInfo, facts: ModelFacts) -> dict[str, AttributeValue]:
    """Provider, server and sampling parameters of one call (the call's own over the model's)."""
    attrs = dict(facts.attributes)
    request = call.request
    if request:
        for name, attr in _SAMPLING:
            value = request.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attrs[attr] = value
        stop = request.get("stop")
        if isinstance(stop, list | tuple) and stop:
            attrs[A.GEN_AI_REQUEST_STOP_SEQUENCES] = [str(s) for s in stop]
    return attrs


def response_attributes(call: CallInfo) -> dict[str, AttributeValue]:
    """``gen_ai.response.model`` and ``gen_ai.response.id`` from the reply, when reported.

    The reply is a ``ChatResult``, or for a streamed call its last chunk.
    """
    attrs: dict[str, AttributeValue] = {}
    response = call.response
    generations = getattr(response, "generations", None)
    if generations:
        out = getattr(response, "llm_output", None) or {}
        msg = generations[0].message
    elif getattr(response, "message", None) is not None:  # a streamed call's last chunk
        out, msg = {}, response.message
    else:
        return attrs
    meta = msg.response_metadata or {}
    model = out.get("model_name") or meta.get("model_name") or meta.get("model")
    if isinstance(model, str) and model:
        attrs[A.GEN_AI_RESPONSE_MODEL] = model
    response_id = out.get("id") or meta.get("id")  # message ids are LangChain's own
    if isinstance(response_id, str) and response_id:
        attrs[A.GEN_AI_RESPONSE_ID] = response_id
    return attrs
