"""SQL of :mod:`budget_graph.postgres`: the schema migrations and each operation's statement.

Every meter operation is one statement (a call of one of the functions below),
so each is one round trip and atomic on its own: the meter's connections run in
autocommit mode. The functions lock a scope chain's budget rows in key order,
so two chains that share levels never deadlock on each other.
"""

from __future__ import annotations

__all__ = [
    "COMMIT_SQL",
    "MIGRATIONS",
    "READ_SQL",
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
    # v6-v7: a reservation on a scope chain is one lease row per level, under one
    # client-generated id (so a retried reserve finds its own rows); the ledger has
    # one row per level too.
    "ALTER TABLE budget_graph_leases DROP CONSTRAINT budget_graph_leases_pkey, "
    "ADD CONSTRAINT budget_graph_leases_pkey PRIMARY KEY (id, key)",
    "ALTER TABLE budget_graph_charges DROP CONSTRAINT budget_graph_charges_pkey, "
    "ADD CONSTRAINT budget_graph_charges_pkey PRIMARY KEY (lease_id, key)",
    # v8: return expired leases of some keys to their budgets; the number of units.
    """CREATE OR REPLACE FUNCTION budget_graph_reclaim(p_keys TEXT[]) RETURNS BIGINT
LANGUAGE plpgsql AS $fn$
DECLARE
    total BIGINT;
BEGIN
    -- SKIP LOCKED: a lease being committed or renewed right now is not ours to take.
    WITH gone AS (
        DELETE FROM budget_graph_leases l
        WHERE l.expires_at <= now() AND l.id IN (
            SELECT e.id FROM budget_graph_leases e
            WHERE e.key = ANY(p_keys) AND e.expires_at <= now() FOR UPDATE SKIP LOCKED)
        RETURNING l.key, l.units
    ), per_key AS (
        SELECT g.key, sum(g.units) AS units FROM gone g GROUP BY g.key
    ), upd AS (
        UPDATE budget_graph_budgets b SET reserved = b.reserved - p.units, updated_at = now()
        FROM per_key p WHERE b.key = p.key RETURNING p.units
    )
    SELECT coalesce(sum(upd.units), 0) INTO total FROM upd;
    RETURN total;
END $fn$""",
    # v9: the reservation, the clamp computed under the rows' locks.
    """CREATE OR REPLACE FUNCTION budget_graph_reserve(
    p_id BIGINT, p_keys TEXT[], p_limits BIGINT[], p_reserves BIGINT[], p_unit TEXT,
    p_set_limits BOOLEAN, p_units BIGINT, p_n BIGINT, p_max_output BIGINT, p_clamp BOOLEAN,
    p_final BOOLEAN, p_node TEXT, p_owner TEXT, p_lease_s DOUBLE PRECISION,
    p_lock_timeout_ms INTEGER)
RETURNS TABLE (held BIGINT, expires TIMESTAMPTZ, refused_key TEXT, lvl_limit BIGINT,
               lvl_reserve BIGINT, lvl_spent BIGINT, lvl_reserved BIGINT)
LANGUAGE plpgsql AS $fn$
DECLARE
    n INT := cardinality(p_keys);
    lim BIGINT[]; res BIGINT[]; sp BIGINT[]; rs BIGINT[]; room BIGINT[];
    r RECORD; i INT; found_n INT; tight INT; got BIGINT; per BIGINT;
    exp TIMESTAMPTZ; reclaimed BOOLEAN := false;
BEGIN
    IF p_lock_timeout_ms IS NOT NULL THEN
        PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    END IF;
    -- A retried reserve (its reply was lost) finds its own lease instead of holding twice.
    SELECT l.units, l.expires_at INTO got, exp FROM budget_graph_leases l
    WHERE l.id = p_id AND l.key = p_keys[1];
    IF FOUND THEN
        RETURN QUERY SELECT got, exp, NULL::TEXT, b.limit_units, b.reserve_units, b.spent,
            b.reserved FROM budget_graph_budgets b WHERE b.key = p_keys[1];
        RETURN;
    END IF;
    LOOP
        found_n := 0;
        FOR r IN SELECT b.key, b.limit_units, b.reserve_units, b.spent, b.reserved
                 FROM budget_graph_budgets b WHERE b.key = ANY(p_keys)
                 ORDER BY b.key FOR NO KEY UPDATE LOOP
            i := array_position(p_keys, r.key);
            lim[i] := CASE WHEN p_set_limits THEN p_limits[i] ELSE r.limit_units END;
            res[i] := CASE WHEN p_set_limits THEN p_reserves[i] ELSE r.reserve_units END;
            sp[i] := r.spent;
            rs[i] := r.reserved;
            found_n := found_n + 1;
        END LOOP;
        IF found_n < n THEN  -- a key's first use: create its row once, then lock again
            INSERT INTO budget_graph_budgets (key, limit_units, reserve_units, unit)
            SELECT u.k, u.l, u.rv, p_unit FROM unnest(p_keys, p_limits, p_reserves) AS u(k, l, rv)
            ON CONFLICT (key) DO NOTHING;
            CONTINUE;
        END IF;
        tight := 1;
        FOR i IN 1..n LOOP
            room[i] := lim[i] - CASE WHEN p_final THEN 0 ELSE res[i] END - sp[i] - rs[i];
            IF room[i] < room[tight] THEN tight := i; END IF;
        END LOOP;
        got := NULL;
        IF p_clamp THEN  -- hold the prompt and as many output units per sample as fit
            per := (room[tight] - p_units) / p_n;
            IF p_max_output > 0 AND per > p_max_output THEN per := p_max_output; END IF;
            IF per >= 1 THEN got := p_units + per * p_n; END IF;
        ELSIF p_units <= room[tight] THEN
            got := p_units;
        ELSE  -- the refusing level: the innermost one without room
            FOR i IN 1..n LOOP
                IF p_units > room[i] THEN tight := i; EXIT; END IF;
            END LOOP;
        END IF;
        EXIT WHEN got IS NOT NULL OR reclaimed;
        reclaimed := true;
        IF budget_graph_reclaim(p_keys) = 0 THEN EXIT; END IF;
    END LOOP;
    IF got IS NULL THEN
        RETURN QUERY SELECT NULL::BIGINT, NULL::TIMESTAMPTZ, p_keys[tight], lim[tight],
            res[tight], sp[tight], rs[tight];
        RETURN;
    END IF;
    exp := now() + make_interval(secs => p_lease_s);
    UPDATE budget_graph_budgets b SET reserved = b.reserved + got,
        limit_units = CASE WHEN p_set_limits THEN u.l ELSE b.limit_units END,
        reserve_units = CASE WHEN p_set_limits THEN u.rv ELSE b.reserve_units END,
        updated_at = now()
    FROM unnest(p_keys, p_limits, p_reserves) AS u(k, l, rv) WHERE b.key = u.k;
    INSERT INTO budget_graph_leases (id, key, units, final, node, owner, expires_at)
    SELECT p_id, k, got, p_final, p_node, p_owner, exp FROM unnest(p_keys) AS k;
    RETURN QUERY SELECT got, exp, NULL::TEXT, lim[1], res[1], sp[1], rs[1] + got;
END $fn$""",
    # v10: charge a call on every level and drop its lease; a repeat charges nothing.
    """CREATE OR REPLACE FUNCTION budget_graph_commit(
    p_id BIGINT, p_keys TEXT[], p_units BIGINT, p_reserved_units BIGINT, p_node TEXT,
    p_input BIGINT, p_output BIGINT, p_reasoning BIGINT, p_cached BIGINT, p_calls BIGINT,
    p_estimated BIGINT, p_lock_timeout_ms INTEGER)
RETURNS TABLE (late BOOLEAN, lvl_limit BIGINT, lvl_reserve BIGINT, lvl_spent BIGINT,
               lvl_reserved BIGINT)
LANGUAGE plpgsql AS $fn$
DECLARE
    gk TEXT[]; gu BIGINT[]; n INT;
BEGIN
    IF p_lock_timeout_ms IS NOT NULL THEN
        PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    END IF;
    WITH gone AS (DELETE FROM budget_graph_leases WHERE id = p_id RETURNING key, units)
    SELECT array_agg(g.key), array_agg(g.units) INTO gk, gu FROM gone g;
    INSERT INTO budget_graph_charges (lease_id, key, units, reserved_units, late, node,
        input_tokens, output_tokens, reasoning_tokens, cached_tokens, calls, estimated_calls)
    SELECT p_id, k, p_units, p_reserved_units, gk IS NULL, p_node, p_input, p_output,
        p_reasoning, p_cached, p_calls, p_estimated FROM unnest(p_keys) AS k
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN RETURN; END IF;  -- committed before
    IF cardinality(p_keys) > 1 THEN
        PERFORM 1 FROM budget_graph_budgets WHERE key = ANY(p_keys) ORDER BY key
        FOR NO KEY UPDATE;
    END IF;
    RETURN QUERY WITH upd AS (
        UPDATE budget_graph_budgets b SET spent = b.spent + p_units,
            reserved = b.reserved - coalesce(gu[array_position(gk, b.key)], 0),
            updated_at = now()
        WHERE b.key = ANY(p_keys)
        RETURNING b.key, b.limit_units, b.reserve_units, b.spent, b.reserved)
    SELECT gk IS NULL, upd.limit_units, upd.reserve_units, upd.spent, upd.reserved
    FROM upd WHERE upd.key = p_keys[1];
END $fn$""",
    # v11: drop a reservation on every level; a repeat does nothing.
    """CREATE OR REPLACE FUNCTION budget_graph_release(
    p_id BIGINT, p_keys TEXT[], p_lock_timeout_ms INTEGER)
RETURNS TABLE (lvl_limit BIGINT, lvl_reserve BIGINT, lvl_spent BIGINT, lvl_reserved BIGINT)
LANGUAGE plpgsql AS $fn$
DECLARE
    gk TEXT[]; gu BIGINT[];
BEGIN
    IF p_lock_timeout_ms IS NOT NULL THEN
        PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    END IF;
    WITH gone AS (DELETE FROM budget_graph_leases WHERE id = p_id RETURNING key, units)
    SELECT array_agg(g.key), array_agg(g.units) INTO gk, gu FROM gone g;
    IF gk IS NULL THEN RETURN; END IF;
    IF cardinality(gk) > 1 THEN
        PERFORM 1 FROM budget_graph_budgets WHERE key = ANY(gk) ORDER BY key FOR NO KEY UPDATE;
    END IF;
    RETURN QUERY WITH upd AS (
        UPDATE budget_graph_budgets b
        SET reserved = b.reserved - gu[array_position(gk, b.key)], updated_at = now()
        WHERE b.key = ANY(gk)
        RETURNING b.key, b.limit_units, b.reserve_units, b.spent, b.reserved)
    SELECT upd.limit_units, upd.reserve_units, upd.spent, upd.reserved
    FROM upd WHERE upd.key = p_keys[1];
END $fn$""",
    # v12: reclaim a chain's expired leases and read its rows.
    """CREATE OR REPLACE FUNCTION budget_graph_read(p_keys TEXT[], p_lock_timeout_ms INTEGER)
RETURNS TABLE (key TEXT, lvl_limit BIGINT, lvl_reserve BIGINT, lvl_spent BIGINT,
               lvl_reserved BIGINT, reclaimed BIGINT)
LANGUAGE plpgsql AS $fn$
DECLARE
    got BIGINT;
BEGIN
    IF p_lock_timeout_ms IS NOT NULL THEN
        PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    END IF;
    got := budget_graph_reclaim(p_keys);
    RETURN QUERY SELECT b.key, b.limit_units, b.reserve_units, b.spent, b.reserved, got
        FROM budget_graph_budgets b WHERE b.key = ANY(p_keys);
END $fn$""",
]
"""Schema migrations; the position of a migration is its version. Append only."""

