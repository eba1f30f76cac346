"""Metric instruments, one small factory per instrument (OTel API only).

``gen_ai.client.token.usage`` follows the GenAI semantic conventions; the ``budget.*``
instruments are ours. The overshoot counter gets a data point (``0``) at the end of
every run, so "overshoot stays 0" is visible on a dashboard rather than inferred from a
missing series.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Counter, Histogram, Meter

__all__ = [
    "BUDGET_EVENTS",
    "BUDGET_OVERSHOOT_COUNT",
    "BUDGET_RUN_SPEND",
    "BUDGET_RUN_UTILIZATION",
    "GEN_AI_CLIENT_TOKEN_USAGE",
    "BudgetInstruments",
    "create_budget_events_counter",
    "create_budget_instruments",
    "create_overshoot_counter",
    "create_run_spend_histogram",
    "create_token_usage_histogram",
    "create_utilization_histogram",
]

GEN_AI_CLIENT_TOKEN_USAGE = "gen_ai.client.token.usage"
BUDGET_RUN_SPEND = "budget.run.spend"
BUDGET_RUN_UTILIZATION = "budget.run.utilization"
BUDGET_OVERSHOOT_COUNT = "budget.overshoot.count"
BUDGET_EVENTS = "budget.events"

# Bucket boundaries the GenAI semantic conventions recommend.
_TOKEN_BUCKETS = [4**i for i in range(14)]
_UTILIZATION_BUCKETS = [0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0, 1.01]


def create_token_usage_histogram(meter: Meter) -> Histogram:
    """``gen_ai.client.token.usage``: tokens per call, by ``gen_ai.token.type`` and model."""
    return meter.create_histogram(
        name=GEN_AI_CLIENT_TOKEN_USAGE,
        unit="{token}",
        description="Number of input and output tokens used",
        explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
    )


def create_run_spend_histogram(meter: Meter) -> Histogram:
    """``budget.run.spend``: units spent per run (tokens, or micro-USD; see ``budget.unit``)."""
    return meter.create_histogram(
        name=BUDGET_RUN_SPEND,
        unit="{token}",
        description="Budget units spent per run",
        explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
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
    run_spend: Histogram
    utilization: Histogram
    overshoot: Counter
    events: Counter


def create_budget_instruments(meter: Meter) -> BudgetInstruments:
    """Create all of the above on ``meter``."""
    return BudgetInstruments(
        token_usage=create_token_usage_histogram(meter),
        run_spend=create_run_spend_histogram(meter),
        utilization=create_utilization_histogram(meter),
        overshoot=create_overshoot_counter(meter),
        events=create_budget_events_counter(meter),
    )
