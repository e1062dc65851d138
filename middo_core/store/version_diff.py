"""What changed between two dataset versions, computed inside DuckDB.

Every query here works on sample ids until the last step: the differences of the two member
sets, the parent chains and the counts never leave the engine, and texts are joined only onto
the page (or streamed by COPY into an export file). Python never holds the texts of a version.

The core is written for lo < hi (D(hi) was built from D(lo), possibly over several builds);
comparing the other way round swaps old and new, and removed and added, in the last projection.
"""

from __future__ import annotations

from typing import Any

import duckdb

KINDS = ("rewritten", "added", "removed")  # also the order of a listing
AXES = ("complexity", "quality", "diversity", "edited")
MAX_CHAIN = 64  # a parent chain longer than this is not followed (ids are content hashes: no cycles)

# $lo, $hi: the older and newer version; $reverse: the caller compares newer -> older.
_CHANGES = f"""
WITH RECURSIVE
older AS (SELECT sample_id AS id FROM dataset_members WHERE iteration = $lo AND split = 'train'),
newer AS (SELECT sample_id AS id FROM dataset_members WHERE iteration = $hi AND split = 'train'),
gone AS (SELECT id FROM older ANTI JOIN newer USING (id)),
fresh AS (SELECT id FROM newer ANTI JOIN older USING (id)),
members AS (SELECT id FROM older UNION ALL SELECT id FROM fresh),  -- either version, no repeats
-- each new sample walks up its parents to the nearest member of either version (`settled`): a
-- sample that left is rewritten by it; one still there (a sparse source, a rewrite) is not
chain(new_id, ancestor, depth, settled) AS (
    SELECT s.id, s.parent_id, 1, m.id IS NOT NULL
    FROM fresh JOIN samples s USING (id) LEFT JOIN members m ON m.id = s.parent_id
    WHERE s.parent_id IS NOT NULL
    UNION ALL
    SELECT c.new_id, s.parent_id, c.depth + 1, m.id IS NOT NULL
    FROM chain c JOIN samples s ON s.id = c.ancestor LEFT JOIN members m ON m.id = s.parent_id
    WHERE NOT c.settled AND s.parent_id IS NOT NULL AND c.depth < {MAX_CHAIN}
),
rewrites AS (SELECT c.ancestor AS old_id, c.new_id FROM chain c SEMI JOIN gone g ON g.id = c.ancestor),
made AS (  -- the axis of the change that wrote a new sample: its proposal's, 'edited' for a curator's text
    SELECT s.id,
           CASE WHEN s.origin = 'edited' OR p.status = 'edited' THEN 'edited'
                ELSE coalesce(p.axis, s.axis, CASE s.origin WHEN 'simplified' THEN 'complexity'
                    WHEN 'improved' THEN 'quality' WHEN 'augmented' THEN 'diversity' END) END AS axis
    FROM fresh JOIN samples s USING (id) LEFT JOIN proposals p ON p.id = s.proposal_id
),
replaced AS (  -- the axis of the accepted proposal that took a sample out
    SELECT source_id AS id, min(axis) AS axis FROM proposals
    WHERE iteration >= $lo AND iteration < $hi AND status IN ('accepted', 'edited')
      AND axis IN ('complexity', 'quality') AND source_id IN (SELECT id FROM gone)
    GROUP BY source_id
),
forward AS (
    SELECT 'rewritten' AS kind, r.old_id, r.new_id, m.axis
    FROM rewrites r LEFT JOIN made m ON m.id = r.new_id
    UNION ALL
    SELECT 'added', NULL, f.id, m.axis
    FROM fresh f LEFT JOIN made m ON m.id = f.id
    WHERE f.id NOT IN (SELECT new_id FROM rewrites)
    UNION ALL
    SELECT 'removed', g.id, NULL, x.axis
    FROM gone g LEFT JOIN replaced x ON x.id = g.id
    WHERE g.id NOT IN (SELECT old_id FROM rewrites)
),
changes AS (
    SELECT CASE WHEN NOT $reverse THEN kind WHEN kind = 'added' THEN 'removed'
                WHEN kind = 'removed' THEN 'added' ELSE kind END AS kind,
           axis,
           CASE WHEN $reverse THEN new_id ELSE old_id END AS old_id,
           CASE WHEN $reverse THEN old_id ELSE new_id END AS new_id
    FROM forward
)
"""

