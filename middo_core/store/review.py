"""Review decisions on proposals and their audit trail (review_log)."""

from __future__ import annotations

import duckdb
import pandas as pd

from middo_core.store.db import registered
from middo_core.store.decisions import OWED_WHERE
from middo_core.store.proposals import proposal_counts

DECIDABLE = ("pending", "accepted", "edited", "rejected")  # a failed proposal cannot be accepted


_QUEUE_WHERE = """
        WHERE p.iteration = ?
          AND (?::VARCHAR IS NULL OR p.axis = ?)
          AND (?::VARCHAR IS NULL OR p.status = ?)
          AND (?::DOUBLE IS NULL OR g.quality >= ?)
          AND (?::DOUBLE IS NULL OR g.quality <= ?)
""" + OWED_WHERE
_QUEUE_ORDER = "ORDER BY p.created_at, p.id"
# the source's signals, joined only for a quality filter: otherwise for the page's rows alone
_WITH_SIGNALS = "LEFT JOIN signals g ON g.iteration = p.iteration AND g.sample_id = p.source_id"


def _queue_from(min_quality: float | None, max_quality: float | None) -> str:
    if min_quality is None and max_quality is None:
        return "FROM proposals p, (SELECT NULL::DOUBLE AS quality) g" + _QUEUE_WHERE
    return f"FROM proposals p {_WITH_SIGNALS}" + _QUEUE_WHERE


# owed: (curator, is an owner, overlap): only the proposals that curator still owes
Owed = tuple[str, bool, int] | None


def _queue_params(iteration: int, axis: str | None, status: str | None, min_quality: float | None,
                  max_quality: float | None, owed: Owed = None) -> list:
    curator, owner, overlap = owed if owed is not None else (None, False, 1)
    return [iteration, axis, axis, status, status, min_quality, min_quality, max_quality, max_quality,
            curator, curator, owner, overlap]


def queue(con: duckdb.DuckDBPyConnection, iteration: int, axis: str | None = None,
          status: str | None = None, min_quality: float | None = None,
          max_quality: float | None = None, limit: int | None = None, offset: int = 0,
          owed: Owed = None) -> pd.DataFrame:
    """Proposals with their source sample's text and signals, oldest first (`limit` of them from
    `offset`: the texts and signals of a page only)."""
    params = _queue_params(iteration, axis, status, min_quality, max_quality, owed)
    return con.execute(f"""
        WITH page AS (
            SELECT p.id, p.created_at {_queue_from(min_quality, max_quality)} {_QUEUE_ORDER}
            LIMIT ? OFFSET ?)
        SELECT p.id, p.iteration, p.axis, p.status, p.reason, p.source_id, p.neighbour_ids,
               p.instruction, p.input, p.output,
               p.edited_instruction, p.edited_input, p.edited_output,
               p.model, p.template_hash, p.reviewer_note, p.decided_by, p.decided_at,
               s.instruction AS source_instruction, s.input AS source_input, s.output AS source_output,
               g.loss_pre, g.loss_post, g.diversity, g.quality
        FROM page JOIN proposals p ON p.id = page.id
        LEFT JOIN samples s ON s.id = p.source_id
        {_WITH_SIGNALS}
        ORDER BY page.created_at, page.id
    """, [*params, limit, offset]).df()


def queue_ids(con: duckdb.DuckDBPyConnection, iteration: int, axis: str | None = None,
              status: str | None = None, min_quality: float | None = None,
              max_quality: float | None = None, owed: Owed = None) -> list[str]:
    """The ids of queue()'s rows, in its order, without their texts."""
    rows = con.execute(f"SELECT p.id {_queue_from(min_quality, max_quality)} {_QUEUE_ORDER}",
                       _queue_params(iteration, axis, status, min_quality, max_quality, owed)).fetchall()
    return [r[0] for r in rows]


def source_proposals(con: duckdb.DuckDBPyConnection, iteration: int, sample_id: str) -> pd.DataFrame:
    """The proposals written for one sample of D(iteration): id, axis, status."""
    return con.execute("SELECT id, axis, status FROM proposals WHERE iteration = ? AND source_id = ? "
                       "ORDER BY created_at, id", [iteration, sample_id]).df()


def proposal_status(con: duckdb.DuckDBPyConnection, proposal_id: str) -> str | None:
    rows = con.execute("SELECT status FROM proposals WHERE id = ?", [proposal_id]).fetchall()
    return rows[0][0] if rows else None


def decidable(con: duckdb.DuckDBPyConnection, proposal_ids: list[str]) -> list[str]:
    """The proposals among these that exist and are not failed."""
    if not proposal_ids:
        return []
    with registered(con, "_decide", pd.DataFrame({"id": proposal_ids})):
        return [r[0] for r in con.execute(
            "SELECT p.id FROM proposals p JOIN _decide USING (id) WHERE p.status <> 'failed'"
        ).fetchall()]


OUTCOME_COLUMNS = ["id", "status", "edited_instruction", "edited_input", "edited_output"]


def set_outcomes(con: duckdb.DuckDBPyConnection, outcomes: pd.DataFrame, actor: str,
                 note: str | None = None) -> None:
    """Write each proposal's outcome (OUTCOME_COLUMNS), `actor` the one who decided last."""
    frame = outcomes[OUTCOME_COLUMNS].astype("string")
    # one statement per table: row-by-row statements took ~4 ms each, so a bulk decision on
    # 10,000 proposals held the store (and every other process waiting for it) for ~40 s
    with registered(con, "_outcomes", frame):
        con.execute(
            """UPDATE proposals SET status = o.status, decided_by = ?, decided_at = current_timestamp,
                   reviewer_note = coalesce(?, reviewer_note), edited_instruction = o.edited_instruction,
                   edited_input = o.edited_input, edited_output = o.edited_output
               FROM _outcomes o WHERE proposals.id = o.id""",
            [actor, note],
        )


def log_decisions(con: duckdb.DuckDBPyConnection, ids: list[str], action: str, actor: str,
                  note: str | None = None) -> None:
    """One audit row per proposal: `actor` decided `action`."""
    with registered(con, "_decided", pd.DataFrame({"id": pd.Series(ids, dtype="string")})):
        con.execute("INSERT INTO review_log (proposal_id, action, actor, note) SELECT id, ?, ?, ? FROM _decided",
                    [action, actor, note])


def review_counts(con: duckdb.DuckDBPyConnection, iteration: int) -> dict[str, dict[str, int]]:
    """axis -> status -> count."""
    return proposal_counts(con, iteration)


def audit_trail(con: duckdb.DuckDBPyConnection, proposal_id: str | None = None) -> pd.DataFrame:
    return con.execute(
        "SELECT * FROM review_log WHERE (?::VARCHAR IS NULL OR proposal_id = ?) ORDER BY decided_at",
        [proposal_id, proposal_id],
    ).df()


def decided_proposals(con: duckdb.DuckDBPyConnection, iteration: int) -> pd.DataFrame:
    """Accepted and edited proposals of an iteration: what the next dataset version is built from."""
    return con.execute("""
        SELECT id, axis, source_id, status, instruction, input, output,
               edited_instruction, edited_input, edited_output
        FROM proposals WHERE iteration = ? AND status IN ('accepted', 'edited')
        ORDER BY id
    """, [iteration]).df()