SETUP_LOCK = 0x6275_6467_6574  # pg_advisory_xact_lock id: one setup() at a time

RESERVE_SQL = """SELECT * FROM budget_graph_reserve(
    %(id)s, %(keys)s, %(limits)s, %(reserves)s, %(unit)s, %(set_limits)s, %(units)s, %(n)s,
    %(max_output)s, %(clamp)s, %(final)s, %(node)s, %(owner)s, %(lease_s)s,
    %(lock_timeout_ms)s)"""
"""One reservation: idempotent by id, creates missing keys, clamps, reclaims if refused."""

COMMIT_SQL = """SELECT * FROM budget_graph_commit(
    %(id)s, %(keys)s, %(units)s, %(reserved_units)s, %(node)s, %(input_tokens)s,
    %(output_tokens)s, %(reasoning_tokens)s, %(cached_tokens)s, %(calls)s,
    %(estimated_calls)s, %(lock_timeout_ms)s)"""
"""Charge a call on every level of its chain; no row back when it was committed before."""

RELEASE_SQL = "SELECT * FROM budget_graph_release(%(id)s, %(keys)s, %(lock_timeout_ms)s)"
"""Drop a reservation; no row back when there was nothing to drop."""

READ_SQL = "SELECT * FROM budget_graph_read(%(keys)s, %(lock_timeout_ms)s)"
"""Reclaim a chain's expired leases and read its rows."""

RENEW_SQL = """
UPDATE budget_graph_leases SET expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE id = ANY(%(ids)s) RETURNING id"""
"""Extend leases by ``lease_s`` from now; returns the ids still held."""

SPEND_SQL = """
SELECT node, sum(input_tokens), sum(output_tokens), sum(reasoning_tokens),
       sum(cached_tokens), sum(calls), sum(estimated_calls), sum(units)
FROM budget_graph_charges WHERE key = %(key)s AND calls IS NOT NULL GROUP BY node"""
"""Usage committed on a key, per node (the ledger)."""
