"""Per-sample signals and the signal cache: the only SQL about them. Rows join on sample id.

The built-in signals' columns are columns of `signals`; a column of any other registered signal is
a number in `signal_values` (iteration, sample id, signal, column, value), put beside them by
load_signals and signals_with_text, so a new signal needs no schema change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from middo_core.store.db import registered, stamp_write

QUALITY_COLUMNS = ("instruction_clarity", "instruction_completeness", "instruction_factuality",
                   "response_clarity", "response_completeness", "response_factuality", "quality")
SIGNAL_COLUMNS = ("loss_pre", "loss_post", "diversity", "neighbours", "neighbour_sims",
                  *QUALITY_COLUMNS, "truncated", "empty_response")


@dataclass
class CacheRows:
    """Computed rows of some samples, ready for the signal cache (and embeddings, when computed,
    for the vector cache)."""

    ids: list[str] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    vectors: np.ndarray | None = None  # (n, dim) float32, rows in `ids` order

    def cache_rows(self) -> list[tuple[str, dict]]:
        """The rows in the signal cache's (sample id, payload) shape."""
        return list(zip(self.ids, self.payloads, strict=True))


def get_cached(con: duckdb.DuckDBPyConnection, signal: str, key: str,
               ids: list[str]) -> dict[str, dict[str, Any]]:
    """sample id -> payload for the ids that have a cached value under (signal, key)."""
    if not ids:
        return {}
    with registered(con, "_want", pd.DataFrame({"sample_id": list(ids)})):
        rows = con.execute(
            "SELECT c.sample_id, c.payload FROM signal_cache c JOIN _want USING (sample_id) "
            "WHERE c.signal = ? AND c.cache_key = ?", [signal, key]).fetchall()
    return {sid: json.loads(payload) for sid, payload in rows}


def put_cached(con: duckdb.DuckDBPyConnection, signal: str, key: str,
               rows: list[tuple[str, dict[str, Any]]]) -> None:
    if not rows:
        return
    frame = pd.DataFrame({"sample_id": [r[0] for r in rows],
                          "payload": [json.dumps(r[1], allow_nan=False) for r in rows]})
    with registered(con, "_cache_rows", frame):
        con.execute("INSERT OR REPLACE INTO signal_cache SELECT ?, ?, sample_id, payload "
                    "FROM _cache_rows", [signal, key])


def cache_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute("SELECT signal, count(*) FROM signal_cache GROUP BY signal").fetchall()
    return {s: int(n) for s, n in rows}


def write_signals(con: duckdb.DuckDBPyConnection, iteration: int, frame: pd.DataFrame,
                  signal_of: dict[str, str] | None = None) -> None:
    """Upsert the given columns for D(iteration); other columns of existing rows stay.

    `frame` has `sample_id`, any of SIGNAL_COLUMNS, and numeric columns of other signals
    (`signal_of`: column -> the signal that wrote it, default the column's name); rows of samples
    no longer in D(iteration) are removed so the tables always describe the dataset version as it is.
    """
    cols = [c for c in frame.columns if c != "sample_id" and c in SIGNAL_COLUMNS]
    extra = [c for c in frame.columns if c != "sample_id" and c not in SIGNAL_COLUMNS]
    for table in ("signals", "signal_values"):
        con.execute(f"""DELETE FROM {table} WHERE iteration = ? AND sample_id NOT IN
                       (SELECT sample_id FROM dataset_members WHERE iteration = ? AND split = 'train')""",
                    [iteration, iteration])
    with registered(con, "_signals", frame[["sample_id", *cols]]):
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols) or "sample_id = excluded.sample_id"
        con.execute(f"""
            INSERT INTO signals (iteration, sample_id{"".join(", " + c for c in cols)})
            SELECT ?, sample_id{"".join(", " + c for c in cols)} FROM _signals
            ON CONFLICT (iteration, sample_id) DO UPDATE SET {updates}
        """, [iteration])
    if extra:
        long = frame.melt(id_vars="sample_id", value_vars=extra, var_name="name", value_name="value")
        long["signal"] = [(signal_of or {}).get(c, c) for c in long["name"]]
        try:
            long["value"] = pd.to_numeric(long["value"]).astype(float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"signal columns {', '.join(extra)}: only numbers are stored") from exc
        with registered(con, "_values", long[["sample_id", "signal", "name", "value"]]):
            con.execute("INSERT OR REPLACE INTO signal_values SELECT ?, sample_id, signal, name, "
                        "value FROM _values", [iteration])
    stamp_write(con, f"signals:{iteration}")


