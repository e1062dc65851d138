"""Background run records (the job's live progress lives in its run folder, not here)."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import duckdb

RUN_STATUSES = ("queued", "running", "done", "failed", "cancelled")


def create_run(con: duckdb.DuckDBPyConnection, kind: str, iteration: int | None,
               args: dict[str, Any] | None = None) -> str:
    run_id = f"{kind}-{uuid.uuid4().hex[:8]}"
    con.execute(
        "INSERT INTO runs (id, kind, iteration, status, args) VALUES (?, ?, ?, 'queued', ?)",
        [run_id, kind, iteration, json.dumps(args or {})],
    )
    return run_id


def set_run(con: duckdb.DuckDBPyConnection, run_id: str, status: str,
            error: str | None = None, pid: int | None = None) -> None:
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    finished = status in ("done", "failed", "cancelled")
    con.execute(
        """UPDATE runs SET status = ?, error = coalesce(?, error), pid = coalesce(?, pid),
           finished_at = CASE WHEN ? THEN current_timestamp ELSE finished_at END WHERE id = ?""",
        [status, error, pid if pid is not None else (os.getpid() if status == "running" else None),
         finished, run_id],
    )


def get_run(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    frame = con.execute("SELECT * FROM runs WHERE id = ?", [run_id]).df()
    return None if frame.empty else frame.iloc[0].to_dict()


def list_runs(con: duckdb.DuckDBPyConnection, limit: int = 50):
    return con.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", [limit]).df()


def active_run_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Runs recorded as queued or running, oldest first (their process may have died since)."""
    return [r[0] for r in con.execute(
        "SELECT id FROM runs WHERE status IN ('queued', 'running') ORDER BY created_at").fetchall()]
