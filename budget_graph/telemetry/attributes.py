"""Attribute names: the GenAI semantic conventions we use and our ``budget.*`` names.

Every span we create carries :data:`SPAN_KIND` (``"llm"``, ``"node"`` or ``"run"``), so a
backend can tell our spans apart from an outer instrumentor's. Usage is reported twice
on purpose, under distinct names:

* ``gen_ai.usage.*`` only on LLM-call spans (one call, counted once);
* ``budget.usage.*`` on node and run spans: the rolled-up sum of the calls beneath.

Sum ``gen_ai.usage.*`` over spans; read a node's or run's total off its own
``budget.usage.*``. Under another instrumentor that already reports usage on its own
LLM span, turn ``genai_usage`` off: our LLM spans then carry ``budget.usage.*``
instead, and ``gen_ai.usage.*`` stays counted once, on theirs.
"""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _gen_ai

__all__ = [
    "BUDGET_ALLOCATED",
    "BUDGET_ESTIMATE",
    "BUDGET_ESTIMATED",
    "BUDGET_LIMIT",
    "BUDGET_NODE",
    "BUDGET_PREFIX",
    "BUDGET_REMAINING",
    "BUDGET_RESERVED",
    "BUDGET_SPENT",
    "BUDGET_STOP_REASON",
    "BUDGET_UNIT",
    "BUDGET_UNITS",
    "BUDGET_UTILIZATION",
    "ERROR_TYPE",
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

# GenAI semantic conventions (incubating).
GEN_AI_OPERATION_NAME = _gen_ai.GEN_AI_OPERATION_NAME
GEN_AI_REQUEST_MODEL = _gen_ai.GEN_AI_REQUEST_MODEL
GEN_AI_REQUEST_MAX_TOKENS = _gen_ai.GEN_AI_REQUEST_MAX_TOKENS
GEN_AI_REQUEST_CHOICE_COUNT = _gen_ai.GEN_AI_REQUEST_CHOICE_COUNT
GEN_AI_RESPONSE_FINISH_REASONS = _gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_USAGE_INPUT_TOKENS = _gen_ai.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS = _gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = _gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = _gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
GEN_AI_TOKEN_TYPE = _gen_ai.GEN_AI_TOKEN_TYPE
GEN_AI_INPUT_MESSAGES = _gen_ai.GEN_AI_INPUT_MESSAGES
GEN_AI_OUTPUT_MESSAGES = _gen_ai.GEN_AI_OUTPUT_MESSAGES
ERROR_TYPE = "error.type"

# Ours.
SPAN_KIND = "budget_graph.span.kind"
"""Which of our spans this is: ``"llm"``, ``"node"`` or ``"run"``."""
SPAN_KIND_LLM = "llm"
SPAN_KIND_NODE = "node"
SPAN_KIND_RUN = "run"

BUDGET_PREFIX = "budget."
BUDGET_LIMIT = "budget.limit"
"""The run's limit in meter units (LLM and run spans)."""
BUDGET_SPENT = "budget.spent"
"""Units spent on the run: before the call (LLM span), at the end (node and run spans)."""
BUDGET_REMAINING = "budget.remaining"
"""Units left, at the same moment as :data:`BUDGET_SPENT`."""
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
