"""Attribute names: the GenAI semantic conventions we use, our ``budget.*`` names, span kinds.

The GenAI names are spelled out here (semantic conventions v1.37, the ``gen_ai.*``
registry) rather than imported from ``opentelemetry-semconv``'s private ``_incubating``
package, whose names move between releases.

Every span we create, and every span of another instrumentor we enrich, carries
:data:`SPAN_KIND` (``"llm"``, ``"node"`` or ``"run"``), plus the OpenInference span kind
(:data:`OPENINFERENCE_SPAN_KIND`: ``CHAIN`` for runs and nodes, ``LLM`` for calls) so
backends built on OpenInference (Arize Phoenix) can show it. Usage is reported under
distinct names on purpose:

* token counts (``gen_ai.usage.*``) on exactly one span per LLM call;
* ``budget.usage.*`` on node and run spans: the rolled-up sum of the calls beneath,
  which no backend adds to the calls' counts.
"""

from __future__ import annotations

__all__ = [
    "BUDGET_ALLOCATED",
    "BUDGET_ANCESTORS_REMAINING",
    "BUDGET_ANCESTORS_SCOPE",
    "BUDGET_ESTIMATE",
    "BUDGET_ESTIMATED",
    "BUDGET_LIMIT",
    "BUDGET_NODE",
    "BUDGET_PREFIX",
    "BUDGET_REMAINING",
    "BUDGET_RESERVED",
    "BUDGET_SCOPE",
    "BUDGET_SPENT",
    "BUDGET_STOP_REASON",
    "BUDGET_UNIT",
    "BUDGET_UNITS",
    "BUDGET_UTILIZATION",
    "ERROR_TYPE",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_FREQUENCY_PENALTY",
    "GEN_AI_REQUEST_PRESENCE_PENALTY",
    "GEN_AI_REQUEST_SEED",
    "GEN_AI_REQUEST_STOP_SEQUENCES",
    "GEN_AI_REQUEST_TEMPERATURE",
    "GEN_AI_REQUEST_TOP_K",
    "GEN_AI_REQUEST_TOP_P",
    "GEN_AI_RESPONSE_ID",
    "GEN_AI_RESPONSE_MODEL",
    "INPUT_MIME_TYPE",
    "INPUT_VALUE",
    "OPENINFERENCE_CHAIN",
    "OPENINFERENCE_LLM",
    "OPENINFERENCE_SPAN_KIND",
    "OUTPUT_MIME_TYPE",
    "OUTPUT_VALUE",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "GEN_AI_INPUT_MESSAGES",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_OUTPUT_MESSAGES",
    "GEN_AI_REQUEST_CHOICE_COUNT",
    "GEN_AI_REQUEST_MAX_TOKENS",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_RESPONSE_FINISH_REASONS",
    "GEN_AI_TOKEN_TYPE",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "GEN_AI_USAGE_REASONING_OUTPUT_TOKENS",
    "ROLLUP",
    "SPAN_KIND",
    "SPAN_KIND_LLM",
    "SPAN_KIND_NODE",
    "SPAN_KIND_RUN",
    "USAGE_CALLS",
    "USAGE_CACHED_TOKENS",
    "USAGE_INPUT_TOKENS",
    "USAGE_OUTPUT_TOKENS",
    "USAGE_REASONING_TOKENS",
    "USAGE_UNITS",
]

# GenAI semantic conventions (development status; names as of semconv v1.37).
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K = "gen_ai.request.top_k"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"

# OpenInference (the span kind and the input/output a backend's trace list shows).
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
OPENINFERENCE_CHAIN = "CHAIN"
OPENINFERENCE_LLM = "LLM"
INPUT_VALUE = "input.value"
INPUT_MIME_TYPE = "input.mime_type"
OUTPUT_VALUE = "output.value"
OUTPUT_MIME_TYPE = "output.mime_type"

# Ours.
SPAN_KIND = "budget_graph.span.kind"
"""Which of our spans this is: ``"llm"``, ``"node"`` or ``"run"``."""
SPAN_KIND_LLM = "llm"
SPAN_KIND_NODE = "node"
SPAN_KIND_RUN = "run"

BUDGET_PREFIX = "budget."
BUDGET_LIMIT = "budget.limit"
"""The limit in meter units of the span's level (:data:`BUDGET_SCOPE`; LLM and run spans)."""
BUDGET_SPENT = "budget.spent"
"""Units spent on the run when the span ended (an LLM call's own usage included)."""
BUDGET_REMAINING = "budget.remaining"
"""Units left to reserve, read at the same moment as :data:`BUDGET_SPENT`."""
BUDGET_RESERVED = "budget.reserved"
"""Units reserved for the call (prompt + clamped ``max_tokens``)."""
BUDGET_UNITS = "budget.units"
"""Units the call was charged (LLM span), when not input + output tokens."""
BUDGET_UNIT = "budget.unit"
"""``"tokens"`` or ``"micro-USD"``."""
BUDGET_ALLOCATED = "budget.allocated"
"""The node's allocated share of the budget, when an allocation policy set one."""
BUDGET_ESTIMATE = "budget.estimate"
"""The estimator's budget for the problem (``budget.estimate`` event)."""
BUDGET_ESTIMATED = "budget.usage_estimated"
"""True when the provider reported no usage and it was counted locally."""
BUDGET_STOP_REASON = "budget.stop_reason"
"""Why the node (terminator) or run stopped."""
BUDGET_UTILIZATION = "budget.utilization"
"""Spent / limit at the end of a run."""
BUDGET_NODE = "budget.node"
BUDGET_SCOPE = "budget.scope"
"""The name of the budget level the span's ``budget.limit/spent/remaining`` describe: the
innermost level of nested budgets (``with_budget(..., name=)``, ``Meter(scope=)``)."""
BUDGET_ANCESTORS_SCOPE = "budget.ancestors.scope"
"""The enclosing levels' names, outermost first (nested budgets only; a string array)."""
BUDGET_ANCESTORS_REMAINING = "budget.ancestors.remaining"
"""Units left at each enclosing level, in :data:`BUDGET_ANCESTORS_SCOPE` order (an int array)."""

USAGE_INPUT_TOKENS = "budget.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "budget.usage.output_tokens"
USAGE_REASONING_TOKENS = "budget.usage.reasoning_tokens"
USAGE_CACHED_TOKENS = "budget.usage.cached_tokens"
USAGE_CALLS = "budget.usage.calls"
USAGE_UNITS = "budget.usage.units"

ROLLUP = (
    USAGE_INPUT_TOKENS,
    USAGE_OUTPUT_TOKENS,
    USAGE_REASONING_TOKENS,
    USAGE_CACHED_TOKENS,
    USAGE_CALLS,
    USAGE_UNITS,
)
"""The ``budget.usage.*`` names, in :class:`~budget_graph.budget.Usage` field order."""
