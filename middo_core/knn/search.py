"""Choosing a kNN backend and reporting what it did (exact or approximate, with measured recall)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from middo_core.knn import faiss_backend
from middo_core.knn.exact import exact_topk
from middo_core.progress import ProgressFn

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
               progress: ProgressFn | None = None, seed: int = 0) -> KnnResult:
    """Cosine top-k neighbours of every row among the other rows.

    auto: faiss when installed (exact below APPROX_MIN_ROWS rows, IVF above, with recall measured
    on sampled queries), else the exact blocked torch search.
    """
    unit = normalize(emb)
    n = unit.shape[0]
    if backend == "auto":
        if not faiss_backend.available():
            backend = "torch"
        else:
            backend = "faiss-ivf" if n >= APPROX_MIN_ROWS else "faiss"
    if backend == "torch":
        idx, sims = exact_topk(unit, k, block=block, progress=progress)
        return KnnResult(idx, sims, "torch", exact=True)
    if backend == "faiss":
        idx, sims = faiss_backend.flat_topk(unit, k, block=block, progress=progress)
        return KnnResult(idx, sims, "faiss-flat", exact=True)
    if backend == "faiss-ivf":
        idx, sims, params = faiss_backend.ivf_topk(unit, k, seed=seed, progress=progress)
        recall = measured_recall(unit, idx, k, seed=seed)
        return KnnResult(idx, sims, "faiss-ivf", exact=False, recall=recall, params=params)
    raise ValueError(f"unknown kNN backend {backend!r} (use auto, torch, faiss or faiss-ivf)")


def measured_recall(unit: np.ndarray, approx_idx: np.ndarray, k: int,
                    queries: int = RECALL_QUERIES, seed: int = 0) -> float:
    """recall@k of `approx_idx` against the exact search on a random sample of query rows."""
    n = unit.shape[0]
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(queries, n), replace=False))
    exact_idx, _ = exact_topk(unit, k, block=256, queries=rows)
    hits = sum(len(set(approx_idx[r]) & set(e)) for r, e in zip(rows, exact_idx, strict=True))
    return hits / max(1, exact_idx.size)


def topk_cosine(emb: np.ndarray, k: int, block: int = 4096,
                backend: Backend = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(idx, sims): each row's k most cosine-similar other rows, nearest first."""
    result = knn_search(emb, k, block=block, backend=backend)
    return result.idx, result.sims
