"""SQL of :mod:`budget_graph.postgres`: each operation's statement (migrations: ``pg_migrations``).

Every meter operation is one statement, so each is one round trip and atomic on
its own (the meter's connections run in autocommit mode). A statement may touch
every level of a scope chain; the reservation locks the chain's budget rows in
key order, so two chains that share levels do not deadlock on each other.
"""

from __future__ import annotations

import functools

from budget_graph._internal.pg_migrations import MIGRATIONS, SETUP_LOCK

__all__ = [
    "ENSURE_SQL",
    "LATE_COMMIT_SQL",
    "MIGRATIONS",
    "READ_SQL",
    "RELEASE_SQL",
    "RENEW_SQL",
    "SETUP_LOCK",
    "SPEND_SQL",
    "TOKEN_COLUMNS",
    "commit_sql",
    "key_names",
    "reserve_sql",
    "reserve_statements",
]


_EXPIRED = """
    DELETE FROM budget_graph_charges l
    WHERE l.units IS NULL AND l.expires_at <= now() AND (l.key, l.lease_id) IN (
        SELECT e.key, e.lease_id FROM budget_graph_charges e
        WHERE e.key = ANY(%(keys)s::text[]) AND e.units IS NULL AND e.expires_at <= now()
        FOR UPDATE SKIP LOCKED)
    RETURNING l.key, l.reserved_units AS units"""
# SKIP LOCKED: a lease being committed or renewed right now is not ours to reclaim.
# Open leases are the charge rows with ``units`` NULL (the partial index's rows).
# Each level's row of a lease expires on its own: ``reserved`` of a key is always the
# sum of that key's lease rows, whoever deletes them.


@functools.cache
def key_names(levels: int) -> tuple[str, ...]:
    """The parameter names of a chain's keys, innermost first: ``("k0", "k1", ...)``."""
    return tuple(f"k{i}" for i in range(levels))


def _keys(levels: int) -> str:
    return ", ".join(f"%({name})s" for name in key_names(levels))


def _per_level(name: str, levels: int) -> str:
    if levels == 1:
        return f"%({name}0)s::bigint"
    whens = " ".join(f"WHEN %(k{i})s THEN %({name}{i})s::bigint" for i in range(levels))
    return f"CASE b.key {whens} END"


@functools.cache
def reserve_sql(
    levels: int,
    *,
    retry: bool = False,
    clamp: bool = False,
    final: bool = False,
    set_limits: bool = True,
) -> str:
    """The reservation on a chain of ``levels`` scopes: one statement, one round trip.

    Parameters: ``id`` (client-generated), ``k0..`` (keys, innermost first), ``l0..`` and
    ``r0..`` (limits and reserves, written into the rows with ``set_limits``), ``units``,
    ``n`` and ``max_output`` (with ``clamp``), ``node``, ``owner``, ``lease_s``; the
    flags shape the statement (one prepared statement per shape, fewer parameters to
    send). One row per level comes back: ``(held, found, key, limit, reserve, spent,
    reserved_before, expired_exist)``; ``held`` is NULL when refused,
    or when ``found`` levels are fewer than ``levels`` (a key's first use; one level
    then returns no row). With ``retry`` (the reply of an earlier attempt may have been
    lost) the statement first looks for its own lease and, if found, returns it alone
    (``found = -1``); a first attempt's id is fresh, so it skips that lookup. One level
    is a single ``UPDATE`` of its row: it locks the row, and READ COMMITTED computes the
    hold from the newest version (after waiting on a concurrent update, the SET is
    re-evaluated on the row it locked); a chain locks its rows in key order first (no
    deadlock between chains sharing levels), then computes the clamp under the locks.
    """
    if levels == 1:
        return _reserve_one(retry, clamp, final, set_limits)
    return _reserve_chain(levels, retry, clamp, final, set_limits)


@functools.cache
def reserve_statements(levels: int, clamp: bool, final: bool, set_limits: bool) -> tuple[str, str]:
    """:func:`reserve_sql` of one shape: for a first attempt, and for retries."""
    shape = {"clamp": clamp, "final": final, "set_limits": set_limits}
    return reserve_sql(levels, **shape), reserve_sql(levels, retry=True, **shape)


def _got(room: str, clamp: bool) -> str:
    """The units to hold given a level's ``room``: NULL when refused."""
    if not clamp:
        return f"CASE WHEN %(units)s <= {room} THEN %(units)s::bigint END"
    per = f"least(nullif(%(max_output)s::bigint, 0), ({room} - %(units)s) / %(n)s)"
    return f"CASE WHEN {per} >= 1 THEN %(units)s + %(n)s * {per} END"


