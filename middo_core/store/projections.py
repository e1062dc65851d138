"""2-D projections of the embeddings (UMAP, t-SNE), one per (iteration, method)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from middo_core.store.db import registered, stamp_write


def put_projection(con: duckdb.DuckDBPyConnection, iteration: int, method: str,
                   ids: list[str], xy: np.ndarray) -> None:
    """Replace the stored projection of `iteration` by `method`."""
    con.execute("DELETE FROM projections WHERE iteration = ? AND method = ?", [iteration, method])
    frame = pd.DataFrame({"sample_id": list(ids), "x": xy[:, 0].astype(float), "y": xy[:, 1].astype(float)})
    with registered(con, "_proj", frame):
        con.execute("INSERT INTO projections SELECT ?, sample_id, ?, x, y FROM _proj", [iteration, method])
    stamp_write(con, f"projection:{iteration}:{method}")


def get_projection(con: duckdb.DuckDBPyConnection, iteration: int, method: str,
                   text_chars: int = 160) -> pd.DataFrame:
    """Columns sample_id, x, y, origin, created_in_iteration, the four signals and the first
    `text_chars` characters of the instruction (empty when not computed).

    In the order the map was stored (rowid: an integer sort, half the time of sorting the ids
    at 200k points), so a reload draws the same picture.
    """
    return con.execute("""
        SELECT p.sample_id, p.x, p.y, s.origin, s.created_in_iteration,
               g.loss_pre, g.loss_post, g.diversity, g.quality,
               left(s.instruction, ?) AS instruction
        FROM projections p JOIN samples s ON s.id = p.sample_id
        LEFT JOIN signals g ON g.iteration = p.iteration AND g.sample_id = p.sample_id
        WHERE p.iteration = ? AND p.method = ?
        ORDER BY p.rowid
    """, [text_chars, iteration, method]).df()


def projection_size(con: duckdb.DuckDBPyConnection, iteration: int, method: str) -> int:
    return int(con.execute("SELECT count(*) FROM projections WHERE iteration = ? AND method = ?",
                           [iteration, method]).fetchall()[0][0])
