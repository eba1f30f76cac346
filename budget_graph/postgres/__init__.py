"""One budget shared by many workers: meters kept in PostgreSQL.

Needs the ``[postgres]`` extra (psycopg 3 and psycopg-pool). The meters have the
:class:`~budget_graph.meter.BaseMeter` protocol of the in-process meter, but their
counters live in table rows, so every worker process (LangGraph Server workers, a
task queue, several pods) reserves against the same limit:

- :class:`PostgresMeter` (sync) and :class:`AsyncPostgresMeter` (asyncio): one round
  trip per reserve (the clamp computed in SQL), one per commit; idempotent reserves;
  retries on lost connections; leases renewed while a call is in flight; nested
  scopes (``parent=``) held atomically on every level.
- :class:`ChunkedMeter`: a process leases a chunk of units and serves reservations
  from it locally, for keys too hot for one row.

Tables (created by :func:`setup`, prefixed ``budget_graph_`` so they live next to
``langgraph-checkpoint-postgres``'s tables in one database): see docs/deployment.md.
"""

from budget_graph._internal.pg_schema import MIGRATIONS
from budget_graph.postgres.aio import AsyncPostgresMeter, asetup
from budget_graph.postgres.base import (
    BudgetSnapshot,
    LeasedReservation,
    LeaseExpiredWarning,
    MeterTimeoutError,
)
from budget_graph.postgres.chunks import ChunkedMeter, LocalReservation
from budget_graph.postgres.scope import BudgetScope, Period
from budget_graph.postgres.sync import PostgresMeter, connection_options, setup

__all__ = [
    "MIGRATIONS",
    "AsyncPostgresMeter",
    "BudgetScope",
    "BudgetSnapshot",
    "ChunkedMeter",
    "LeaseExpiredWarning",
    "LeasedReservation",
    "LocalReservation",
    "MeterTimeoutError",
    "Period",
    "PostgresMeter",
    "asetup",
    "connection_options",
    "setup",
]
