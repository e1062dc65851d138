"""2-D maps of the stored embeddings (UMAP, t-SNE), computed once per iteration and cached.

Large sets are fitted on a subsample (MAX_FIT points) and the rest placed on that map: UMAP
either transforms them (placement "transform") or, the fast path, puts each at the
similarity-weighted mean of its nearest fitted points, found in the neighbour index UMAP built
while fitting (placement "neighbours"); t-SNE has no transform, so it always places by
neighbours. Placing goes in blocks, each a progress step (and a point where a cancel request
stops the work). A map is computed in the background as the job kind "projection" (args: method,
recompute, placement).
A diagnosis of up to AUTO_MAP_LIMIT samples draws its UMAP map itself (middo_core.diagnose);
above that the Map page offers the job, with `umap_seconds` as the estimate of its length.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from middo_core.progress import ProgressFn, report
from middo_core.store.projections import get_projection, projection_size, put_projection
from middo_core.workspace import Workspace

METHODS = ("umap", "tsne")
PLACEMENTS = ("transform", "neighbours")  # how a UMAP map places the points it was not fitted on
DEFAULT_PLACEMENT = "neighbours"  # as good a map, ~9x faster to place (docs/SCALING.md)
MAX_FIT = 20_000
PLACE_K = 5
PLACE_BLOCK = 4096
AUTO_MAP_LIMIT = 50_000  # samples in D(i) up to which a diagnosis draws its UMAP map itself
# umap_seconds: numba compiles UMAP's kernels, and those of its approximate neighbour search
# (pynndescent, used from EXACT_BELOW points on), at their first use in an environment and keeps
# them on disk (middo_core.numba_cache); a later process loads them, except pynndescent's
# neighbour descent, which numba cannot cache and compiles in every process. Loading the
# embeddings grows linearly in the points, the fit in the fitted ones, placing in the placed
# ones. Constants of a 2-core CPU on 576-dimensional embeddings, the lower ends of what was
# measured (docs/BENCHMARKS.md, "Projection at 100k and 1M"): under load it takes longer.
UMAP_COMPILE_S = 12.0  # nothing cached yet
SEARCH_COMPILE_S = 34.0
CACHED_LOAD_S = 3.0  # kernels cached: loading them
SEARCH_EVERY_PROCESS_S = 12.0  # kernels cached: the neighbour descent compiled all the same
EXACT_BELOW = 4096  # umap-learn's own switch from exact to approximate neighbours
UMAP_FIT_S_PER_POINT = 0.8e-3
PLACE_S_PER_POINT = {"transform": 0.35e-3, "neighbours": 0.04e-3}
LOAD_S_PER_POINT = 0.03e-3  # the embeddings read from the vector cache


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


@contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """Puts torch's thread count back after a map. numba's OpenMP layer (UMAP's kernels) sets the
    process's OpenMP thread count to every core, and torch reads that count where it was given
    none of its own: after a diagnosis drew its map, a process started with OMP_NUM_THREADS=1
    trained on both cores (two such workers side by side trained ~2.4x slower)."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)


def project(matrix: np.ndarray, method: str = "umap", max_fit: int = MAX_FIT, seed: int = 0,
            progress: ProgressFn | None = None, placement: str | None = None) -> np.ndarray:
    """(n, d) embeddings -> (n, 2) coordinates. placement: how a UMAP map places the points it
    was not fitted on ("transform": UMAP's own; "neighbours": at their nearest fitted points;
    None: DEFAULT_PLACEMENT).
    t-SNE always places by neighbours. Leaves torch's thread count as it found it."""
    with _torch_threads_kept():
        return _project(matrix, method, max_fit, seed, progress, placement)


def _project(matrix: np.ndarray, method: str, max_fit: int, seed: int,
             progress: ProgressFn | None, placement: str | None) -> np.ndarray:
    if method not in METHODS:
        raise ProjectionError(f"unknown projection method {method!r} (use {' or '.join(METHODS)})")
    placement = placement or DEFAULT_PLACEMENT
    if placement not in PLACEMENTS:
        raise ProjectionError(f"unknown placement {placement!r} (use {' or '.join(PLACEMENTS)})")
    by_transform = method == "umap" and placement == "transform"
    n = matrix.shape[0]
    if n < 5:
        raise ProjectionError(f"a map needs at least 5 samples with embeddings, found {n}")
    stage = f"{method} map"
    rng = np.random.default_rng(seed)
    fit_idx = np.sort(rng.choice(n, size=max_fit, replace=False)) if n > max_fit else np.arange(n)
    fit = matrix[fit_idx]
    rest = np.setdiff1d(np.arange(n), fit_idx)
    blocks = -(-rest.size // PLACE_BLOCK)
    total = blocks + 1  # the fit is one step, each block of placed points another
    report(progress, stage, 0, total, f"fitting on {fit_idx.size:,} of {n:,} points")
    if method == "umap":
        import umap

        from middo_core.numba_cache import cache_umap_kernels

        cache_umap_kernels()
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, fit.shape[0] - 1), metric="cosine",
                            random_state=seed, n_jobs=1, init="spectral" if fit.shape[0] > 50 else "random")
        fitted = reducer.fit_transform(fit)
    else:
        from sklearn.manifold import TSNE

        fitted = TSNE(n_components=2, perplexity=min(30.0, (fit.shape[0] - 1) / 3), init="pca",
                      metric="cosine", random_state=seed).fit_transform(fit)
    out = np.empty((n, 2), dtype=np.float64)
    out[fit_idx] = fitted
    report(progress, stage, 1, total, f"placing the remaining {rest.size:,} points" if rest.size else "")
    for b in range(blocks):
        part = rest[b * PLACE_BLOCK:(b + 1) * PLACE_BLOCK]
        if by_transform:
            out[part] = reducer.transform(matrix[part])
        elif method == "umap" and getattr(reducer, "_knn_search_index", None) is not None:
            out[part] = _place_by_index(reducer._knn_search_index, matrix[part], fitted)
        else:
            out[part] = _place(matrix[part], fit, fitted)
        report(progress, stage, b + 2, total)
    report(progress, stage, total, total)
    return out


