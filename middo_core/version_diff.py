"""What changed between two dataset versions D(a) and D(b): samples removed, added and rewritten.

A sample of D(b) is *rewritten* when its parent chain leads to a sample of D(a) that D(b) no
longer holds (the nearest ancestor in either version decides): the pair (old, new) is one change,
never a removal plus an addition. Other new samples are *added* (an augmentation, written near a
sparse sample that stays, has axis diversity); other samples that left are *removed*. Each change
carries the axis of the proposal behind it, or `edited` when the curator's text replaced the
LLM's. Comparing a newer version with an older one shows the same changes backwards.

The work happens in DuckDB (store/version_diff.py); this module checks the versions asked for,
shapes the results and writes exports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel

from middo_core.store import version_diff as queries
from middo_core.store.version_diff import AXES, EXPORT_COLUMNS, KINDS
from middo_core.workspace import Workspace

Kind = Literal["rewritten", "added", "removed"]
EXPORT_SUFFIXES = {".jsonl": "json", ".csv": "csv"}
OTHER = "other"  # the axis column of changes no proposal made (an import, say)

__all__ = ["AXES", "EXPORT_COLUMNS", "EXPORT_SUFFIXES", "KINDS", "OTHER", "ChangeCount", "DiffSummary",
           "SampleText", "VersionChange", "VersionDiffError", "diff_page", "diff_summary",
           "export_diff", "export_format", "versions"]


class VersionDiffError(ValueError):
    """A comparison that cannot be made; the message names what is wrong."""


class SampleText(BaseModel):
    instruction: str = ""
    input: str = ""
    output: str = ""


class VersionChange(BaseModel):
    kind: Kind
    axis: str | None  # complexity | quality | diversity | edited; None for a change no proposal made
    old_id: str | None
    new_id: str | None
    old: SampleText | None
    new: SampleText | None


class ChangeCount(BaseModel):
    kind: Kind
    axis: str | None
    count: int


class DiffSummary(BaseModel):
    a: int
    b: int
    size_a: int
    size_b: int
    counts: list[ChangeCount]

    def total(self, kind: str | None = None, axis: str | None = None) -> int:
        """Changes of `kind` on `axis` (None: any)."""
        return sum(c.count for c in self.counts
                   if (kind is None or c.kind == kind) and (axis is None or c.axis == axis))

    def table(self) -> pd.DataFrame:
        """Counts with one row per kind and one column per axis ('other': no proposal behind it)."""
        axes = [*AXES, *([OTHER] if any(c.axis is None for c in self.counts) else [])]
        rows = []
        for kind in KINDS:
            row: dict[str, object] = {"kind": kind}
            for ax in axes:
                row[ax] = sum(c.count for c in self.counts if c.kind == kind and (c.axis or OTHER) == ax)
            rows.append({**row, "total": self.total(kind)})
        return pd.DataFrame(rows, columns=["kind", *axes, "total"])


def versions(ws: Workspace) -> dict[int, int]:
    """Dataset versions with their training sizes, oldest first."""
    with ws.store.read() as con:
        return queries.version_sizes(con)


def _check(ws: Workspace, sizes: dict[int, int], a: int, b: int, kind: str | None,
           axis: str | None) -> None:
    for v in (a, b):
        if v not in sizes:
            known = ", ".join(str(n) for n in sizes) or "none yet"
            raise VersionDiffError(f"D({v}) does not exist in {ws.root}; versions: {known}")
    if kind is not None and kind not in KINDS:
        raise VersionDiffError(f"unknown change kind {kind!r}; choose one of {', '.join(KINDS)}")
    if axis is not None and axis not in AXES:
        raise VersionDiffError(f"unknown axis {axis!r}; choose one of {', '.join(AXES)}")


def diff_summary(ws: Workspace, a: int, b: int) -> DiffSummary:
    """Sizes of both versions and the number of changes per kind and axis."""
    with ws.store.read() as con:
        sizes = queries.version_sizes(con)
        _check(ws, sizes, a, b, None, None)
        counts = queries.change_counts(con, a, b)
    return DiffSummary(a=a, b=b, size_a=sizes[a], size_b=sizes[b],
                       counts=[ChangeCount(kind=k, axis=ax, count=n) for k, ax, n in counts])


def _text(row: dict, side: str) -> SampleText | None:
    if row[f"{side}_id"] is None:
        return None
    return SampleText(**{f: row[f"{side}_{f}"] or "" for f in queries.TEXT_FIELDS})


def diff_page(ws: Workspace, a: int, b: int, kind: str | None = None, axis: str | None = None,
              limit: int = 50, offset: int = 0) -> list[VersionChange]:
    """Changes from D(a) to D(b) matching `kind` and `axis`: rewritten first, then added,
    then removed, each by sample id; `limit` of them from `offset`."""
    with ws.store.read() as con:
        _check(ws, queries.version_sizes(con), a, b, kind, axis)
        rows = queries.change_page(con, a, b, kind=kind, axis=axis, limit=limit, offset=offset)
    return [VersionChange(kind=r["kind"], axis=r["axis"], old_id=r["old_id"], new_id=r["new_id"],
                          old=_text(r, "old"), new=_text(r, "new")) for r in rows]


def export_format(path: Path) -> str:
    """'json' (JSON lines) or 'csv', from the file's suffix."""
    fmt = EXPORT_SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise VersionDiffError(f"{path}: export to a .jsonl or .csv file")
    return fmt


def export_diff(ws: Workspace, a: int, b: int, path: Path, kind: str | None = None,
                axis: str | None = None) -> int:
    """Write the matching changes to `path` (.jsonl or .csv), one row per change with its kind,
    axis, old and new id and texts; returns the rows written. The file appears whole or not at all."""
    path = Path(path)
    fmt = export_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with ws.store.read() as con:
            _check(ws, queries.version_sizes(con), a, b, kind, axis)
            n = queries.copy_changes(con, a, b, str(partial), fmt, kind=kind, axis=axis)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return n
