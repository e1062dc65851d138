"""Choosing a kNN backend and reporting what it did (exact or approximate, with measured recall)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from middo_core.knn import faiss_backend
from middo_core.knn.exact import exact_topk
from middo_core.models.loader import pick_device
from middo_core.progress import ProgressFn, report

Backend = Literal["auto", "torch", "faiss", "faiss-ivf"]
APPROX_MIN_ROWS = 500_000  # below this an exact search is fast enough on a CPU
RECALL_QUERIES = 1000


@dataclass
class KnnResult:
    idx: np.ndarray  # (n, k) neighbour row indices, nearest first, never the row itself
    sims: np.ndarray  # (n, k) cosine similarities
    backend: str
    exact: bool
    recall: float | None = None  # approximate search: recall@k against exact on sampled queries
    params: dict = field(default_factory=dict)


def normalize(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32 (a zero row stays zero)."""
    emb = np.asarray(emb, dtype=np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return np.ascontiguousarray(emb / np.maximum(norms, 1e-12), dtype=np.float32)


def knn_search(emb: np.ndarray, k: int, block: int = 4096, backend: Backend = "auto",
               progress: ProgressFn | None = None, seed: int = 0,
               min_recall: float = 0.95, device: str = "auto") -> KnnResult:
    """Cosine top-k neighbours of every row among the other rows.

    auto: faiss when installed (exact below APPROX_MIN_ROWS rows, IVF above, its nprobe raised
    until recall@k against the exact search on sampled queries reaches min_recall, and that
    recall reported), else the exact blocked torch search. With a CUDA GPU (device auto or
    cuda), auto is the exact torch search on the GPU: faster than an approximate CPU index.
    """
    unit = normalize(emb)
    n = unit.shape[0]
    device = pick_device(device)
    if backend == "auto":
        if device.startswith("cuda") or not faiss_backend.available():
            backend = "torch"
        else:
            backend = "faiss-ivf" if n >= APPROX_MIN_ROWS else "faiss"
    if backend == "torch":
        idx, sims = exact_topk(unit, k, block=block, progress=progress, device=device)
        return KnnResult(idx, sims, "torch", exact=True, params={"device": device})
    if backend == "faiss":
        idx, sims = faiss_backend.flat_topk(unit, k, block=block, progress=progress)
        return KnnResult(idx, sims, "faiss-flat", exact=True)
    if backend == "faiss-ivf":
        return _approximate(unit, k, min_recall, seed, progress)
    raise ValueError(f"unknown kNN backend {backend!r} (use auto, torch, faiss or faiss-ivf)")


def _approximate(unit: np.ndarray, k: int, min_recall: float, seed: int,
                 progress: ProgressFn | None) -> KnnResult:
    """IVF search whose nprobe is raised until recall@k on sampled queries reaches min_recall."""
    stage = "diversity: nearest neighbours (approximate)"
    n = unit.shape[0]
    report(progress, stage, 0, n, "building the index")
    index = faiss_backend.build_ivf(unit, seed=seed)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(RECALL_QUERIES, n), replace=False))
    exact_idx, _ = exact_topk(unit, k, block=256, queries=rows)
    nprobe, recall = 8, 0.0
    while True:
        approx_idx, _ = faiss_backend.ivf_search(index, unit, k, nprobe, rows=rows)
        recall = _recall(approx_idx, exact_idx)
        if recall >= min_recall or nprobe >= index.nlist:
            break
        nprobe = min(index.nlist, nprobe * 2)
    idx, sims = faiss_backend.ivf_search(index, unit, k, nprobe, progress=progress, stage=stage)
    return KnnResult(idx, sims, "faiss-ivf", exact=False, recall=recall,
                     params={"nlist": int(index.nlist), "nprobe": int(nprobe),
                             "recall_queries": int(rows.size)})


def _recall(approx_idx: np.ndarray, exact_idx: np.ndarray) -> float:
    hits = sum(len(set(a) & set(e)) for a, e in zip(approx_idx, exact_idx, strict=True))
    return hits / max(1, exact_idx.size)


def topk_cosine(emb: np.ndarray, k: int, block: int = 4096,
                backend: Backend = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(idx, sims): each row's k most cosine-similar other rows, nearest first."""
    result = knn_search(emb, k, block=block, backend=backend)
    return result.idx, result.sims


def nearest_in(database: np.ndarray, queries: np.ndarray, k: int, block: int = 65536,
               exclude: np.ndarray | None = None) -> np.ndarray:
    """(q, k) cosine similarities of each query row to its k nearest rows of `database`, nearest
    first: exact, over blocks of the database, so memory stays q x block (few queries, any n).
    exclude: per query, a database row it may not list (-1: none)."""
    unit_q = normalize(queries)
    k = min(k, database.shape[0] - (exclude is not None))
    best = np.full((unit_q.shape[0], 0), -np.inf, dtype=np.float32)
    for start in range(0, database.shape[0], block):
        sims = unit_q @ normalize(database[start:start + block]).T
        if exclude is not None:
            hit = (exclude >= start) & (exclude < start + sims.shape[1])
            sims[np.flatnonzero(hit), exclude[hit] - start] = -np.inf
        both = np.concatenate([best, sims], axis=1)
        best = -np.sort(-both, axis=1)[:, :k]
    return best
