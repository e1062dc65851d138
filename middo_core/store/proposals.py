"""Refinement proposals: creating them (idempotently), reading them back, counting them.

Review decisions live in store/review.py; this module writes what the refiner produced.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pandas as pd

from middo_core.store.db import registered

PROPOSAL_COLUMNS = ["id", "iteration", "axis", "source_id", "neighbour_ids", "template_hash", "model",
                    "params", "raw_text", "raw_response", "instruction", "input", "output", "status",
                    "reason", "usage"]
_JSON_COLUMNS = ("neighbour_ids", "params", "usage")


def put_proposals(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> int:
    """Insert new proposals; an existing one is replaced only while it is 'failed' (a retry).

    A proposal a curator has seen or decided is never overwritten. Returns rows written.
    """
    if not rows:
        return 0
    records = []
    for row in rows:
        rec = {c: row.get(c) for c in PROPOSAL_COLUMNS}
        for col in _JSON_COLUMNS:
            if not isinstance(rec[col], str):
                rec[col] = json.dumps(rec[col] or ({} if col != "neighbour_ids" else []),
                                      ensure_ascii=False)
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=PROPOSAL_COLUMNS)
    frame = frame.astype({c: "string" for c in PROPOSAL_COLUMNS if c != "iteration"})
    cols = ", ".join(PROPOSAL_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in PROPOSAL_COLUMNS if c != "id")
    before = con.execute("SELECT count(*) FROM proposals").fetchall()[0][0]
    failed_before = _failed_ids(con, [r["id"] for r in rows])
    # one statement for the batch (row-by-row inserts cost ~10 ms each in DuckDB)
    with registered(con, "_new_proposals", frame):
        con.execute(
            f"""INSERT INTO proposals ({cols})
                SELECT DISTINCT ON (id) {cols} FROM _new_proposals
                ON CONFLICT (id) DO UPDATE SET {updates}, created_at = now()
                WHERE proposals.status = 'failed'""").fetchall()
    after = con.execute("SELECT count(*) FROM proposals").fetchall()[0][0]
    return (after - before) + len(failed_before)


def _failed_ids(con: duckdb.DuckDBPyConnection, ids: list[str]) -> set[str]:
    frame = pd.DataFrame({"id": ids})
    with registered(con, "_pids", frame):
        rows = con.execute(
            "SELECT p.id FROM proposals p JOIN _pids USING (id) WHERE p.status = 'failed'").fetchall()
    return {r[0] for r in rows}


def proposal_states(con: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[str, tuple[str, int]]:
    """id -> (status, attempt) for the given proposal ids that exist."""
    if not ids:
        return {}
    frame = pd.DataFrame({"id": list(ids)})
    with registered(con, "_pids", frame):
        rows = con.execute(
            "SELECT p.id, p.status, p.params FROM proposals p JOIN _pids USING (id)").fetchall()
    return {pid: (status, int(json.loads(params or "{}").get("attempt", 0)))
            for pid, status, params in rows}


def list_proposals(con: duckdb.DuckDBPyConnection, iteration: int, axis: str | None = None,
                   status: str | None = None) -> pd.DataFrame:
    """Proposals of an iteration (JSON columns decoded), in a stable order."""
    frame = con.execute(
        f"""SELECT {", ".join(PROPOSAL_COLUMNS)}, created_at FROM proposals
            WHERE iteration = ? AND (?::VARCHAR IS NULL OR axis = ?)
              AND (?::VARCHAR IS NULL OR status = ?)
            ORDER BY axis, source_id, id""",
        [iteration, axis, axis, status, status],
    ).df()
    for col in _JSON_COLUMNS:
        frame[col] = [json.loads(v) if v else None for v in frame[col]]
    return frame


def proposal_counts(con: duckdb.DuckDBPyConnection, iteration: int) -> dict[str, dict[str, int]]:
    """axis -> status -> count."""
    rows = con.execute(
        "SELECT axis, status, count(*) FROM proposals WHERE iteration = ? GROUP BY ALL ORDER BY ALL",
        [iteration],
    ).fetchall()
    out: dict[str, dict[str, int]] = {}
    for axis, status, n in rows:
        out.setdefault(axis, {})[status] = int(n)
    return out


def failure_reasons(con: duckdb.DuckDBPyConnection, iteration: int) -> dict[str, int]:
    rows = con.execute(
        """SELECT reason, count(*) FROM proposals WHERE iteration = ? AND status = 'failed'
           GROUP BY ALL ORDER BY 2 DESC""", [iteration]).fetchall()
    return {r: int(n) for r, n in rows}


def stored_neighbours(con: duckdb.DuckDBPyConnection, iteration: int,
                      sample_ids: list[str]) -> dict[str, list[str]]:
    """sample id -> its neighbour ids (nearest first) from the iteration's diversity signal."""
    if not sample_ids:
        return {}
    frame = pd.DataFrame({"sample_id": list(sample_ids)})
    with registered(con, "_nids", frame):
        rows = con.execute(
            """SELECT g.sample_id, g.neighbours FROM signals g JOIN _nids USING (sample_id)
               WHERE g.iteration = ?""", [iteration]).fetchall()
    return {sid: list(json.loads(n)) if n else [] for sid, n in rows}
