"""Each curator's standing decision on a proposal (curator_decisions), for review overlap.

One row per curator and proposal: a curator's new decision replaces their last. The audit trail
(review_log) keeps every decision; proposals.status holds the outcome.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from middo_core.store.db import registered

VOTE_COLUMNS = ["proposal_id", "actor", "decision", "edited_instruction", "edited_input",
                "edited_output", "decided_at"]

# a proposal still owed by a curator: pending, not decided by them, and short of its curators
# (or tied, when they are an owner): params owed_by, owed_by, is_owner, overlap
OWED_WHERE = """
          AND (?::VARCHAR IS NULL OR (p.status = 'pending'
               AND p.id NOT IN (SELECT proposal_id FROM curator_decisions WHERE actor = ?)
               AND (?::BOOLEAN OR (SELECT count(*) FROM curator_decisions d
                                   WHERE d.proposal_id = p.id) < ?)))
"""


def record_decisions(con: duckdb.DuckDBPyConnection, ids: list[str], decision: str, actor: str,
                     note: str | None, edited: tuple[str, str, str] | None, alone: bool) -> None:
    """`actor`'s decision on each proposal, replacing their last one (and every other curator's
    too when `alone`: one decision is the outcome)."""
    ei, ein, eo = edited if edited is not None else (None, None, None)
    with registered(con, "_voted", pd.DataFrame({"id": pd.Series(ids, dtype="string")})):
        con.execute("""DELETE FROM curator_decisions
                       WHERE proposal_id IN (SELECT id FROM _voted) AND (?::BOOLEAN OR actor = ?)""",
                    [alone, actor])
        con.execute("""INSERT INTO curator_decisions
                       SELECT id, ?, ?, ?, ?, ?, ?, current_timestamp FROM _voted""",
                    [actor, decision, ei, ein, eo, note])


def clear_decisions(con: duckdb.DuckDBPyConnection, ids: list[str]) -> None:
    """Every curator's decision on these proposals (a reset to pending)."""
    with registered(con, "_cleared", pd.DataFrame({"id": pd.Series(ids, dtype="string")})):
        con.execute("DELETE FROM curator_decisions WHERE proposal_id IN (SELECT id FROM _cleared)")


def votes(con: duckdb.DuckDBPyConnection, ids: list[str]) -> pd.DataFrame:
    """The standing decisions on these proposals, oldest first."""
    with registered(con, "_asked", pd.DataFrame({"id": pd.Series(ids, dtype="string")})):
        return con.execute(f"""SELECT {", ".join(VOTE_COLUMNS)} FROM curator_decisions
                               WHERE proposal_id IN (SELECT id FROM _asked)
                               ORDER BY decided_at, actor""").df()


def iteration_votes(con: duckdb.DuckDBPyConnection, iteration: int) -> pd.DataFrame:
    """The standing decisions on an iteration's proposals, with each proposal's outcome."""
    return con.execute("""
        SELECT d.proposal_id, d.actor, d.decision, d.decided_at, p.status AS outcome
        FROM curator_decisions d JOIN proposals p ON p.id = d.proposal_id
        WHERE p.iteration = ? ORDER BY d.decided_at, d.actor
    """, [iteration]).df()


def decision_times(con: duckdb.DuckDBPyConnection, iteration: int) -> pd.DataFrame:
    """actor, decided_at of every decision in the audit trail on an iteration's proposals
    (resets to pending left out)."""
    return con.execute("""
        SELECT l.actor, l.decided_at FROM review_log l JOIN proposals p ON p.id = l.proposal_id
        WHERE p.iteration = ? AND l.action <> 'pending' ORDER BY l.actor, l.decided_at
    """, [iteration]).df()
