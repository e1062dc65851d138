"""Small file helpers shared by the store's neighbours: atomic writes, stale temp-file removal,
and how a full disk or a damaged file is told to the user."""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file.
    The temporary name carries the process id, so two writers never share one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale(paths: Iterable[Path], older_than_s: float) -> int:
    """Delete the files among `paths` not modified for `older_than_s` seconds (temporary files
    a killed writer left behind; younger ones may belong to a writer still at work)."""
    cutoff, removed = time.time() - older_than_s, 0
    for path in paths:
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass  # another process removed it first
    return removed


class DamagedFile(ValueError):
    """A file the product wrote is cut short or unreadable; the message names it and what to do."""


NEARLY_FULL = 1 << 20
_QUOTED_PATH = re.compile(r"[\"'](/[^\"']+)[\"']")


def disk_full(exc: BaseException, where: Path | None = None) -> bool:
    """Whether `exc`, or an error it was raised from, is a full disk: errno ENOSPC, or the OS's
    text of it (DuckDB, pyarrow and safetensors pass on the message, not the errno). `where`: the
    folder the failed step wrote to, for writers that hide both (torch.save says "unexpected
    pos"): then less than NEARLY_FULL bytes left there counts as a full disk."""
    if any((isinstance(e, OSError) and e.errno == errno.ENOSPC)
           or "No space left on device" in str(e) or "StorageFull" in str(e) for e in _chain(exc)):
        return True
    return where is not None and nearly_full(where)


def nearly_full(where: Path) -> bool:
    """Whether the disk holding `where` has less than NEARLY_FULL bytes left."""
    try:
        return shutil.disk_usage(_existing(where)).free < NEARLY_FULL
    except OSError:
        return False


def disk_full_message(exc: BaseException, fallback: Path | None = None) -> str:
    """One sentence for a full disk: which path, how much is free now, and what to do."""
    path = fallback
    for e in _chain(exc):
        named = getattr(e, "filename", None) or (_QUOTED_PATH.search(str(e)) or [None, None])[1]
        if named:
            path = Path(named)
            break
    if path is None:
        return "the disk is full: free some space and run the command again"
    try:
        free = f", {_size(shutil.disk_usage(_existing(path)).free)} free now"
    except OSError:
        free = ""
    return (f"no space left on the disk holding {path}{free}: free some space there and run the "
            "command again")


def _existing(path: Path) -> Path:
    """`path`, or its nearest folder that exists (where its disk is measured)."""
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    return where


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in out:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def _size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1024
        if n < 1024 or unit == "TB":
            break
    return f"{n:,.1f} {unit}"
