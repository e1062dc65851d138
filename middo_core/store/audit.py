"""Who saved a selection, built a version, started or cancelled a run (table audit_log).

Decisions on proposals are logged in review_log (store/review.py) and verdicts in verdicts
(store/canaries.py), each with its actor; this log holds the other actions that change a workspace.
"""

from __future__ import annotations

import duckdb
import pandas as pd


def record(con: duckdb.DuckDBPyConnection, actor: str, action: str, iteration: int | None = None,
           detail: str | None = None) -> None:
    """Log one action, in the caller's transaction (it lands with the write it describes)."""
    con.execute("INSERT INTO audit_log (actor, action, iteration, detail) VALUES (?, ?, ?, ?)",
                [actor, action, iteration, detail])


def audit_log(con: duckdb.DuckDBPyConnection, action: str | None = None) -> pd.DataFrame:
    """The log, oldest first; `action` keeps one action (or a prefix ending in ':', e.g. 'run:')."""
    return con.execute(
        """SELECT actor, action, iteration, detail, recorded_at FROM audit_log
           WHERE ?::VARCHAR IS NULL OR action = ? OR (right(?, 1) = ':' AND starts_with(action, ?))
           ORDER BY recorded_at, rowid""", [action, action, action, action]).df()
