"""The Postgres meters' schema migrations (applied in order by ``setup()``)."""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SETUP_LOCK"]

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
    # v6-v7: a reservation on a scope chain is one lease row per level, under one
    # client-generated id (so a retried reserve finds its own rows); the ledger has
    # one row per level too.
    "ALTER TABLE budget_graph_leases DROP CONSTRAINT budget_graph_leases_pkey, "
    "ADD CONSTRAINT budget_graph_leases_pkey PRIMARY KEY (id, key)",
    "ALTER TABLE budget_graph_charges DROP CONSTRAINT budget_graph_charges_pkey, "
    "ADD CONSTRAINT budget_graph_charges_pkey PRIMARY KEY (lease_id, key)",
    # v8-v10: a one-level reservation is a single UPDATE that locks, computes and holds
    # (READ COMMITTED re-evaluates its WHERE and SET on the row's newest version);
    # ``last_held`` lets it return what it took. The ledger's key leads its primary
    # key, which serves the per-key reads, so a charge maintains one index, not two.
    "ALTER TABLE budget_graph_budgets ADD COLUMN IF NOT EXISTS last_held BIGINT",
    "ALTER TABLE budget_graph_charges DROP CONSTRAINT budget_graph_charges_pkey, "
    "ADD CONSTRAINT budget_graph_charges_pkey PRIMARY KEY (key, lease_id)",
    "DROP INDEX IF EXISTS budget_graph_charges_key_idx",
    # v11-v16: leases and ledger in one table. A reservation inserts its charge row with
    # ``units`` NULL (open: ``reserved_units`` held until ``expires_at``); its commit
    # fills that row with one UPDATE, so a commit writes no second row and deletes none.
    # The row's (key, lease_id) is the idempotency key: a repeated commit finds it charged.
    # Open rows are indexed apart (partial index), so expiry scans skip the ledger.
    "ALTER TABLE budget_graph_charges ALTER COLUMN units DROP NOT NULL, "
    "ALTER COLUMN late SET DEFAULT false, ALTER COLUMN committed_at DROP NOT NULL, "
    "ALTER COLUMN committed_at DROP DEFAULT, "
    "ADD COLUMN IF NOT EXISTS final BOOLEAN NOT NULL DEFAULT false, "
    "ADD COLUMN IF NOT EXISTS owner TEXT, "
    "ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
    "ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ",
    # as the lease table's was: a budget row's deletion takes its rows with it (NOT VALID:
    # ledger rows kept from deleted budget rows stay)
    "ALTER TABLE budget_graph_charges ADD CONSTRAINT budget_graph_charges_key_fkey "
    "FOREIGN KEY (key) REFERENCES budget_graph_budgets (key) ON DELETE CASCADE NOT VALID",
    "INSERT INTO budget_graph_charges (lease_id, key, units, reserved_units, late, node, "
    "final, owner, created_at, expires_at) SELECT id, key, NULL, units, false, node, final, "
    "owner, created_at, expires_at FROM budget_graph_leases ON CONFLICT DO NOTHING",
    "DROP TABLE budget_graph_leases",
    "CREATE INDEX IF NOT EXISTS budget_graph_charges_open_idx "
    "ON budget_graph_charges (key, expires_at) WHERE units IS NULL",
    # what was the lease table, for reading: the open reservations
    """CREATE OR REPLACE VIEW budget_graph_leases AS
SELECT lease_id AS id, key, reserved_units AS units, final, node, owner, created_at, expires_at
FROM budget_graph_charges WHERE units IS NULL""",
    # v17-v19: no foreign key from the charges to the budgets. A reservation inserts its
    # charge rows only for budget rows its own statement has just updated and locked, so
    # the key check (a second lookup and lock of the same row per reservation, ~15% of the
    # server's work per reserve+commit) proved nothing; deleting a budget row still
    # deletes its charges, by a trigger that costs nothing until a delete.
    "ALTER TABLE budget_graph_charges DROP CONSTRAINT IF EXISTS budget_graph_charges_key_fkey",
    """CREATE OR REPLACE FUNCTION budget_graph_budgets_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM budget_graph_charges c USING deleted d WHERE c.key = d.key;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER budget_graph_budgets_deleted AFTER DELETE ON budget_graph_budgets "
    "REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT "
    "EXECUTE FUNCTION budget_graph_budgets_deleted()",
]
"""Schema migrations; the position of a migration is its version. Append only."""

SETUP_LOCK = 0x6275_6467_6574  # pg_advisory_xact_lock id: one setup() at a time
