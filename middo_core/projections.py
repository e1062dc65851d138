"""2-D maps of the stored embeddings (UMAP, t-SNE), computed once per iteration and cached.

Large sets are fitted on a subsample: UMAP transforms the rest; t-SNE has no transform, so each
remaining point is placed at the similarity-weighted mean of its nearest fitted points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from middo_core.progress import ProgressFn, report
from middo_core.store.projections import get_projection, projection_size, put_projection
from middo_core.workspace import Workspace

METHODS = ("umap", "tsne")
MAX_FIT = 20_000
PLACE_K = 5


class ProjectionError(RuntimeError):
    pass


EmbeddingLoader = Callable[[Workspace, int], tuple[list[str], np.ndarray]]


def _default_loader(ws: Workspace, iteration: int) -> tuple[list[str], np.ndarray]:
    try:
        from middo_core.signals.diversity import load_embeddings
    except ImportError as exc:  # the diversity signal is not installed in this build
        raise ProjectionError("embeddings cannot be loaded: the diversity signal is missing") from exc
    try:
        ids, matrix = load_embeddings(ws, iteration)
    except FileNotFoundError as exc:
        raise ProjectionError(
            f"no embeddings for iteration {iteration}: run the diversity diagnosis first") from exc
    return list(ids), np.asarray(matrix, dtype=np.float32)


def project(matrix: np.ndarray, method: str = "umap", max_fit: int = MAX_FIT, seed: int = 0,
            progress: ProgressFn | None = None) -> np.ndarray:
    """(n, d) embeddings -> (n, 2) coordinates."""
    if method not in METHODS:
        raise ProjectionError(f"unknown projection method {method!r} (use {' or '.join(METHODS)})")
    n = matrix.shape[0]
    if n < 5:
        raise ProjectionError(f"a map needs at least 5 samples with embeddings, found {n}")
    stage = f"{method} map"
    rng = np.random.default_rng(seed)
    fit_idx = np.sort(rng.choice(n, size=max_fit, replace=False)) if n > max_fit else np.arange(n)
    fit = matrix[fit_idx]
    report(progress, stage, 0, 3, f"fitting on {fit_idx.size:,} of {n:,} points")
    if method == "umap":
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, fit.shape[0] - 1), metric="cosine",
                            random_state=seed, n_jobs=1, init="spectral" if fit.shape[0] > 50 else "random")
        fitted = reducer.fit_transform(fit)
    else:
        from sklearn.manifold import TSNE

        fitted = TSNE(n_components=2, perplexity=min(30.0, (fit.shape[0] - 1) / 3), init="pca",
                      metric="cosine", random_state=seed).fit_transform(fit)
    report(progress, stage, 2, 3, "placing the remaining points")
    out = np.empty((n, 2), dtype=np.float64)
    out[fit_idx] = fitted
    if fit_idx.size < n:
        rest = np.setdiff1d(np.arange(n), fit_idx)
        if method == "umap":
            out[rest] = reducer.transform(matrix[rest])
        else:
            out[rest] = _place(matrix[rest], fit, fitted)
    report(progress, stage, 3, 3)
    return out


def _place(points: np.ndarray, fit: np.ndarray, fitted: np.ndarray, k: int = PLACE_K,
           block: int = 4096) -> np.ndarray:
    """Position each point at the similarity-weighted mean of its k nearest fitted points."""
    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    fit_u = unit(fit)
    out = np.empty((points.shape[0], 2))
    for start in range(0, points.shape[0], block):
        sims = unit(points[start:start + block]) @ fit_u.T
        nn = np.argpartition(-sims, kth=min(k, sims.shape[1] - 1), axis=1)[:, :k]
        w = np.maximum(np.take_along_axis(sims, nn, axis=1), 1e-6)
        out[start:start + block] = (fitted[nn] * w[..., None]).sum(1) / w.sum(1, keepdims=True)
    return out


def ensure_projection(ws: Workspace, iteration: int, method: str = "umap", recompute: bool = False,
                      progress: ProgressFn | None = None, max_fit: int = MAX_FIT,
                      loader: EmbeddingLoader | None = None) -> pd.DataFrame:
    """The map of `iteration` by `method`, computed and stored on first use."""
    with ws.store.read() as con:
        stored = projection_size(con, iteration, method)
    if stored and not recompute:
        return load_projection(ws, iteration, method)
    ids, matrix = (loader or _default_loader)(ws, iteration)
    xy = project(matrix, method, max_fit=max_fit, seed=ws.config.seed, progress=progress)
    with ws.store.write() as con:
        put_projection(con, iteration, method, ids, xy)
    return load_projection(ws, iteration, method)


def load_projection(ws: Workspace, iteration: int, method: str = "umap") -> pd.DataFrame:
    """The stored map (empty frame when it was never computed)."""
    with ws.store.read() as con:
        return get_projection(con, iteration, method)