def _prior(retry: bool) -> tuple[str, str, str]:
    """The retry's own-lease lookup: the WITH head, its row, and the filter of the rest."""
    if not retry:
        return "WITH", "", ""
    head = """WITH prior AS (
    SELECT l.reserved_units AS units FROM budget_graph_charges l
    WHERE l.key = %(k0)s AND l.lease_id = %(id)s
),"""
    row = """
SELECT p.units, -1::bigint, NULL::text, NULL::bigint, NULL::bigint, NULL::bigint,
    NULL::bigint, NULL::boolean
FROM prior p
UNION ALL"""
    return head, row, " AND NOT EXISTS (SELECT 1 FROM prior)"


_LEASE = """
    INSERT INTO budget_graph_charges (lease_id, key, reserved_units, final, node, owner,
        expires_at)
    SELECT %(id)s, {key}, {got}, {final}, %(node)s, %(owner)s,
        now() + make_interval(secs => %(lease_s)s)"""


def _reserve_one(retry: bool, clamp: bool, final: bool, set_limits: bool) -> str:
    # The UPDATE matches the row whether or not the units fit (a refusal holds 0 and
    # leaves last_held NULL), so one RETURNING serves both outcomes; no row: missing.
    head, prior_row, new = _prior(retry)
    lim, res = ("b.limit_units", "b.reserve_units")
    if set_limits:
        lim, res = ("%(l0)s::bigint", "%(r0)s::bigint")
    room = f"{lim} - b.spent - b.reserved" if final else f"{lim} - {res} - b.spent - b.reserved"
    got = _got(room, clamp)
    limits = f", limit_units = {lim}, reserve_units = {res}" if set_limits else ""
    lease = _LEASE.format(key="u.key", got="u.got", final=str(final).lower())
    return f"""
{head} upd AS (
    UPDATE budget_graph_budgets b
    SET reserved = b.reserved + coalesce({got}, 0), last_held = {got}{limits},
        updated_at = now()
    WHERE b.key = %(k0)s{new}
    RETURNING b.key, b.last_held AS got, b.limit_units, b.reserve_units, b.spent,
        b.reserved - coalesce(b.last_held, 0) AS reserved_before,
        CASE WHEN b.last_held IS NULL THEN EXISTS (SELECT 1 FROM budget_graph_charges e
            WHERE e.key = %(k0)s AND e.units IS NULL AND e.expires_at <= now()) END AS expired
), ins AS ({lease}
    FROM upd u WHERE u.got IS NOT NULL
){prior_row}
SELECT u.got, 1::bigint, u.key, u.limit_units, u.reserve_units, u.spent, u.reserved_before,
    u.expired
FROM upd u"""


def _reserve_chain(levels: int, retry: bool, clamp: bool, final: bool, set_limits: bool) -> str:
    head, prior_row, new = _prior(retry)
    keys = _keys(levels)
    lim = _per_level("l", levels) if set_limits else "b.limit_units"
    res = _per_level("r", levels) if set_limits else "b.reserve_units"
    room = "l.lim - l.spent - l.reserved" if final else "l.lim - l.res - l.spent - l.reserved"
    lease = _LEASE.format(key="l.key", got="c.got", final=str(final).lower())
    return f"""
{head} lvl AS MATERIALIZED (
    SELECT b.key, b.spent, b.reserved, {lim} AS lim, {res} AS res
    FROM budget_graph_budgets b
    WHERE b.key IN ({keys}){new}
    ORDER BY b.key FOR NO KEY UPDATE
), calc AS (
    SELECT count(*) AS found,
        CASE WHEN count(*) < {levels} THEN NULL ELSE {_got("min(r.room)", clamp)} END AS got
    FROM (SELECT {room} AS room FROM lvl l) AS r
), upd AS (
    UPDATE budget_graph_budgets b
    SET reserved = b.reserved + c.got, last_held = c.got, limit_units = l.lim,
        reserve_units = l.res, updated_at = now()
    FROM lvl l, calc c WHERE b.key = l.key AND c.got IS NOT NULL
), ins AS ({lease}
    FROM lvl l, calc c WHERE c.got IS NOT NULL
){prior_row}
SELECT c.got, c.found, l.key, l.lim, l.res, l.spent, l.reserved,
    CASE WHEN c.got IS NULL THEN EXISTS (
        SELECT 1 FROM budget_graph_charges e
        WHERE e.key IN ({keys}) AND e.units IS NULL AND e.expires_at <= now()) END
FROM calc c LEFT JOIN lvl l ON true
WHERE true{new}"""


ENSURE_SQL = """
INSERT INTO budget_graph_budgets (key, limit_units, reserve_units, unit)
SELECT k, l, r, %(unit)s FROM unnest(%(keys)s::text[], %(limits)s::bigint[],
    %(reserves)s::bigint[]) AS u(k, l, r)
ON CONFLICT (key) DO NOTHING"""
"""Create a chain's missing rows (a key's first use)."""


_OPEN = "committed_at IS NULL"
# An open lease's row, found by its primary key: ``committed_at`` is NULL exactly when
# ``units`` is, but only ``units IS NULL`` matches the open index's predicate, so with
# this condition the planner takes the primary key (one entry) rather than scanning
# every open lease of the key (and the dead entries of leases committed since vacuum).