_FILTER = """
WHERE ($kind::VARCHAR IS NULL OR kind = $kind) AND ($axis::VARCHAR IS NULL OR axis = $axis)
"""

_ORDER = "array_position(['rewritten', 'added', 'removed'], kind), coalesce(new_id, old_id), old_id"

TEXT_FIELDS = ("instruction", "input", "output")
EXPORT_COLUMNS = ("kind", "axis", "old_id", "new_id",
                  *(f"{side}_{f}" for side in ("old", "new") for f in TEXT_FIELDS))


def _params(a: int, b: int, **extra: Any) -> dict[str, Any]:
    return {"lo": min(a, b), "hi": max(a, b), "reverse": a > b, **extra}


def version_sizes(con: duckdb.DuckDBPyConnection) -> dict[int, int]:
    """Training samples per dataset version that has any."""
    rows = con.execute("""
        SELECT iteration, count(*) FROM dataset_members WHERE split = 'train'
        GROUP BY iteration ORDER BY iteration
    """).fetchall()
    return {int(it): int(n) for it, n in rows}


def change_counts(con: duckdb.DuckDBPyConnection, a: int, b: int) -> list[tuple[str, str | None, int]]:
    """(kind, axis, count) of every change from D(a) to D(b)."""
    rows = con.execute(
        _CHANGES + "SELECT kind, axis, count(*) FROM changes GROUP BY ALL ORDER BY ALL",
        _params(a, b),
    ).fetchall()
    return [(kind, axis, int(n)) for kind, axis, n in rows]


def _text_columns() -> str:
    return ", ".join(f"{alias}.{f} AS {side}_{f}" for side, alias in (("old", "o"), ("new", "n"))
                     for f in TEXT_FIELDS)


def _listing(kind: str | None, axis: str | None, page: str) -> str:
    """The changes matching the filter, ordered, `page` applied before any text is read."""
    return _CHANGES + f"""
    , picked AS (SELECT *, row_number() OVER (ORDER BY {_ORDER}) AS position
                 FROM changes {_FILTER} ORDER BY position {page})
    SELECT p.kind, p.axis, p.old_id, p.new_id, {_text_columns()}
    FROM picked p LEFT JOIN samples o ON o.id = p.old_id LEFT JOIN samples n ON n.id = p.new_id
    ORDER BY p.position
    """


def change_page(con: duckdb.DuckDBPyConnection, a: int, b: int, kind: str | None = None,
                axis: str | None = None, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """One page of changes from D(a) to D(b) with the old and new texts."""
    cursor = con.execute(_listing(kind, axis, "LIMIT $limit OFFSET $offset"),
                         _params(a, b, kind=kind, axis=axis, limit=int(limit), offset=int(offset)))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def copy_changes(con: duckdb.DuckDBPyConnection, a: int, b: int, path: str, fmt: str,
                 kind: str | None = None, axis: str | None = None) -> int:
    """Write the matching changes with their texts to `path` (fmt 'json' lines or 'csv') inside
    DuckDB, streaming; returns the rows written."""
    options = {"json": "FORMAT json", "csv": "FORMAT csv, HEADER true"}[fmt]
    quoted = str(path).replace("'", "''")
    rows = con.execute(f"COPY ({_listing(kind, axis, '')}) TO '{quoted}' ({options})",
                       _params(a, b, kind=kind, axis=axis)).fetchall()
    return int(rows[0][0])