def umap_seconds(n: int, max_fit: int = MAX_FIT, placement: str | None = None,
                 cached: bool | None = None) -> float:
    """About how long a UMAP map of n points takes (see the constants above); cached: whether
    the compiled kernels are on disk already (None: look)."""
    if cached is None:
        from middo_core.numba_cache import umap_kernels_cached

        cached = umap_kernels_cached()
    fitted = min(n, max_fit)
    search = n >= EXACT_BELOW
    if cached:
        compile_s = CACHED_LOAD_S + (SEARCH_EVERY_PROCESS_S if search else 0.0)
    else:
        compile_s = UMAP_COMPILE_S + (SEARCH_COMPILE_S if search else 0.0)
    placing = (n - fitted) * PLACE_S_PER_POINT[placement or DEFAULT_PLACEMENT]
    return compile_s + n * LOAD_S_PER_POINT + fitted * UMAP_FIT_S_PER_POINT + placing


def _place(points: np.ndarray, fit: np.ndarray, fitted: np.ndarray, k: int = PLACE_K) -> np.ndarray:
    """Position each point at the similarity-weighted mean of its k nearest fitted points."""
    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    sims = unit(np.asarray(points, dtype=np.float32)) @ unit(np.asarray(fit, dtype=np.float32)).T
    nn = np.argpartition(-sims, kth=min(k, sims.shape[1] - 1), axis=1)[:, :k]
    w = np.maximum(np.take_along_axis(sims, nn, axis=1), 1e-6)
    return (fitted[nn] * w[..., None]).sum(1) / w.sum(1, keepdims=True)


def _place_by_index(index, points: np.ndarray, fitted: np.ndarray, k: int = PLACE_K) -> np.ndarray:
    """As `_place`, with the neighbours from the approximate index UMAP built while fitting
    (pynndescent, cosine distances): no pass over every fitted point."""
    nn, dist = index.query(np.asarray(points, dtype=np.float32), k=k)
    w = np.maximum(1.0 - dist, 1e-6)
    return (fitted[nn] * w[..., None]).sum(1) / w.sum(1, keepdims=True)


def ensure_projection(ws: Workspace, iteration: int, method: str = "umap", recompute: bool = False,
                      progress: ProgressFn | None = None, max_fit: int = MAX_FIT,
                      loader: EmbeddingLoader | None = None, placement: str | None = None) -> pd.DataFrame:
    """The map of `iteration` by `method`, computed and stored on first use."""
    with ws.store.read() as con:
        stored = projection_size(con, iteration, method)
    if stored and not recompute:
        return load_projection(ws, iteration, method)
    ids, matrix = (loader or _default_loader)(ws, iteration)
    xy = project(matrix, method, max_fit=max_fit, seed=ws.config.seed, progress=progress,
                 placement=placement)
    with ws.store.write() as con:
        put_projection(con, iteration, method, ids, xy)
    return load_projection(ws, iteration, method)


def load_projection(ws: Workspace, iteration: int, method: str = "umap", text_chars: int = 160) -> pd.DataFrame:
    """The stored map (empty frame when it was never computed)."""
    with ws.store.read() as con:
        return get_projection(con, iteration, method, text_chars)


def embeddings_available(ws: Workspace, iteration: int) -> bool:
    """Whether the diversity diagnosis stored the embeddings a map of `iteration` is drawn from."""
    try:
        from middo_core.signals.diversity import embeddings_recorded
    except ImportError:
        return False
    return embeddings_recorded(ws, iteration)


def projection_job(ws: Workspace, run_id: str, iteration: int | None, args: dict,
                   progress: ProgressFn | None) -> dict:
    """The background job "projection": compute and store the map of `iteration`."""
    if iteration is None:
        raise ProjectionError("a projection job needs an iteration")
    method = str(args.get("method", "umap"))
    frame = ensure_projection(ws, iteration, method, recompute=bool(args.get("recompute", False)),
                              progress=progress, max_fit=int(args.get("max_fit", MAX_FIT)),
                              placement=args.get("placement"))
    return {"iteration": iteration, "method": method, "points": len(frame)}
