"""Iteration records and benchmark metrics."""

from __future__ import annotations

import json
from typing import Any

import duckdb

# The life of dataset version i: built (D(i) exists), trained (M(i)), evaluated, then its
# diagnosis, selection, refinement and review, which feed the build of D(i+1).
STATUSES = ("created", "built", "trained", "evaluated", "diagnosed", "selected", "refined", "reviewed")


def upsert_iteration(con: duckdb.DuckDBPyConnection, number: int, **fields: Any) -> None:
    """Create iteration `number` if missing, then set the given fields (counts merges as JSON)."""
    con.execute(
        "INSERT INTO iterations (number, status) VALUES (?, 'created') ON CONFLICT DO NOTHING",
        [number],
    )
    if "status" in fields and fields["status"] not in STATUSES:
        raise ValueError(f"unknown iteration status {fields['status']!r}")
    if "counts" in fields:
        current = json.loads(con.execute(
            "SELECT counts FROM iterations WHERE number = ?", [number]).fetchall()[0][0])
        current.update(fields.pop("counts"))
        fields["counts"] = json.dumps(current)
    for key, value in fields.items():
        if key not in {"status", "m_complexity", "m_diversity", "m_quality", "k", "base_model",
                       "model", "counts"}:
            raise ValueError(f"unknown iteration field {key!r}")
        con.execute(f"UPDATE iterations SET {key} = ?, updated_at = current_timestamp WHERE number = ?",
                    [value, number])


def _records(con: duckdb.DuckDBPyConnection, where: str, params: list) -> list[dict[str, Any]]:
    cur = con.execute(f"SELECT * FROM iterations {where} ORDER BY number", params)
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():  # plain Python values: a missing m is None, never NaN
        rec = dict(zip(names, row, strict=True))
        rec["counts"] = json.loads(rec["counts"])
        out.append(rec)
    return out


def get_iteration(con: duckdb.DuckDBPyConnection, number: int) -> dict[str, Any] | None:
    recs = _records(con, "WHERE number = ?", [number])
    return recs[0] if recs else None


def list_iterations(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    return _records(con, "", [])


def put_metrics(con: duckdb.DuckDBPyConnection, iteration: int,
                rows: list[tuple[str, str, float, int | None]]) -> None:
    """rows: (benchmark, metric, value, n)."""
    for benchmark, metric, value, n in rows:
        con.execute(
            "INSERT OR REPLACE INTO metrics (iteration, benchmark, metric, value, n) VALUES (?, ?, ?, ?, ?)",
            [iteration, benchmark, metric, float(value), n],
        )


def get_metrics(con: duckdb.DuckDBPyConnection):
    return con.execute("SELECT iteration, benchmark, metric, value, n FROM metrics ORDER BY ALL").df()
