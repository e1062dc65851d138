"""faiss backends: IndexFlatIP (exact, same answers as the torch search) and IVF (approximate).

IVF is for very large sets (>= APPROX_MIN_ROWS): the caller measures its recall against the exact
search on a sample of queries and reports it, so an approximate answer is never silent.
"""

from __future__ import annotations

import math

import numpy as np

from middo_core.progress import ProgressFn, report


def available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "the faiss kNN backend needs faiss: pip install 'middo-studio[faiss-cpu]' "
            "(or [faiss-gpu])") from exc
    return faiss


def _drop_self(idx: np.ndarray, sims: np.ndarray, rows: np.ndarray, k: int):
    """From k+1 results per row, drop the row itself (or the last one when self is not listed)."""
    is_self = idx == rows[:, None]
    keep = ~is_self
    # rows where self did not come back (ties with duplicates, or IVF misses): drop the last
    missing = ~is_self.any(axis=1)
    keep[missing, -1] = False
    out_idx = idx[keep].reshape(idx.shape[0], -1)[:, :k]
    out_sim = sims[keep].reshape(idx.shape[0], -1)[:, :k]
    return out_idx, out_sim


def _search_batched(index, emb: np.ndarray, k: int, block: int, exclude_self: bool,
                    progress: ProgressFn | None, stage: str):
    n = emb.shape[0]
    k_eff = min(k, n - 1 if exclude_self else n)
    out_idx = np.empty((n, k_eff), np.int64)
    out_sim = np.empty((n, k_eff), np.float32)
    ask = min(n, k_eff + 1) if exclude_self else k_eff
    for s in range(0, n, block):
        e = min(n, s + block)
        sims, idx = index.search(emb[s:e], ask)
        if exclude_self:
            idx, sims = _drop_self(idx, sims, np.arange(s, e), k_eff)
        out_idx[s:e], out_sim[s:e] = idx, sims
        report(progress, stage, e, n)
    return out_idx, out_sim


def flat_topk(emb: np.ndarray, k: int, block: int = 4096, exclude_self: bool = True,
              progress: ProgressFn | None = None, stage: str = "diversity: nearest neighbours"):
    """Exact inner-product top-k with faiss IndexFlatIP (`emb` L2-normalized float32)."""
    faiss = _faiss()
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    return _search_batched(index, emb, k, block, exclude_self, progress, stage)


def build_ivf(emb: np.ndarray, nlist: int | None = None, train_size: int = 100_000,
              niter: int = 10, seed: int = 0):
    """An inverted-file index (IVF-Flat, inner product) over `emb` (L2-normalized float32)."""
    faiss = _faiss()
    n, d = emb.shape
    nlist = nlist or max(16, int(4 * math.sqrt(n)))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = niter
    index.cp.seed = seed
    rng = np.random.default_rng(seed)
    train = emb[np.sort(rng.choice(n, size=min(n, max(train_size, 40 * nlist)), replace=False))]
    index.train(train)
    index.add(emb)
    return index


def ivf_search(index, emb: np.ndarray, k: int, nprobe: int, rows: np.ndarray | None = None,
               block: int = 16384, progress: ProgressFn | None = None,
               stage: str = "diversity: nearest neighbours (approximate)"):
    """Search `rows` (default: all) of `emb` in the IVF index, self excluded."""
    index.nprobe = nprobe
    if rows is None:
        return _search_batched(index, emb, k, block, True, progress, stage)
    sims, idx = index.search(emb[rows], min(emb.shape[0], k + 1))
    return _drop_self(idx, sims, rows, min(k, emb.shape[0] - 1))
