"""The embedding cache: base64 JSON rows in DuckDB (before) vs float32 shards (the vector cache).

    python -m benchmarks.bench_vectors [--n 200000] [--dim 576] [--checkpoint 512] [--docs]

Both ways write the same checkpoints a diagnosis writes (every `--checkpoint` samples: their loss
rows in one store transaction, and their embeddings), then read every embedding back as the rerun
does (and stack them into the kNN matrix), then read every loss back (the other queries the
embedding rows used to slow down). Bytes on disk: the DuckDB file (after its final checkpoint)
plus the vector shards. The last rows scale the measured numbers linearly by bytes to 1M x 4096.
--docs rewrites "## Vector cache (embeddings)" in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks.docs import replace_section

SECTION = "## Vector cache (embeddings)"
LOSS_KEY, EMB_KEY = "loss0000000000000", "emb00000000000000"
TARGET = (1_000_000, 4096)
WAYS = ("no embeddings", "json in duckdb", "vector cache")  # the first: the losses alone


def _data(n: int, dim: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    ids = [f"{i:016x}" for i in rng.permutation(n * 4)[:n]]  # sample ids are 16 hex digits
    return ids, rng.standard_normal((n, dim), dtype=np.float32)


def _store_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.glob("middo.duckdb*"))


def run_way(way: str, root: Path, ids: list[str], matrix: np.ndarray, checkpoint: int) -> dict:
    from middo_core.config import WorkspaceConfig
    from middo_core.store.signals import get_cached, put_cached
    from middo_core.store.vectors import encode_vector, vector_cache
    from middo_core.workspace import init_workspace

    ws = init_workspace(root, WorkspaceConfig(name=way))
    cache = vector_cache(ws, EMB_KEY)
    started = time.perf_counter()
    for s in range(0, len(ids), checkpoint):
        part, m = ids[s:s + checkpoint], matrix[s:s + checkpoint]
        loss = [(sid, {"loss": 1.0, "n": 10, "truncated": False, "empty": False, "tokens": 50})
                for sid in part]
        if way == "vector cache":  # the local executor's order: the shard, then the losses
            cache.put(part, m)
            cache.compact()
        with ws.store.write() as con:
            put_cached(con, "loss", LOSS_KEY, loss)
            if way == "json in duckdb":
                put_cached(con, "embedding", EMB_KEY, [(sid, {"v": encode_vector(v)})
                                                       for sid, v in zip(part, m, strict=True)])
    write_s = time.perf_counter() - started
    gc.collect()

    read_s, read_peak = 0.0, 0
    if way != "no embeddings":
        started = time.perf_counter()
        stacked = _read_all(way, ws, cache, ids)
        read_s = time.perf_counter() - started
        assert np.array_equal(stacked, matrix), way
        del stacked
        gc.collect()
        tracemalloc.start()  # a second read for memory: Python and numpy allocations, not mmap
        _read_all(way, ws, cache, ids)
        read_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        gc.collect()

    started = time.perf_counter()
    with ws.store.read() as con:
        assert len(get_cached(con, "loss", LOSS_KEY, ids)) == len(ids)
    loss_s = time.perf_counter() - started
    return {"way": way, "write_s": write_s, "read_s": read_s, "read_peak": read_peak,
            "loss_read_s": loss_s,
            "store_bytes": _store_bytes(root), "shard_bytes": cache.nbytes(),
            "shards": len(cache.shards())}


def _read_all(way: str, ws, cache, ids: list[str]) -> np.ndarray:
    """Every embedding back as the kNN matrix, as a rerun of the diagnosis reads it."""
    from middo_core.store.signals import get_cached
    from middo_core.store.vectors import decode_vector

    if way == "vector cache":
        got = cache.get(ids)
    else:
        with ws.store.read() as con:
            got = {k: decode_vector(p["v"]) for k, p in get_cached(con, "embedding", EMB_KEY, ids).items()}
    return np.stack([got[i] for i in ids])


def run(n: int, dim: int, checkpoint: int) -> list[dict]:
    ids, matrix = _data(n, dim)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_vectors_") as tmp:
        for way in WAYS:
            rows.append(run_way(way, Path(tmp) / way.replace(" ", "_"), ids, matrix, checkpoint))
    return rows


def _gb(b: float) -> str:
    return f"{b / 1e9:.2f} GB" if b >= 1e8 else f"{b / 1e6:.1f} MB"


def _secs(s: float) -> str:
    return f"{s:.1f} s" if s < 600 else f"{s / 60:.0f} min"


def table(rows: list[dict], n: int, dim: int) -> str:
    """Measured rows, then the embeddings' share (minus the losses-only run) scaled to 1M x 4096."""
    base = rows[0]
    scale = TARGET[0] * TARGET[1] / (n * dim)
    lines = [f"| {n:,} x {dim} | write (checkpoints) | read + stack | read peak (Python heap) | "
             "loss read | store file | vector shards |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        files = f" ({r['shards']} files)" if r["shards"] else ""
        read = _secs(r["read_s"]) if r["read_s"] else "-"
        peak = _gb(r["read_peak"]) if r["read_peak"] else "-"
        lines.append(f"| {r['way']} | {_secs(r['write_s'])} | {read} | {peak} | "
                     f"{_secs(r['loss_read_s'])} | {_gb(r['store_bytes'])} | "
                     f"{_gb(r['shard_bytes'])}{files} |")
    lines += ["", f"| {TARGET[0]:,} x {TARGET[1]} (embeddings' share x{scale:.1f}) | write | "
              "read + stack | read peak | bytes on disk |", "|---|---:|---:|---:|---:|"]
    for r in rows[1:]:
        extra = r["store_bytes"] - base["store_bytes"] + r["shard_bytes"]
        lines.append(f"| {r['way']} | {_secs(max(r['write_s'] - base['write_s'], 0) * scale)} | "
                     f"{_secs(r['read_s'] * scale)} | {_gb(r['read_peak'] * scale)} | "
                     f"{_gb(extra * scale)} |")
    return "\n".join(lines)


def write_docs(rows: list[dict], n: int, dim: int, checkpoint: int) -> None:
    base, old, new = rows
    raw = n * dim * 4
    body = (f"{SECTION}\n\n"
            f"Reproduce: `python -m benchmarks.bench_vectors --n {n} --dim {dim} --checkpoint "
            f"{checkpoint} --docs` ({platform.python_implementation()} {platform.python_version()}, "
            f"{mp.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end, "
            f"{time.strftime('%Y-%m-%d')}). Random float32 embeddings, {checkpoint} samples per "
            "checkpoint (each: its loss rows in one store transaction, and its embeddings); then "
            "every embedding read back and stacked into the kNN matrix, as a rerun does, from a "
            "warm page cache; then every loss read back. The 1M x 4096 rows scale the measured "
            "ones linearly by bytes (not run here: 16 GB of vectors).\n\n"
            + table(rows, n, dim) + "\n\n"
            f"Raw float32 is {_gb(raw)}: the shards hold {new['shard_bytes'] / raw:.3f}x that (a "
            f"16-byte id per row and the .npy headers), the JSON rows grew the store by "
            f"{(old['store_bytes'] - base['store_bytes']) / raw:.2f}x. Writing the embeddings is "
            f"{(old['write_s'] - base['write_s']) / max(new['write_s'] - base['write_s'], 1e-9):.1f}x "
            f"faster, reading them back "
            f"{old['read_s'] / new['read_s']:.1f}x with {old['read_peak'] / new['read_peak']:.1f}x less "
            "peak memory (the JSON text and the decoded vectors are held at once; the shards are "
            "mapped, so only the stacked matrix counts), and with the vectors out of the store the "
            "loss "
            f"lookup takes {new['loss_read_s']:.2f} s instead of {old['loss_read_s']:.2f} s. The "
            "vector cache write includes compaction (every vector is rewritten at most twice: 32 "
            "checkpoint shards -> one, 32 of those -> one).\n")
    replace_section(SECTION, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--checkpoint", type=int, default=512, help="samples per checkpoint")
    parser.add_argument("--docs", action="store_true", help=f"update {SECTION!r} in docs/BENCHMARKS.md")
    args = parser.parse_args()
    rows = run(args.n, args.dim, args.checkpoint)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(table(rows, args.n, args.dim))
    if args.docs:
        write_docs(rows, args.n, args.dim, args.checkpoint)


if __name__ == "__main__":
    main()
