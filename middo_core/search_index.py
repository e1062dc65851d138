"""A substring index over every sample's text, so that a search of a large workspace reads only
the samples that can match instead of scanning every text.

The Studio's search is "contains, ignoring case" in the instruction, input or output. At a
million samples DuckDB's scan of ~0.5 GB of text takes 0.4-1.4 s on two cores, and its `fts`
extension is neither bundled (no download here) nor a substring search (it matches stemmed
words). SQLite ships with Python and its FTS5 trigram tokenizer indexes every three-character
window of a text, case-folded: a query's trigrams, all required, give a superset of the samples
that contain it, in milliseconds (a million samples: 19 ms for a rare word, 29 ms for one in 1.5%
of the samples). The index stores no text (contentless, no positions: ~270 MB at a million
samples of ~490 characters), so the candidates are checked with the exact match in DuckDB, and a
search through the index returns exactly what the scan returns.

Samples are never updated or deleted in the store, only added, so a sample keeps its DuckDB
rowid, which is its key in the index, and the index follows the store by appending the rows past
the last one it holds (it records the store's sample count and highest rowid, and starts over
when they do not match, as they would not after a deletion). It is built by the
background job "search_index" (resumable: each chunk is committed with its position), which the
Data page starts for a workspace of INDEX_FROM samples or more. Until it has caught up, a search
scans as before, and says why.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from middo_core.progress import ProgressFn, report
from middo_core.workspace import Workspace

# samples from which a workspace gets an index (below, a scan takes < 0.2 s)
INDEX_FROM = int(os.environ.get("MIDDO_SEARCH_INDEX_FROM", 100_000))
MIN_QUERY = 3  # characters: a trigram index cannot narrow a shorter query
SCAN_ABOVE = 0.2  # a query matching more than this share of the samples is scanned instead
CHUNK = 50_000
STAGE = "search index"


@dataclass(frozen=True)
class IndexState:
    samples: int  # in the store
    indexed: int  # in the index, caught up with the store's rows up to its last rowid
    wanted: bool  # the workspace is large enough to have one
    ready: bool  # the index holds every sample of the store

    @property
    def share(self) -> float:
        return self.indexed / self.samples if self.samples else 1.0

    @property
    def note(self) -> str:
        """What a search does now, in a sentence for the Studio (empty when nothing to say)."""
        if not self.wanted or self.ready:
            return ""
        return (f"Searching scans every text until the search index is built "
                f"({self.indexed:,} of {self.samples:,} samples indexed).")


def index_path(ws: Workspace) -> Path:
    return ws.root / "artifacts" / "search" / "samples.trigram.sqlite"


def _open(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=60)
    con.execute("PRAGMA journal_mode=WAL")  # the Studio reads while the job appends
    con.executescript("""
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE VIRTUAL TABLE IF NOT EXISTS texts
            USING fts5(text, tokenize='trigram', detail='none', content='');
    """)
    return con


def _meta(con: sqlite3.Connection) -> tuple[int, int]:
    """(samples indexed, the store's rowid of the last one; -1 when none)."""
    values = dict(con.execute("SELECT key, value FROM meta").fetchall())
    return int(values.get("indexed", 0)), int(values.get("last_rowid", -1))


def _extent(ws: Workspace) -> tuple[int, int]:
    with ws.store.read() as con:
        n, last = con.execute("SELECT count(*), coalesce(max(rowid), -1) FROM samples").fetchone()
    return int(n), int(last)


def _indexed(ws: Workspace) -> tuple[int, int]:
    path = index_path(ws)
    if not path.exists():
        return 0, -1
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as con:
            return _meta(con)
    except sqlite3.Error:  # a damaged or half-created file: the job starts it over
        return 0, -1


def index_state(ws: Workspace) -> IndexState:
    samples, last = _extent(ws)
    indexed, indexed_last = _indexed(ws)
    ready = indexed == samples and indexed_last == last
    return IndexState(samples, min(indexed, samples), samples >= INDEX_FROM, ready)


@contextmanager
def _one_writer(path: Path) -> Iterator[None]:
    """One process appends to an index at a time (the Data page of two tabs, or a benchmark
    beside a job, may each start one): the next waits, then finds the rows already there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def update_index(ws: Workspace, progress: ProgressFn | None = None, chunk: int = CHUNK,
                 rebuild: bool = False) -> dict:
    """Appends the store's samples the index lacks, a committed chunk at a time (a stopped run
    keeps its chunks); starts over when the index does not match the store, or with `rebuild`."""
    path = index_path(ws)
    with _one_writer(path):
        return _update(ws, path, progress, chunk, rebuild)


def _update(ws: Workspace, path: Path, progress: ProgressFn | None, chunk: int,
            rebuild: bool) -> dict:
    samples, last = _extent(ws)
    indexed, indexed_last = _indexed(ws)
    if rebuild or indexed > samples or indexed_last > last or (indexed == 0 and path.exists()):
        for name in ("", "-wal", "-shm"):  # the database and its WAL files
            path.with_name(path.name + name).unlink(missing_ok=True)
        indexed, indexed_last = 0, -1
    added = 0
    with closing(_open(path)) as con:
        report(progress, STAGE, indexed, samples, f"{indexed:,} of {samples:,} samples indexed")
        while indexed < samples:
            with ws.store.read() as store:
                rows = store.execute("""
                    SELECT rowid, concat_ws(chr(10), instruction, input, output)
                    FROM samples WHERE rowid > ? ORDER BY rowid LIMIT ?
                """, [indexed_last, chunk]).fetchall()
            if not rows:
                break
            with con:  # one transaction: the chunk and its position, or neither
                con.executemany("INSERT INTO texts (rowid, text) VALUES (?, ?)", rows)
                indexed, indexed_last = indexed + len(rows), int(rows[-1][0])
                con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                [("indexed", indexed), ("last_rowid", indexed_last)])
            added += len(rows)
            report(progress, STAGE, indexed, samples, f"{indexed:,} of {samples:,} samples indexed")
    return {"samples": samples, "indexed": indexed, "added": added,
            "bytes": path.stat().st_size if path.exists() else 0}


def _trigrams(text: str) -> list[str]:
    folded = text.lower()
    return sorted({folded[i:i + 3] for i in range(len(folded) - 2)})


def candidates(ws: Workspace, text: str) -> list[int] | None:
    """The store rowids of the samples whose text may contain `text` (a superset of those that
    do; DuckDB reads rows by rowid without a scan, where ids would need a join), or
    None where the index cannot narrow the search: no index or one behind the store, a query
    under MIN_QUERY characters or outside ASCII (SQLite and DuckDB fold other letters' case
    differently), or one that more than SCAN_ABOVE of the samples may match."""
    if len(text) < MIN_QUERY or not text.isascii():
        return None
    state = index_state(ws)
    if not state.ready or not state.samples:
        return None
    query = " AND ".join('"' + gram.replace('"', '""') + '"' for gram in _trigrams(text))
    cap = max(1, int(SCAN_ABOVE * state.samples))
    path = index_path(ws)
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as con:
            # counted in SQLite first: a query too common to narrow costs no Python rows (a word in
            # 64% of a million samples: 0.04-0.05 s against 0.1-0.17 s for its 200,001 rowids)
            many = con.execute("SELECT count(*) FROM (SELECT 1 FROM texts WHERE texts MATCH ? LIMIT ?)",
                               [query, cap + 1]).fetchone()[0]
            if many > cap:
                return None
            rows = con.execute("SELECT rowid FROM texts WHERE texts MATCH ?", [query]).fetchall()
    except sqlite3.Error:
        return None
    return [r[0] for r in rows]


def search_index_job(ws: Workspace, run_id: str, iteration: int | None, args: dict,
                     progress: ProgressFn | None) -> dict:
    """The background job "search_index": bring the workspace's index up to its store."""
    return update_index(ws, progress=progress)


__all__: Sequence[str] = ("INDEX_FROM", "IndexState", "candidates", "index_path",
                          "index_state", "search_index_job", "update_index")
