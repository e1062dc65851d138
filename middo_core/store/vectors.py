"""The vector cache: per-sample embeddings as float32 shards beside the store, not inside it.

    cache = open_vectors(ws, emb_key)          # artifacts/vectors/<emb_key>/
    cache.put(ids, matrix)                      # one new shard, whole or absent
    cache.get(ids) -> {id: vector}              # the union of the shards, last write wins

The key is the embedding cache key (model fingerprint, prompt format, max_len, pooling), so a new
checkpoint never reads another model's vectors. A shard is one .npy file holding a structured
array (`id`: the sample id as bytes, `v`: the float32 vector): written under a temporary name,
fsynced, then renamed, so a kill leaves either the whole shard or a hidden temporary file that
readers ignore and `clean` removes. Large shards are memory-mapped, so a million vectors cost
page cache, not process memory, until the caller stacks them.

Shard names sort in write order: `<time ns>-<tier>-<tag>.npy`. Every write is tier 0; `compact`
merges runs of MERGE_FANIN consecutive shards of one tier into one shard of the next tier (up to
TOP_TIER), like a binary counter, so a pass of thousands of checkpoints leaves tens of files and
each vector is rewritten at most TOP_TIER times. Merging only consecutive shards keeps "last
write wins" intact.

Workspaces from before the cache kept embeddings as base64 JSON rows of the signal cache;
`move_legacy_embeddings` moves them here once (see its docstring).
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from middo_core.files import DamagedFile, remove_stale

if TYPE_CHECKING:
    from middo_core.store.db import Store
    from middo_core.workspace import Workspace

VECTORS_DIR = "vectors"
MERGE_FANIN = 32  # consecutive same-tier shards merged into one
TOP_TIER = 2  # shards of this tier are never merged again (~1024 checkpoints each)
MMAP_BYTES = 32 << 20  # shards at least this big are memory-mapped, smaller ones read whole
TEMP_MAX_AGE_S = 600.0  # a temporary file older than this belongs to a dead writer
LEGACY_SIGNAL = "embedding"  # the signal cache namespace embeddings used to live in
LEGACY_CHUNK = 16384  # rows per migrated shard (256 MB at 4096 dimensions)
MOVED_META = "vectors_moved"  # meta key set once the legacy rows are moved
_NAME = re.compile(r"^(\d{20})-(\d+)-([0-9a-z]+)\.npy$")
_TEMP_PREFIX = ".tmp-"
_READ_RETRIES = 5


def encode_vector(v: np.ndarray) -> str:
    """float32 vector -> base64 text (the legacy signal cache payload, {"v": text})."""
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").copy()


def shard_array(ids: Sequence[str], matrix: np.ndarray) -> np.ndarray:
    """ids + (n, dim) matrix -> the structured array a shard holds."""
    matrix = np.asarray(matrix, dtype="<f4")
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise ValueError(f"vector cache: {len(ids)} ids for a matrix of shape {matrix.shape}")
    encoded = [str(s).encode("utf-8") for s in ids]
    width = -(-max((len(b) for b in encoded), default=1) // 8) * 8  # keeps the floats aligned
    arr = np.empty(len(ids), dtype=_dtype(width, matrix.shape[1]))
    arr["id"] = encoded
    arr["v"] = matrix
    return arr


def _dtype(width: int, dim: int) -> np.dtype:
    return np.dtype([("id", f"S{width}"), ("v", "<f4", (dim,))])


def pack(ids: Sequence[str], matrix: np.ndarray) -> bytes:
    """A shard as bytes (for rows that travel through Ray's object store)."""
    buf = io.BytesIO()
    np.save(buf, shard_array(ids, matrix), allow_pickle=False)
    return buf.getvalue()


def unpack(data: bytes) -> tuple[list[str], np.ndarray]:
    arr = np.load(io.BytesIO(data), allow_pickle=False)
    return [b.decode("utf-8") for b in arr["id"].tolist()], np.asarray(arr["v"])


@dataclass(frozen=True)
class Shard:
    path: Path
    ns: int
    tier: int

    @property
    def sort_key(self) -> tuple[int, str]:
        return self.ns, self.path.name


class VectorCache:
    """The shards of one embedding cache key, in one folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    # --- writing ----------------------------------------------------------------------------

    def put(self, ids: Sequence[str], matrix: np.ndarray) -> Path | None:
        """Write one shard (tier 0); nothing when `ids` is empty. Returns its path."""
        if not len(ids):
            return None
        return self._write(shard_array(ids, matrix), time.time_ns(), 0)

    def _write(self, arr: np.ndarray, ns: int, tier: int, tag: str | None = None) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{ns:020d}-{tier}-{tag or uuid.uuid4().hex[:12]}.npy"
        tmp = self._temp()
        try:
            with open(tmp, "wb") as f:
                np.save(f, arr, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())  # the rename must not publish a shard the disk lacks
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def _temp(self) -> Path:
        return self.folder / f"{_TEMP_PREFIX}{uuid.uuid4().hex}.npy"

    # --- reading ----------------------------------------------------------------------------

    def shards(self) -> list[Shard]:
        """The complete shards, oldest first (temporary files are not listed)."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in self.folder.iterdir():
            m = _NAME.match(path.name)
            if m:
                out.append(Shard(path, int(m.group(1)), int(m.group(2))))
        return sorted(out, key=lambda s: s.sort_key)

    def get(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        """sample id -> float32 vector for the requested ids that have one (last write wins).

        Vectors of large shards are read-only views of a memory map."""
        want = set(ids)
        if not want:
            return {}
        arrays, index = self._read_index(want)
        fields = [np.asarray(a["v"]) for a in arrays]  # plain views: np.memmap rows are slow
        return {sid: fields[k][row] for sid, (k, row) in index.items()}

    def matrix(self, ids: Sequence[str]) -> np.ndarray:
        """The vectors of `ids` stacked in that order (a new float32 array); KeyError naming the
        first missing id when one has no vector."""
        arrays, index = self._read_index(set(ids))
        missing = [sid for sid in ids if sid not in index]
        if missing:
            raise KeyError(f"{self.folder}: no vector for {len(missing)} of {len(ids)} samples "
                           f"(first: {missing[0]})")
        if not len(ids):
            return np.zeros((0, 0), dtype=np.float32)
        where = np.array([index[sid] for sid in ids], dtype=np.int64)
        out = np.empty((len(ids), arrays[0].dtype["v"].shape[0]), dtype=np.float32)
        for k, arr in enumerate(arrays):
            rows = np.flatnonzero(where[:, 0] == k)
            if len(rows):
                out[rows] = np.asarray(arr["v"])[where[rows, 1]]
        return out

    def _read_index(self, want: set[str]) -> tuple[list[np.ndarray], dict[str, tuple[int, int]]]:
        for _ in range(_READ_RETRIES - 1):
            try:
                return self._index(want)
            except FileNotFoundError:  # a compaction replaced a shard between listing and reading
                continue
        return self._index(want)

    def ids(self) -> set[str]:
        """Every sample id with a vector under this key."""
        return set(self._index(None)[1])

    def _index(self, want: set[str] | None) -> tuple[list[np.ndarray], dict[str, tuple[int, int]]]:
        arrays: list[np.ndarray] = []
        index: dict[str, tuple[int, int]] = {}
        dim = None
        for shard in self.shards():
            arr = _load(shard.path)
            if dim is not None and arr.dtype["v"].shape != dim:
                raise ValueError(f"{shard.path}: vectors of shape {arr.dtype['v'].shape}, the other "
                                 f"shards of this key hold {dim}; remove the folder to recompute")
            dim = arr.dtype["v"].shape
            k = len(arrays)
            arrays.append(arr)
            for row, raw in enumerate(arr["id"].tolist()):
                sid = raw.decode("utf-8")
                if want is None or sid in want:
                    index[sid] = (k, row)
        return arrays, index

    # --- upkeep -----------------------------------------------------------------------------

    def compact(self, fanin: int = MERGE_FANIN, top_tier: int = TOP_TIER) -> int:
        """Merge every run of `fanin` consecutive shards of one tier below `top_tier` into one
        shard of the next tier, oldest run first, until none is left; returns the merges done.
        Also removes temporary files of dead writers. Run it from one process per key."""
        self.clean()
        merges = 0
        while True:
            run = _first_full_run(self.shards(), fanin, top_tier)
            if run is None:
                return merges
            self._merge(run)
            merges += 1

    def _merge(self, run: list[Shard]) -> Path:
        arrays, index = [], {}
        for k, shard in enumerate(run):
            arr = _load(shard.path)
            arrays.append(arr)
            for row, raw in enumerate(arr["id"].tolist()):
                index[raw] = (k, row)  # later shards overwrite: last write wins
        width = max(a.dtype["id"].itemsize for a in arrays)
        dim = arrays[0].dtype["v"].shape[0]
        if any(a.dtype["v"].shape != (dim,) for a in arrays):
            raise ValueError(f"{self.folder}: shards of different dimensions under one key")
        picks: list[list[int]] = [[] for _ in arrays]
        for k, row in index.values():
            picks[k].append(row)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self._temp()
        path = self.folder / f"{run[-1].ns:020d}-{run[0].tier + 1}-{uuid.uuid4().hex[:12]}.npy"
        try:
            # written through a memory map: a merge of gigabytes needs no process memory for them
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=_dtype(width, dim),
                                            shape=(len(index),))
            pos = 0
            for arr, rows in zip(arrays, picks, strict=True):
                sel = np.sort(np.asarray(rows, dtype=np.int64))
                out["id"][pos:pos + len(sel)] = arr["id"][sel]
                out["v"][pos:pos + len(sel)] = arr["v"][sel]
                pos += len(sel)
            out.flush()
            del out
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            # same name position as the run's newest shard: later writes still sort after it;
            # a kill before the removals leaves duplicates of equal value, which is harmless
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        for shard in run:
            shard.path.unlink(missing_ok=True)
        return path

    def clean(self, max_age_s: float = TEMP_MAX_AGE_S) -> int:
        """Remove temporary files older than `max_age_s` (left by a killed writer)."""
        if not self.folder.is_dir():
            return 0
        return remove_stale(self.folder.glob(f"{_TEMP_PREFIX}*"), max_age_s)

    def nbytes(self) -> int:
        return sum(s.path.stat().st_size for s in self.shards())


def _load(path: Path) -> np.ndarray:
    try:
        if path.stat().st_size >= MMAP_BYTES:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise DamagedFile(f"{path}: not a readable vector shard ({exc}); remove it to recompute "
                          "its vectors") from exc
    if arr.ndim != 1 or arr.dtype.names != ("id", "v") or arr.dtype["v"].ndim != 1:
        raise DamagedFile(f"{path}: not a vector shard (an array of {arr.dtype} with shape "
                          f"{arr.shape}); remove it to recompute its vectors")
    return arr


def _first_full_run(shards: list[Shard], fanin: int, top_tier: int) -> list[Shard] | None:
    """The oldest `fanin` consecutive shards that share a tier below `top_tier`, if any."""
    i = 0
    while i < len(shards):
        j = i
        while j < len(shards) and shards[j].tier == shards[i].tier:
            j += 1
        if shards[i].tier < top_tier and j - i >= fanin:
            return shards[i:i + fanin]
        i = j
    return None


# --- where the cache lives, and the one-time move out of the signal cache ---------------------

def vectors_root(ws: Workspace) -> Path:
    return ws.artifacts / VECTORS_DIR


def vector_cache(ws: Workspace, key: str) -> VectorCache:
    """The cache of one embedding key (no legacy check: for writers)."""
    return VectorCache(vectors_root(ws) / key)


def open_vectors(ws: Workspace, key: str) -> VectorCache:
    """The cache of one embedding key, after moving any legacy rows out of the store."""
    move_legacy_embeddings(ws.store, vectors_root(ws))
    return vector_cache(ws, key)


def share_vectors(source: Workspace, target: Workspace, key: str) -> int:
    """Give `target` the shards of one key of `source` (hard links: shards are never modified,
    only replaced; a copy across file systems). Returns the shards added."""
    src, dst = vector_cache(source, key), vector_cache(target, key)
    dst.folder.mkdir(parents=True, exist_ok=True)
    added = 0
    for shard in src.shards():
        out = dst.folder / shard.path.name
        if out.exists():
            continue
        try:
            os.link(shard.path, out)
        except OSError:
            shutil.copy2(shard.path, out)
        added += 1
    return added


def move_legacy_embeddings(store: Store, root: Path) -> int:
    """Move the signal cache's "embedding" rows (base64 JSON) into vector shards; returns rows moved.

    Safe if interrupted: each key's rows become shards with fixed names (time 0, so anything
    computed later wins), written atomically and overwritten whole by a rerun; only then one
    transaction deletes the rows and records in `meta` that the move is done, so later calls
    cost one lookup."""
    import json

    with store.read() as con:
        if con.execute("SELECT 1 FROM meta WHERE key = ?", [MOVED_META]).fetchall():
            return 0
        keys = [k for (k,) in con.execute(
            "SELECT DISTINCT cache_key FROM signal_cache WHERE signal = ? ORDER BY 1",
            [LEGACY_SIGNAL]).fetchall()]
        moved = 0
        for key in keys:
            cache = VectorCache(root / key)
            result = con.execute(
                "SELECT sample_id, payload FROM signal_cache WHERE signal = ? AND cache_key = ? "
                "ORDER BY sample_id", [LEGACY_SIGNAL, key])
            part = 0
            while rows := result.fetchmany(LEGACY_CHUNK):  # one chunk of decoded vectors at a time
                matrix = np.stack([decode_vector(json.loads(p)["v"]) for _, p in rows])
                cache._write(shard_array([sid for sid, _ in rows], matrix), 0, TOP_TIER,
                             tag=f"legacy{part:06d}")
                moved += len(rows)
                part += 1
    with store.write() as con:
        if keys:
            con.execute(f"DELETE FROM signal_cache WHERE signal = ? AND cache_key IN "
                        f"({', '.join('?' * len(keys))})", [LEGACY_SIGNAL, *keys])
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [MOVED_META, "1"])
    return moved
