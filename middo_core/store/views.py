"""Read-only queries behind the Studio's screens (browse, statistics, latest runs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import duckdb
import pandas as pd

from middo_core.store.db import registered
from middo_core.store.samples import TEXT_MATCH, text_match_params

BROWSE_COLUMNS = ("id", "instruction", "input", "output", "origin", "parent_id", "axis",
                  "created_in_iteration")
SIGNAL_COLUMNS = ("loss_pre", "loss_post", "diversity", "quality")


_BROWSE_WHERE = f"""
        WHERE m.iteration = ? AND m.split = ?
          AND {TEXT_MATCH}
          AND (?::VARCHAR IS NULL OR s.origin = ?)
"""


def _browse_params(iteration: int, text: str, origin: str | None, split: str) -> list[Any]:
    return [iteration, split, *text_match_params(text), origin, origin]


Narrowing = Literal["scan", "index", "none"]  # every text read, the index's candidates only, none


def _hits(text: str, origin: str | None, narrowed: Narrowing = "scan") -> str:
    """The ids of D(iteration)'s matching samples. Without a filter only dataset_members is read
    (counting or ordering a million ids there takes milliseconds; through the texts, seconds).
    `narrowed`: only the samples whose rowids the registered frame `_candidates` holds (the
    search index's superset of the matches, middo_core.search_index) are read and checked."""
    if not text and origin is None:
        return "SELECT m.sample_id AS id FROM dataset_members m WHERE m.iteration = ? AND m.split = ?"
    if narrowed == "none":  # the index rules every sample out: no scan (an empty IN list scans)
        return f"""SELECT s.id FROM dataset_members m JOIN samples s ON s.id = m.sample_id
            {_BROWSE_WHERE} AND false"""
    if narrowed == "index":
        return f"""SELECT s.id FROM
            (SELECT * FROM samples WHERE rowid IN (SELECT r FROM _candidates)) s
            JOIN dataset_members m ON m.sample_id = s.id {_BROWSE_WHERE}"""
    return f"SELECT s.id FROM dataset_members m JOIN samples s ON s.id = m.sample_id {_BROWSE_WHERE}"


@contextmanager
def _narrowed(con: duckdb.DuckDBPyConnection, text: str,
              candidates: list[int] | None) -> Iterator[Narrowing]:
    """Registers the candidates for _hits while a query runs, and says how _hits narrows."""
    if candidates is None or not text:
        yield "scan"
        return
    if not candidates:
        yield "none"
        return
    with registered(con, "_candidates", pd.DataFrame({"r": pd.Series(candidates, dtype="int64")})):
        yield "index"


def _hit_params(iteration: int, text: str, origin: str | None, split: str) -> list[Any]:
    if not text and origin is None:
        return [iteration, split]
    return _browse_params(iteration, text, origin, split)


def browse_page(con: duckdb.DuckDBPyConnection, iteration: int, text: str = "",
                origin: str | None = None, limit: int = 50, offset: int = 0,
                split: str = "train", candidates: list[int] | None = None) -> tuple[int, pd.DataFrame]:
    """How many samples of D(iteration) match `text` (case-insensitive, in the instruction, input
    or output) and `origin`, and one page of them (by id) with their signals, in one pass over
    the texts: the matching ids are found once, then only the page's rows are read whole.
    `candidates`: a superset of the samples holding `text` (middo_core.search_index), to read instead
    of every text."""
    cols = ", ".join(f"s.{c}" for c in BROWSE_COLUMNS)
    sig = ", ".join(f"g.{c}" for c in SIGNAL_COLUMNS)
    with _narrowed(con, text, candidates) as narrowed:
        frame = con.execute(f"""
        WITH hits AS MATERIALIZED ({_hits(text, origin, narrowed)}),
        page AS (SELECT id FROM hits ORDER BY id LIMIT ? OFFSET ?),
        rows AS (
            SELECT {cols}, {sig}
            FROM page JOIN samples s ON s.id = page.id
            LEFT JOIN signals g ON g.iteration = ? AND g.sample_id = page.id)
        SELECT total.n AS _total, rows.*
        FROM (SELECT count(*) AS n FROM hits) total LEFT JOIN rows ON true
        ORDER BY rows.id
    """, [*_hit_params(iteration, text, origin, split), limit, offset, iteration]).df()
    total = int(frame["_total"].iloc[0]) if len(frame) else 0
    frame = frame[frame["id"].notna()].drop(columns="_total").reset_index(drop=True)
    return total, frame


def browse_samples(con: duckdb.DuckDBPyConnection, iteration: int, text: str = "",
                   origin: str | None = None, limit: int = 50, offset: int = 0,
                   split: str = "train") -> pd.DataFrame:
    """One page of D(iteration) matching `text` (case-insensitive) and `origin`, with its signals."""
    return browse_page(con, iteration, text, origin, limit, offset, split)[1]


def count_samples(con: duckdb.DuckDBPyConnection, iteration: int, text: str = "",
                  origin: str | None = None, split: str = "train",
                  candidates: list[int] | None = None) -> int:
    with _narrowed(con, text, candidates) as narrowed:
        return int(con.execute(f"SELECT count(*) FROM ({_hits(text, origin, narrowed)})",
                               _hit_params(iteration, text, origin, split)).fetchall()[0][0])


def matching_ids(con: duckdb.DuckDBPyConnection, iteration: int, text: str,
                 split: str = "train", candidates: list[int] | None = None) -> list[str]:
    """The ids of D(iteration)'s samples whose instruction, input or output holds `text`
    (case-insensitive): the search box of the map, which marks every match. `candidates` as in
    browse_page."""
    with _narrowed(con, text, candidates) as narrowed:
        rows = con.execute(_hits(text, None, narrowed),
                           _hit_params(iteration, text, None, split)).fetchall()
    return [r[0] for r in rows]


def dataset_statistics(con: duckdb.DuckDBPyConnection, iteration: int) -> dict[str, Any]:
    """Sizes, origins and text lengths of D(iteration)."""
    splits = dict(con.execute(
        "SELECT split, count(*) FROM dataset_members WHERE iteration = ? GROUP BY ALL", [iteration]
    ).fetchall())
    origins = con.execute("""
        SELECT s.origin, count(*) AS samples FROM dataset_members m JOIN samples s ON s.id = m.sample_id
        WHERE m.iteration = ? AND m.split = 'train' GROUP BY ALL ORDER BY samples DESC
    """, [iteration]).df()
    lengths = con.execute("""
        SELECT 'instruction' AS field, avg(length(s.instruction)) AS mean_chars,
               median(length(s.instruction)) AS median_chars, max(length(s.instruction)) AS max_chars
        FROM dataset_members m JOIN samples s ON s.id = m.sample_id
        WHERE m.iteration = ? AND m.split = 'train'
        UNION ALL
        SELECT 'input', avg(length(s.input)), median(length(s.input)), max(length(s.input))
        FROM dataset_members m JOIN samples s ON s.id = m.sample_id
        WHERE m.iteration = ? AND m.split = 'train'
        UNION ALL
        SELECT 'output', avg(length(s.output)), median(length(s.output)), max(length(s.output))
        FROM dataset_members m JOIN samples s ON s.id = m.sample_id
        WHERE m.iteration = ? AND m.split = 'train'
    """, [iteration, iteration, iteration]).df()
    n_signals = con.execute("SELECT count(*) FROM signals WHERE iteration = ?", [iteration]).fetchall()[0][0]
    return {"splits": {str(k): int(v) for k, v in splits.items()}, "origins": origins,
            "lengths": lengths, "diagnosed": int(n_signals)}


def iteration_numbers(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Every iteration that has a record or a dataset version, ascending."""
    rows = con.execute("""
        SELECT number FROM iterations UNION SELECT DISTINCT iteration FROM dataset_members ORDER BY 1
    """).fetchall()
    return [int(r[0]) for r in rows]


def latest_run(con: duckdb.DuckDBPyConnection, iteration: int | None = None,
               kinds: tuple[str, ...] | None = None) -> dict[str, Any] | None:
    """The newest run (of `kinds`, for `iteration` when given)."""
    frame = con.execute("""
        SELECT * FROM runs
        WHERE (?::INTEGER IS NULL OR iteration = ?)
          AND (?::VARCHAR[] IS NULL OR list_contains(?::VARCHAR[], kind))
        ORDER BY created_at DESC LIMIT 1
    """, [iteration, iteration, list(kinds) if kinds else None, list(kinds) if kinds else None]).df()
    return None if frame.empty else frame.iloc[0].to_dict()


def signal_count(con: duckdb.DuckDBPyConnection, iteration: int) -> int:
    return int(con.execute("SELECT count(*) FROM signals WHERE iteration = ?", [iteration]).fetchall()[0][0])


def proposal_count(con: duckdb.DuckDBPyConnection, iteration: int) -> int:
    return int(con.execute("SELECT count(*) FROM proposals WHERE iteration = ?", [iteration]).fetchall()[0][0])


def sample_signals(con: duckdb.DuckDBPyConnection, iteration: int, ids: list[str]) -> pd.DataFrame:
    """Text and signals of the given samples of iteration `iteration` (for map selections).

    The ids go in as a list of parameters, so both tables are read through their primary keys
    (100 samples of a million in ~0.15 s; a join with a registered frame scans every text: ~0.9 s).
    """
    ids = list(ids)
    if not ids:
        ids = [""]  # no sample has an empty id: an empty frame with the columns
    marks = ", ".join("?" * len(ids))
    return con.execute(f"""
        SELECT {", ".join("s." + c for c in BROWSE_COLUMNS)},
               {", ".join("g." + c for c in SIGNAL_COLUMNS)}
        FROM (SELECT * FROM samples WHERE id IN ({marks})) s
        LEFT JOIN (SELECT * FROM signals WHERE iteration = ? AND sample_id IN ({marks})) g
          ON g.sample_id = s.id
    """, [*ids, iteration, *ids]).df()


def signal_summary(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per diagnosed iteration: samples, mean and max loss, mean diversity and quality."""
    return con.execute("""
        SELECT iteration, count(*) AS samples,
               avg(loss_pre) AS mean_loss_pre, max(loss_pre) AS max_loss_pre,
               avg(loss_post) AS mean_loss_post, max(loss_post) AS max_loss_post,
               avg(diversity) AS mean_diversity, avg(quality) AS mean_quality
        FROM signals GROUP BY iteration ORDER BY iteration
    """).df()


def metrics_long(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every stored score: iteration, benchmark / metric, value."""
    return con.execute("""
        SELECT iteration, benchmark || ' / ' || metric AS benchmark, value, n
        FROM metrics ORDER BY benchmark, iteration
    """).df()
