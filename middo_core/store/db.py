"""Short-lived DuckDB connections with retries, so several processes can share one store.

DuckDB lets one process hold the file at a time. Every reader and writer here opens the file,
does its work and closes it; a process that finds the file locked waits and retries instead of
surfacing "database is locked" to the user.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from middo_core.store.schema import migrate

LOCK_WAIT_S = 60.0


class StoreBusy(RuntimeError):
    pass


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text or "being used by another process" in text


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + LOCK_WAIT_S
        delay = 0.02
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as exc:
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    if _is_lock_error(exc):
                        raise StoreBusy(
                            f"{self.path}: store busy for over {LOCK_WAIT_S:.0f} s (another process is writing)"
                        ) from exc
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # Read-write open even for reads: DuckDB refuses read-only opens while another
        # process holds the file, and mixing modes in one process is an error.
        con = self._open(read_only=False)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def write(self, memory_limit: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A transaction: everything inside commits together or not at all.

        `memory_limit` ("512MB"): DuckDB spills to its temporary folder beyond it instead of
        holding a large transaction's rows in memory (an import of millions of records)."""
        con = self._open(read_only=False)
        try:
            _limit_memory(con, memory_limit)
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def migrate(self) -> int:
        con = self._open(read_only=False)
        try:
            return migrate(con)
        finally:
            con.close()


_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$")


def _limit_memory(con: duckdb.DuckDBPyConnection, limit: str | None) -> None:
    if limit is None:
        return
    if not _MEMORY.match(limit):
        raise ValueError(f"memory limit {limit!r}: write it like '512MB' or '2GB'")
    con.execute(f"SET memory_limit = '{limit}'")


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, frame) -> Iterator[None]:
    """Expose a pandas frame to SQL as `name` for the duration of the block."""
    con.register(name, frame)
    try:
        yield
    finally:
        con.unregister(name)


def stamp_write(con: duckdb.DuckDBPyConnection, what: str) -> None:
    """Record that `what` ("signals:0", "projection:0:umap") was written, with a new token each
    time: the Studio keys its large caches on these, not on every write to the store."""
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [f"written:{what}", uuid.uuid4().hex])


def write_stamps(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """what -> the token of its last write (a store written before stamps has none)."""
    return dict(con.execute("SELECT substr(key, 9), value FROM meta WHERE key LIKE 'written:%'").fetchall())
