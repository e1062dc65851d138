"""Samples and dataset versions: the only SQL about them."""

from __future__ import annotations

import json
import re

import duckdb
import pandas as pd

from middo_core.sample import Sample
from middo_core.store.db import registered

SAMPLE_COLUMNS = ["id", "instruction", "input", "output", "system", "history", "origin",
                  "parent_id", "axis", "proposal_id", "created_in_iteration"]


def samples_frame(samples: list[Sample], origin: str = "seed", iteration: int = 0,
                  parent_ids: list[str | None] | None = None, axes: list[str | None] | None = None,
                  proposal_ids: list[str | None] | None = None) -> pd.DataFrame:
    n = len(samples)
    return pd.DataFrame({
        "id": [s.id for s in samples],
        "instruction": [s.instruction for s in samples],
        "input": [s.input for s in samples],
        "output": [s.output for s in samples],
        "system": [s.system for s in samples],
        "history": [json.dumps([list(t) for t in s.history], ensure_ascii=False) for s in samples],
        "origin": [origin] * n,
        "parent_id": parent_ids or [None] * n,
        "axis": axes or [None] * n,
        "proposal_id": proposal_ids or [None] * n,
        "created_in_iteration": [iteration] * n,
    }, columns=SAMPLE_COLUMNS)


def insert_samples(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> int:
    """Insert rows whose id is new; returns how many were new. `frame` has SAMPLE_COLUMNS."""
    with registered(con, "_new_samples", frame):
        # fetchall, not fetchone: DuckDB refuses unregister() while a result is half read
        before = con.execute("SELECT count(*) FROM samples").fetchall()[0][0]
        con.execute(f"""
            INSERT INTO samples ({", ".join(SAMPLE_COLUMNS)})
            SELECT DISTINCT ON (id) {", ".join(SAMPLE_COLUMNS)} FROM _new_samples
            WHERE id NOT IN (SELECT id FROM samples)
        """)
        after = con.execute("SELECT count(*) FROM samples").fetchall()[0][0]
    return after - before


def set_members(con: duckdb.DuckDBPyConnection, iteration: int, ids: list[str],
                split: str = "train") -> None:
    """Make `ids` the `split` part of dataset version `iteration` (replacing what was there)."""
    con.execute("DELETE FROM dataset_members WHERE iteration = ? AND split = ?", [iteration, split])
    frame = pd.DataFrame({"sample_id": pd.unique(pd.Series(ids, dtype="string"))})
    with registered(con, "_members", frame):
        con.execute(
            "INSERT INTO dataset_members SELECT ?, sample_id, ? FROM _members", [iteration, split]
        )


def add_members(con: duckdb.DuckDBPyConnection, iteration: int, ids: list[str],
                split: str = "train") -> None:
    frame = pd.DataFrame({"sample_id": pd.unique(pd.Series(ids, dtype="string"))})
    with registered(con, "_members", frame):
        con.execute("""
            INSERT INTO dataset_members SELECT ?, sample_id, ? FROM _members
            WHERE sample_id NOT IN (SELECT sample_id FROM dataset_members WHERE iteration = ?)
        """, [iteration, split, iteration])


def dataset(con: duckdb.DuckDBPyConnection, iteration: int, split: str = "train") -> pd.DataFrame:
    """The samples of D(iteration), in a stable order (by id)."""
    return con.execute(f"""
        SELECT {", ".join("s." + c for c in SAMPLE_COLUMNS)}
        FROM dataset_members m JOIN samples s ON s.id = m.sample_id
        WHERE m.iteration = ? AND m.split = ?
        ORDER BY s.id
    """, [iteration, split]).df()


def dataset_ids(con: duckdb.DuckDBPyConnection, iteration: int, split: str = "train") -> list[str]:
    rows = con.execute(
        "SELECT sample_id FROM dataset_members WHERE iteration = ? AND split = ? ORDER BY sample_id",
        [iteration, split],
    ).fetchall()
    return [r[0] for r in rows]


def has_members(con: duckdb.DuckDBPyConnection, iteration: int, split: str = "train") -> bool:
    """Whether D(iteration) has any sample in `split` (without reading its ids)."""
    return bool(con.execute("SELECT 1 FROM dataset_members WHERE iteration = ? AND split = ? LIMIT 1",
                            [iteration, split]).fetchall())


def dataset_sizes(con: duckdb.DuckDBPyConnection) -> dict[int, dict[str, int]]:
    rows = con.execute(
        "SELECT iteration, split, count(*) FROM dataset_members GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    sizes: dict[int, dict[str, int]] = {}
    for it, split, n in rows:
        sizes.setdefault(it, {})[split] = n
    return sizes


def get_samples(con: duckdb.DuckDBPyConnection, ids: list[str]) -> pd.DataFrame:
    """One row per distinct id found."""
    frame = pd.DataFrame({"id": pd.unique(pd.Series(list(ids), dtype="string"))})
    with registered(con, "_ids", frame):
        return con.execute(
            f"SELECT {', '.join('s.' + c for c in SAMPLE_COLUMNS)} FROM samples s JOIN _ids USING (id)"
        ).df()


def row_to_sample(row: dict | pd.Series) -> Sample:
    return Sample(
        instruction=row["instruction"], input=row["input"] or "", output=row["output"],
        system=row["system"] or "", history=[tuple(t) for t in json.loads(row["history"] or "[]")],
    )


# A search: `text` anywhere in the instruction, input or output of a sample `s`, ignoring case,
# taken literally. RE2's case-insensitive match of the escaped text scans a million samples'
# texts in 0.23 s where ILIKE took 0.44 s (2 cores), and an ILIKE pattern would read the
# text's % and _ as wildcards.
TEXT_MATCH = ("(? = '' OR regexp_matches(s.instruction, ?, 'i') OR regexp_matches(s.input, ?, 'i')"
              " OR regexp_matches(s.output, ?, 'i'))")


def text_match_params(text: str) -> list[str]:
    """The parameters of TEXT_MATCH for `text`."""
    pattern = re.escape(text)
    return [text, pattern, pattern, pattern]


def search_samples(con: duckdb.DuckDBPyConnection, iteration: int, text: str = "",
                   limit: int = 200, offset: int = 0) -> pd.DataFrame:
    return con.execute(f"""
        SELECT {", ".join("s." + c for c in SAMPLE_COLUMNS)}
        FROM dataset_members m JOIN samples s ON s.id = m.sample_id
        WHERE m.iteration = ? AND m.split = 'train' AND {TEXT_MATCH}
        ORDER BY s.id LIMIT ? OFFSET ?
    """, [iteration, *text_match_params(text), limit, offset]).df()


def sample_versions(con: duckdb.DuckDBPyConnection, sample_id: str) -> list[int]:
    """The dataset versions a sample belongs to."""
    rows = con.execute(
        "SELECT iteration FROM dataset_members WHERE sample_id = ? AND split = 'train' ORDER BY iteration",
        [sample_id],
    ).fetchall()
    return [r[0] for r in rows]


def copy_dataset(con: duckdb.DuckDBPyConnection, iteration: int, split: str, path: str,
                 only_refined: bool = False) -> int:
    """Write D(iteration) to a Parquet file (ordered by id) inside DuckDB; returns the row count.

    The copy streams inside the engine, so a large version never sits in Python memory and the
    store is held only for as long as DuckDB takes to write the file.
    """
    refined = "AND s.origin <> 'seed'" if only_refined else ""
    query = f"""
        SELECT {", ".join("s." + c for c in SAMPLE_COLUMNS)}
        FROM dataset_members m JOIN samples s ON s.id = m.sample_id
        WHERE m.iteration = {int(iteration)} AND m.split = $split {refined}
        ORDER BY s.id
    """
    quoted = str(path).replace("'", "''")
    con.execute(f"COPY ({query}) TO '{quoted}' (FORMAT parquet)", {"split": split})
    return int(con.execute(f"SELECT count(*) FROM read_parquet('{quoted}')").fetchall()[0][0])


def insert_samples_from_parquet(con: duckdb.DuckDBPyConnection, path: str, iteration: int,
                                split: str = "train") -> int:
    """Insert a staged Parquet file of SAMPLE_COLUMNS rows (new ids only) and make them members of
    D(iteration); DuckDB streams the file, so Python never holds the rows. Returns new members."""
    quoted = str(path).replace("'", "''")
    cols = ", ".join(SAMPLE_COLUMNS)
    before = con.execute("SELECT count(*) FROM dataset_members WHERE iteration = ?",
                         [iteration]).fetchall()[0][0]
    con.execute(f"""
        INSERT INTO samples ({cols})
        SELECT DISTINCT ON (id) {cols} FROM read_parquet('{quoted}')
        WHERE id NOT IN (SELECT id FROM samples)
    """)
    con.execute(f"""
        INSERT INTO dataset_members
        SELECT DISTINCT ?, id, ? FROM read_parquet('{quoted}')
        WHERE id NOT IN (SELECT sample_id FROM dataset_members WHERE iteration = ?)
    """, [iteration, split, iteration])
    after = con.execute("SELECT count(*) FROM dataset_members WHERE iteration = ?",
                        [iteration]).fetchall()[0][0]
    return int(after - before)
