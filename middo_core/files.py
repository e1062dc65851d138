"""Small file helpers shared by the store's neighbours: atomic writes, stale temp-file removal."""

from __future__ import annotations

import os
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
