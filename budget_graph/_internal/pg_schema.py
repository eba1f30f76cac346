"""SQL of :mod:`budget_graph.postgres`: the schema migrations and each operation's statement.

Every operation is one statement, so it is atomic on its own (the meter's
connections run in autocommit mode).
"""

from __future__ import annotations

__all__ = [
    "COMMIT_SQL",
    "ENSURE_KEEP",
    "ENSURE_UPDATE",
    "MIGRATIONS",
    "RECLAIM_READ_SQL",
    "RELEASE_SQL",
    "RENEW_SQL",
    "RESERVE_SQL",
    "SETUP_LOCK",
    "SPEND_SQL",
]

MIGRATIONS: list[str] = [
    "CREATE TABLE IF NOT EXISTS budget_graph_migrations (v INTEGER PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS budget_graph_budgets (
    key TEXT PRIMARY KEY,
    limit_units BIGINT NOT NULL CHECK (limit_units > 0),
    reserve_units BIGINT NOT NULL DEFAULT 0 CHECK (reserve_units >= 0),
    unit TEXT NOT NULL DEFAULT 'tokens',
    spent BIGINT NOT NULL DEFAULT 0 CHECK (spent >= 0),
    reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
)""",
    """CREATE TABLE IF NOT EXISTS budget_graph_leases (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL REFERENCES budget_graph_budgets (key) ON DELETE CASCADE,
    units BIGINT NOT NULL CHECK (units >= 0),
    final BOOLEAN NOT NULL DEFAULT false,
    node TEXT,
    owner TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS budget_graph_leases_key_expires_idx "
    "ON budget_graph_leases (key, expires_at)",
    """CREATE TABLE IF NOT EXISTS budget_graph_charges (
    lease_id BIGINT PRIMARY KEY,
    key TEXT NOT NULL,
    units BIGINT NOT NULL,
    reserved_units BIGINT NOT NULL,
    late BOOLEAN NOT NULL,
    node TEXT,
    input_tokens BIGINT,
    output_tokens BIGINT,
    reasoning_tokens BIGINT,
    cached_tokens BIGINT,
    calls BIGINT,
    estimated_calls BIGINT,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT now()
)""",
    "CREATE INDEX IF NOT EXISTS budget_graph_charges_key_idx ON budget_graph_charges (key)",
]
"""Schema migrations; the position of a migration is its version. Append only."""

SETUP_LOCK = 0x6275_6467_6574  # pg_advisory_xact_lock id: one setup() at a time

_ENSURE_SQL = """
INSERT INTO budget_graph_budgets (key, limit_units, reserve_units, unit)
VALUES (%(key)s, %(limit)s, %(reserve)s, %(unit)s)
ON CONFLICT (key) DO {}"""
ENSURE_UPDATE = _ENSURE_SQL.format(
    "UPDATE SET limit_units = EXCLUDED.limit_units, reserve_units = EXCLUDED.reserve_units, "
    "unit = EXCLUDED.unit, updated_at = now()"
)
ENSURE_KEEP = _ENSURE_SQL.format("NOTHING")

# The hot path: the check and the increment are one UPDATE (the row lock serialises
# concurrent reservations and each re-checks the latest row), the lease is inserted
# only if the UPDATE matched.
RESERVE_SQL = """
WITH b AS (
    UPDATE budget_graph_budgets
    SET reserved = reserved + %(units)s, updated_at = now()
    WHERE key = %(key)s AND spent + reserved + %(units)s
        <= limit_units - CASE WHEN %(final)s THEN 0 ELSE reserve_units END
    RETURNING key
)
INSERT INTO budget_graph_leases (key, units, final, node, owner, expires_at)
SELECT key, %(units)s::bigint, %(final)s::boolean, %(node)s::text, %(owner)s::text,
       now() + make_interval(secs => %(lease_s)s)
FROM b
RETURNING id, expires_at"""

# Reclaim expired leases of a key and read its row, in one statement. SKIP LOCKED:
# a lease being committed or reclaimed by someone else right now is theirs.
RECLAIM_READ_SQL = """
WITH expired AS (
    DELETE FROM budget_graph_leases
    WHERE id IN (SELECT id FROM budget_graph_leases
                 WHERE key = %(key)s AND expires_at <= now()
                 FOR UPDATE SKIP LOCKED)
    RETURNING units
), upd AS (
    UPDATE budget_graph_budgets
    SET reserved = reserved - (SELECT sum(units) FROM expired), updated_at = now()
    WHERE key = %(key)s AND EXISTS (SELECT 1 FROM expired)
    RETURNING limit_units, reserve_units, spent, reserved
)
SELECT limit_units, reserve_units, spent, reserved,
       (SELECT coalesce(sum(units), 0) FROM expired)::bigint FROM upd
UNION ALL
SELECT limit_units, reserve_units, spent, reserved, 0::bigint FROM budget_graph_budgets
WHERE key = %(key)s AND NOT EXISTS (SELECT 1 FROM upd)"""

# Charge a call: drop its lease (if still there), record the charge once (the
# ledger's primary key makes a repeated commit a no-op), add the units to spent.
COMMIT_SQL = """
WITH gone AS (
    DELETE FROM budget_graph_leases WHERE id = %(id)s RETURNING units
), charge AS (
    INSERT INTO budget_graph_charges (lease_id, key, units, reserved_units, late, node,
        input_tokens, output_tokens, reasoning_tokens, cached_tokens, calls, estimated_calls)
    SELECT %(id)s::bigint, %(key)s::text, %(units)s::bigint, %(reserved_units)s::bigint,
        NOT EXISTS (SELECT 1 FROM gone),
        %(node)s::text, %(input_tokens)s::bigint, %(output_tokens)s::bigint,
        %(reasoning_tokens)s::bigint,
        %(cached_tokens)s::bigint, %(calls)s::bigint, %(estimated_calls)s::bigint
    ON CONFLICT (lease_id) DO NOTHING
    RETURNING late
)
UPDATE budget_graph_budgets
SET spent = spent + %(units)s,
    reserved = reserved - coalesce((SELECT sum(units) FROM gone), 0),
    updated_at = now()
WHERE key = %(key)s AND EXISTS (SELECT 1 FROM charge)
RETURNING (SELECT bool_or(late) FROM charge)"""

RELEASE_SQL = """
WITH gone AS (
    DELETE FROM budget_graph_leases WHERE id = %(id)s RETURNING key, units
)
UPDATE budget_graph_budgets AS b
SET reserved = b.reserved - g.units, updated_at = now()
FROM gone AS g WHERE b.key = g.key"""

RENEW_SQL = """
UPDATE budget_graph_leases SET expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE id = %(id)s RETURNING expires_at"""

SPEND_SQL = """
SELECT node, sum(input_tokens), sum(output_tokens), sum(reasoning_tokens),
       sum(cached_tokens), sum(calls), sum(estimated_calls), sum(units)
FROM budget_graph_charges WHERE key = %(key)s AND calls IS NOT NULL GROUP BY node"""