def _with_values(con: duckdb.DuckDBPyConnection, iteration: int, frame: pd.DataFrame,
                 id_column: str) -> pd.DataFrame:
    """`frame` with a column per other signal's column stored for D(iteration)."""
    long = con.execute("SELECT sample_id, name, value FROM signal_values WHERE iteration = ?",
                       [iteration]).df()
    if long.empty:
        return frame
    wide = long.pivot(index="sample_id", columns="name", values="value")
    wide.columns.name = None
    return frame.join(wide, on=id_column)


def extra_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of other signals in a frame from load_signals (numbers, drawn as histograms)."""
    return [c for c in frame.columns if c != "sample_id" and c not in SIGNAL_COLUMNS]


def load_signals(con: duckdb.DuckDBPyConnection, iteration: int,
                 neighbours: bool = True) -> pd.DataFrame:
    """The signal rows of D(iteration): sample_id plus every signal column, ordered by id.
    neighbours=False leaves out the neighbour lists (two JSON strings per sample, most of the
    frame's memory), which the Studio's charts and selection do not read."""
    cols = [c for c in SIGNAL_COLUMNS if neighbours or c not in ("neighbours", "neighbour_sims")]
    return _with_values(con, iteration, con.execute(f"""
        SELECT g.sample_id, {", ".join("g." + c for c in cols)}
        FROM signals g JOIN dataset_members m
          ON m.iteration = g.iteration AND m.sample_id = g.sample_id AND m.split = 'train'
        WHERE g.iteration = ? ORDER BY g.sample_id
    """, [iteration]).df(), "sample_id")


def signals_with_text(con: duckdb.DuckDBPyConnection, iteration: int) -> pd.DataFrame:
    """One row per sample of D(iteration): id, text, and every signal value and flag (export)."""
    return _with_values(con, iteration, con.execute(f"""
        SELECT s.id, s.instruction, s.input, s.output, s.origin,
               {", ".join("g." + c for c in SIGNAL_COLUMNS)}
        FROM dataset_members m JOIN samples s ON s.id = m.sample_id
        LEFT JOIN signals g ON g.iteration = m.iteration AND g.sample_id = m.sample_id
        WHERE m.iteration = ? AND m.split = 'train' ORDER BY s.id
    """, [iteration]).df(), "id")


def count_signals(con: duckdb.DuckDBPyConnection, iteration: int) -> int:
    return int(con.execute("SELECT count(*) FROM signals WHERE iteration = ?",
                           [iteration]).fetchall()[0][0])


# Columns a value range can be asked of: the numeric signals (not neighbours or flags).
RANGE_COLUMNS = ("loss_pre", "loss_post", "diversity", *QUALITY_COLUMNS)


def _range_from(column: str) -> str:
    """FROM/WHERE of the samples of D(iteration) whose `column` lies in [lo, hi) (or [lo, hi]).

    Bounds match numpy's histogram bins (every bin half-open but the last); non-finite values
    are in no bin, as numpy leaves them out."""
    if column not in RANGE_COLUMNS:  # the name goes into the SQL text: only known columns
        raise ValueError(f"no value range for {column!r}: use one of {', '.join(RANGE_COLUMNS)}")
    return f"""
        FROM signals g JOIN dataset_members m
          ON m.iteration = g.iteration AND m.sample_id = g.sample_id AND m.split = 'train'
        WHERE g.iteration = ? AND isfinite(g.{column}) AND g.{column} >= ?
          AND (g.{column} < ? OR (? AND g.{column} = ?))
    """


def count_in_range(con: duckdb.DuckDBPyConnection, iteration: int, column: str, lo: float,
                   hi: float, include_hi: bool = False) -> int:
    """How many samples of D(iteration) have `column` in [lo, hi) ([lo, hi] with include_hi)."""
    return int(con.execute(f"SELECT count(*) {_range_from(column)}",
                           [iteration, lo, hi, include_hi, hi]).fetchall()[0][0])


def samples_in_range(con: duckdb.DuckDBPyConnection, iteration: int, column: str, lo: float,
                     hi: float, include_hi: bool = False, limit: int = 50, offset: int = 0,
                     text_chars: int = 160) -> pd.DataFrame:
    """One page of those samples, lowest value first: id, the instruction's first `text_chars`
    characters, value. Texts are read for the page only."""
    return con.execute(f"""
        WITH page AS (
            SELECT g.sample_id, g.{column} AS value {_range_from(column)}
            ORDER BY value, g.sample_id LIMIT ? OFFSET ?)
        SELECT page.sample_id AS id, left(s.instruction, ?) AS instruction, page.value
        FROM page JOIN samples s ON s.id = page.sample_id
        ORDER BY page.value, page.sample_id
    """, [iteration, lo, hi, include_hi, hi, limit, offset, text_chars]).df()
