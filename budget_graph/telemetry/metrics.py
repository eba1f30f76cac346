"""Metric instruments, one small factory per instrument (OTel API only).

``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration`` follow the GenAI
semantic conventions; the ``budget.*`` instruments are ours. A run's spend is recorded
in its own unit: ``budget.run.spend`` in tokens for token budgets, ``budget.run.cost``
in USD for cost budgets (whose meters count micro-USD). The overshoot counter gets a
data point (``0``) at the end of every run, so "overshoot stays 0" is visible on a
dashboard rather than inferred from a missing series.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Counter, Histogram, Meter

__all__ = [
    "BUDGET_EVENTS",
    "BUDGET_OVERSHOOT_COUNT",
    "BUDGET_RUN_COST",
    "BUDGET_RUN_SPEND",
    "BUDGET_RUN_UTILIZATION",
    "GEN_AI_CLIENT_OPERATION_DURATION",
    "GEN_AI_CLIENT_TOKEN_USAGE",
    "BudgetInstruments",
    "create_budget_events_counter",
    "create_budget_instruments",
    "create_operation_duration_histogram",
    "create_overshoot_counter",
    "create_run_cost_histogram",
    "create_run_spend_histogram",
    "create_token_usage_histogram",
    "create_utilization_histogram",
]

GEN_AI_CLIENT_TOKEN_USAGE = "gen_ai.client.token.usage"
GEN_AI_CLIENT_OPERATION_DURATION = "gen_ai.client.operation.duration"
BUDGET_RUN_SPEND = "budget.run.spend"
BUDGET_RUN_COST = "budget.run.cost"
BUDGET_RUN_UTILIZATION = "budget.run.utilization"
BUDGET_OVERSHOOT_COUNT = "budget.overshoot.count"
BUDGET_EVENTS = "budget.events"

# Bucket boundaries the GenAI semantic conventions recommend.
_TOKEN_BUCKETS = [4**i for i in range(14)]
_DURATION_BUCKETS = [0.01 * 2**i for i in range(14)]
_COST_BUCKETS = [0.0001 * 4**i for i in range(12)]
_UTILIZATION_BUCKETS = [0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0, 1.01]


def create_token_usage_histogram(meter: Meter) -> Histogram:
    """``gen_ai.client.token.usage``: tokens per call, by ``gen_ai.token.type`` and model."""
    return meter.create_histogram(
        name=GEN_AI_CLIENT_TOKEN_USAGE,
        unit="{token}",
        description="Number of input and output tokens used",
        explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
    )


def create_operation_duration_histogram(meter: Meter) -> Histogram:
    """``gen_ai.client.operation.duration``: seconds per call, by model, provider, server, error."""
    return meter.create_histogram(
        name=GEN_AI_CLIENT_OPERATION_DURATION,
        unit="s",
        description="GenAI operation duration",
        explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
    )


def create_run_spend_histogram(meter: Meter) -> Histogram:
    """``budget.run.spend``: tokens spent per run of a token budget."""
    return meter.create_histogram(
        name=BUDGET_RUN_SPEND,
        unit="{token}",
        description="Tokens a run spent of its token budget",
        explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
    )


def create_run_cost_histogram(meter: Meter) -> Histogram:
    """``budget.run.cost``: US dollars spent per run of a cost budget."""
    return meter.create_histogram(
        name=BUDGET_RUN_COST,
        unit="{USD}",
        description="US dollars a run spent of its cost budget",
        explicit_bucket_boundaries_advisory=_COST_BUCKETS,
    )


def create_utilization_histogram(meter: Meter) -> Histogram:
    """``budget.run.utilization``: spent / limit per run (1.0 = the whole budget)."""
    return meter.create_histogram(
        name=BUDGET_RUN_UTILIZATION,
        unit="1",
        description="Fraction of the budget a run spent",
        explicit_bucket_boundaries_advisory=_UTILIZATION_BUCKETS,
    )


def create_overshoot_counter(meter: Meter) -> Counter:
    """``budget.overshoot.count``: runs that spent more than their limit (must stay 0)."""
    return meter.create_counter(
        name=BUDGET_OVERSHOOT_COUNT,
        unit="{run}",
        description="Runs whose spend exceeded their budget limit",
    )


def create_budget_events_counter(meter: Meter) -> Counter:
    """``budget.events``: budget events (refusals, exhaustion, early stops...) by name."""
    return meter.create_counter(
        name=BUDGET_EVENTS,
        unit="{event}",
        description="Budget events by budget.event name",
    )


@dataclass(frozen=True, slots=True)
class BudgetInstruments:
    """Every instrument the budget tracer records to."""

    token_usage: Histogram
    duration: Histogram
    run_spend: Histogram
    run_cost: Histogram
    utilization: Histogram
    overshoot: Counter
    events: Counter


def create_budget_instruments(meter: Meter) -> BudgetInstruments:
    """Create all of the above on ``meter``."""
    return BudgetInstruments(
        token_usage=create_token_usage_histogram(meter),
        duration=create_operation_duration_histogram(meter),
        run_spend=create_run_spend_histogram(meter),
        run_cost=create_run_cost_histogram(meter),
        utilization=create_utilization_histogram(meter),
        overshoot=create_overshoot_counter(meter),
        events=create_budget_events_counter(meter),
    )
