"""Canaries and their signal values, and curators' verdicts on flagged samples: the only SQL about
them. Canaries are kept apart from the samples: no query of a dataset version reads these tables.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from middo_core.store.db import registered

VERDICTS = ("real", "false_alarm")  # what a curator can say about a flag; "cleared" withdraws one


def write_canaries(con: duckdb.DuckDBPyConnection, iteration: int, canaries: pd.DataFrame,
                   values: pd.DataFrame) -> None:
    """Replace D(iteration)'s canaries (id, kind, axis, source_id, seed, instruction, input,
    output) and their values (canary_id, name, value)."""
    con.execute("DELETE FROM canary_values WHERE iteration = ?", [iteration])
    con.execute("DELETE FROM canaries WHERE iteration = ?", [iteration])
    if canaries.empty:
        return
    cols = ["id", "kind", "axis", "source_id", "seed", "instruction", "input", "output"]
    with registered(con, "_canaries", canaries[cols]):
        con.execute(f"INSERT INTO canaries SELECT ?, {', '.join(cols)} FROM _canaries", [iteration])
    frame = values[["canary_id", "name", "value"]].copy()
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    with registered(con, "_canary_values", frame):
        con.execute("INSERT INTO canary_values SELECT ?, canary_id, name, value FROM _canary_values",
                    [iteration])


def load_canaries(con: duckdb.DuckDBPyConnection, iteration: int,
                  text: bool = False) -> pd.DataFrame:
    """D(iteration)'s canaries, one row each: id, kind, axis, source_id and a column per stored
    signal value (with `text`, also their instruction, input and output)."""
    texts = ", instruction, input, output" if text else ""
    frame = con.execute(f"SELECT id, kind, axis, source_id{texts} FROM canaries "
                        "WHERE iteration = ? ORDER BY axis, kind, id", [iteration]).df()
    long = con.execute("SELECT canary_id, name, value FROM canary_values WHERE iteration = ?",
                       [iteration]).df()
    if frame.empty or long.empty:
        return frame
    wide = long.pivot(index="canary_id", columns="name", values="value")
    wide.columns.name = None
    return frame.join(wide, on="id")


def count_canaries(con: duckdb.DuckDBPyConnection, iteration: int) -> int:
    return int(con.execute("SELECT count(*) FROM canaries WHERE iteration = ?",
                           [iteration]).fetchall()[0][0])


# --- verdicts --------------------------------------------------------------------------------


def add_verdict(con: duckdb.DuckDBPyConnection, iteration: int, sample_id: str, axis: str,
                verdict: str, actor: str, note: str | None = None) -> None:
    """Record a curator's verdict on the flag of `sample_id` on `axis` (appended: the log keeps
    every verdict, the latest holds)."""
    con.execute("INSERT INTO verdicts (iteration, sample_id, axis, verdict, actor, note) "
                "VALUES (?, ?, ?, ?, ?, ?)", [iteration, sample_id, axis, verdict, actor, note])


def current_verdicts(con: duckdb.DuckDBPyConnection, iteration: int | None = None) -> pd.DataFrame:
    """The latest verdict per (iteration, sample, axis), withdrawn ones left out: iteration,
    sample_id, axis, verdict, actor, note, decided_at. All iterations when iteration is None."""
    where = "" if iteration is None else "WHERE iteration = ?"
    return con.execute(f"""
        SELECT iteration, sample_id, axis, verdict, actor, note, decided_at FROM (
            SELECT *, row_number() OVER (PARTITION BY iteration, sample_id, axis
                                         ORDER BY decided_at DESC, rowid DESC) AS latest
            FROM verdicts {where})
        WHERE latest = 1 AND verdict <> 'cleared'
        ORDER BY iteration, axis, sample_id
    """, [] if iteration is None else [iteration]).df()


def verdict_history(con: duckdb.DuckDBPyConnection, sample_ids: list[str]) -> pd.DataFrame:
    """Every verdict ever given on these samples, oldest first (a sample's lineage shows them)."""
    if not sample_ids:
        return pd.DataFrame(columns=["iteration", "sample_id", "axis", "verdict", "actor", "note",
                                     "decided_at"])
    with registered(con, "_ids", pd.DataFrame({"sample_id": list(sample_ids)})):
        return con.execute("""
            SELECT v.iteration, v.sample_id, v.axis, v.verdict, v.actor, v.note, v.decided_at
            FROM verdicts v JOIN _ids USING (sample_id) ORDER BY v.decided_at, v.rowid
        """).df()
