"""Parquet shards: how distributed workers hand results to the store without opening it.

A worker writes `artifacts/shards/<run>/part-<task>.parquet` (a temporary name, then a rename, so a
shard is whole or absent); the driver ingests every shard of a run into the signal cache in one
transaction and then removes the folder. Embeddings do not pass through here: they go to the vector
cache (middo_core.store.vectors). A run's folder is named by the cache key it fills, so the
shards of a run stopped half-way are picked up by the next run with the same models and settings.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from middo_core.workspace import Workspace

SCHEMA = pa.schema([("signal", pa.string()), ("cache_key", pa.string()),
                    ("sample_id", pa.string()), ("payload", pa.string())])
Row = tuple[str, str, str, dict]  # (signal, cache key, sample id, payload)


def shards_root(ws: Workspace) -> Path:
    return ws.artifact_dir("shards")


def run_dir(ws: Workspace, run: str) -> Path:
    return shards_root(ws) / run


def write_shard(folder: str | Path, task: int, rows: list[Row]) -> Path:
    """Write one task's rows as part-<task>.parquet, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "signal": [r[0] for r in rows], "cache_key": [r[1] for r in rows],
        "sample_id": [r[2] for r in rows],
        "payload": [json.dumps(r[3], allow_nan=False) for r in rows],
    }, schema=SCHEMA)
    path = folder / f"part-{task:06d}.parquet"
    tmp = folder / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def read_shards(folder: str | Path) -> list[Row]:
    """Every row of every complete shard in `folder` (temporary files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    rows: list[Row] = []
    for path in sorted(folder.glob("part-*.parquet")):
        table = pq.read_table(path, schema=SCHEMA)
        for sig, key, sid, payload in zip(*(table.column(c).to_pylist() for c in SCHEMA.names),
                                          strict=True):
            rows.append((sig, key, sid, json.loads(payload)))
    return rows


def ingest(ws: Workspace, folder: str | Path) -> list[Row]:
    """Put every shard row into the signal cache in one transaction, then remove the folder.

    Returns the rows. Nothing is removed unless the transaction committed. Embedding rows (base64
    JSON, from shards written before the vector cache) go to the vector cache instead."""
    from middo_core.store.signals import put_cached
    from middo_core.store.vectors import LEGACY_SIGNAL, decode_vector, vector_cache

    rows = read_shards(folder)
    groups: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    for sig, key, sid, payload in rows:
        groups.setdefault((sig, key), []).append((sid, payload))
    for sig, key in [g for g in groups if g[0] == LEGACY_SIGNAL]:
        part = groups.pop((sig, key))
        vector_cache(ws, key).put([sid for sid, _ in part],
                                  np.stack([decode_vector(p["v"]) for _, p in part]))
    if groups:
        with ws.store.write() as con:
            for (sig, key), part in groups.items():
                put_cached(con, sig, key, part)
    shutil.rmtree(folder, ignore_errors=True)
    return rows