TOKEN_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "calls",
    "estimated_calls",
)
"""The ledger's usage columns (NULL for a charge committed without usage)."""
_TOKENS = ", ".join(TOKEN_COLUMNS)


@functools.cache
def commit_sql(levels: int, *, usage: bool = True) -> str:
    """Charge a call on every level whose lease is still open, in one statement.

    Parameters: ``id``, ``k0..`` (the lease's keys, innermost first), ``units`` and,
    with ``usage``, the token counts (without, they stay NULL and are not sent). The
    lease's rows become its charge rows: one ``UPDATE`` each, no insert, no delete.
    Returns ``(key, limit, reserve, spent, reserved)`` per level charged; a level
    missing from the rows had its lease reclaimed, or was charged before (a repeat):
    :data:`LATE_COMMIT_SQL` tells which.
    """
    values = ", ".join(f"%({t})s" for t in _TOKENS.split(", "))
    filled = f"({_TOKENS}) = ({values}), " if usage else ""
    return f"""
WITH done AS (
    UPDATE budget_graph_charges SET units = %(units)s, {filled}committed_at = now()
    WHERE key IN ({_keys(levels)}) AND lease_id = %(id)s AND {_OPEN}
    RETURNING key, reserved_units
)
UPDATE budget_graph_budgets b
SET spent = b.spent + %(units)s, reserved = b.reserved - d.reserved_units, updated_at = now()
FROM done d WHERE b.key = d.key
RETURNING b.key, b.limit_units, b.reserve_units, b.spent, b.reserved"""


LATE_COMMIT_SQL = f"""
WITH late AS (
    INSERT INTO budget_graph_charges (lease_id, key, units, reserved_units, late, node,
        {_TOKENS}, committed_at)
    SELECT %(id)s, k, %(units)s, %(reserved_units)s, true, %(node)s, %(input_tokens)s,
        %(output_tokens)s, %(reasoning_tokens)s, %(cached_tokens)s, %(calls)s,
        %(estimated_calls)s, now()
    FROM unnest(%(keys)s::text[]) AS k
    ON CONFLICT (key, lease_id) DO NOTHING
    RETURNING key
)
UPDATE budget_graph_budgets b SET spent = b.spent + %(units)s, updated_at = now()
FROM late l WHERE b.key = l.key
RETURNING b.key, b.limit_units, b.reserve_units, b.spent, b.reserved"""
"""Charge the levels :func:`commit_sql` left (``keys``) as late; nothing if charged before.

The rare path: a lease reclaimed before its commit gets a new charge row marked
``late``; a repeated commit finds its rows charged and changes nothing.
"""


RELEASE_SQL = f"""
WITH gone AS (
    DELETE FROM budget_graph_charges
    WHERE key = ANY(%(keys)s::text[]) AND lease_id = %(id)s AND {_OPEN}
    RETURNING key, reserved_units AS units
), upd AS (
    UPDATE budget_graph_budgets b SET reserved = b.reserved - g.units, updated_at = now()
    FROM gone g WHERE b.key = g.key
    RETURNING b.key, b.limit_units, b.reserve_units, b.spent, b.reserved
)
SELECT u.limit_units, u.reserve_units, u.spent, u.reserved
FROM upd u WHERE u.key = (%(keys)s::text[])[1]"""
"""Drop a reservation on every level; no row back when there was nothing to drop."""

READ_SQL = f"""
WITH freed AS ({_EXPIRED}
), per AS (
    SELECT f.key, sum(f.units) AS units FROM freed f GROUP BY f.key
), upd AS (
    UPDATE budget_graph_budgets b SET reserved = b.reserved - p.units, updated_at = now()
    FROM per p WHERE b.key = p.key
    RETURNING b.key, b.limit_units, b.reserve_units, b.spent, b.reserved, p.units
)
SELECT * FROM upd
UNION ALL
SELECT b.key, b.limit_units, b.reserve_units, b.spent, b.reserved, 0::numeric
FROM budget_graph_budgets b
WHERE b.key = ANY(%(keys)s::text[]) AND b.key NOT IN (SELECT u.key FROM upd u)"""
"""Reclaim a chain's expired leases and read its rows."""

RENEW_SQL = """
UPDATE budget_graph_charges SET expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE units IS NULL AND lease_id = ANY(%(ids)s::bigint[]) RETURNING lease_id"""
"""Extend leases by ``lease_s`` from now; returns the ids still held."""

SPEND_SQL = """
SELECT node, sum(input_tokens), sum(output_tokens), sum(reasoning_tokens),
       sum(cached_tokens), sum(calls), sum(estimated_calls), sum(units)
FROM budget_graph_charges WHERE key = %(key)s AND calls IS NOT NULL GROUP BY node"""
"""Usage committed on a key, per node (the ledger)."""
