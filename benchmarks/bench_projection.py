"""How long the projection job takes on a workspace's embeddings, against `umap_seconds`.

    nice -n 19 python -m benchmarks.bench_projection ROOT [--placement transform neighbours]
                                                     [--quality 5000]

ROOT: a workspace with recorded embeddings of D(0), e.g. one written by
`benchmarks.synth_workspace --embedding-dim 576`. For each placement it runs the job's work
(`projections.project`, the map is not stored), prints the fit and placing times from the
progress steps, the estimate, and on a random subsample of the placed points how well the map
keeps neighbourhoods: sklearn's trustworthiness (15 neighbours, cosine) and the share of each
point's 15 nearest neighbours in the embeddings that are among its 15 nearest on the map.
Prints the machine's load at the start and the end.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from middo_core.numba_cache import umap_kernels_cached
from middo_core.projections import MAX_FIT, project, umap_seconds
from middo_core.signals.diversity import load_embeddings
from middo_core.workspace import open_workspace


def load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def neighbourhoods(emb: np.ndarray, xy: np.ndarray, k: int = 15) -> tuple[float, float]:
    """(trustworthiness, kNN preservation) of the map `xy` of the rows `emb`."""
    from sklearn.manifold import trustworthiness

    trust = trustworthiness(emb, xy, n_neighbors=k, metric="cosine")
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    near_emb = np.argsort(-sims, axis=1)[:, :k]
    d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    near_map = np.argsort(d2, axis=1)[:, :k]
    kept = np.mean([np.intersect1d(a, b).size / k for a, b in zip(near_emb, near_map, strict=True)])
    return float(trust), float(kept)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--placement", nargs="+", default=["transform", "neighbours"])
    parser.add_argument("--quality", type=int, default=5000, help="placed points scored (0: none)")
    args = parser.parse_args(argv)
    print(f"load at start: {load()}  (cores: {os.cpu_count()}, umap kernels cached: "
          f"{umap_kernels_cached()})", flush=True)
    started = time.perf_counter()
    ids, matrix = load_embeddings(open_workspace(args.root), 0)
    n = len(ids)
    print(f"{n:,} embeddings of {matrix.shape[1]} dimensions loaded in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    fit_idx = np.sort(np.random.default_rng(0).choice(n, size=MAX_FIT, replace=False)) if n > MAX_FIT else np.arange(n)
    placed = np.setdiff1d(np.arange(n), fit_idx)
    scored = np.sort(np.random.default_rng(1).choice(placed, size=min(args.quality, placed.size), replace=False))
    for placement in args.placement:
        marks: dict[str, float] = {}
        t0 = time.perf_counter()

        def progress(step, t0=t0, marks=marks, placement=placement):
            now, done, total = time.perf_counter() - t0, step.done, step.total
            if done == 1:
                marks["fit"] = now
            if done > 1 and (done - 1) % 10 == 0:
                print(f"  {placement}: {done - 1}/{total - 1} blocks placed at {now:.0f} s "
                      f"(load {load()})", flush=True)

        xy = project(matrix, "umap", seed=0, progress=progress, placement=placement)
        total = time.perf_counter() - t0
        line = (f"{placement}: {total:.1f} s in all (fit {marks.get('fit', 0):.1f} s, placing "
                f"{total - marks.get('fit', 0):.1f} s); estimate {umap_seconds(n, placement=placement):.0f} s")
        if scored.size:
            emb = np.asarray(matrix[scored], dtype=np.float32)
            trust, kept = neighbourhoods(emb, xy[scored])
            line += f"; on {scored.size:,} placed points trustworthiness {trust:.3f}, kNN kept {kept:.3f}"
        print(line + f"  (load {load()})", flush=True)
    print(f"load at end: {load()}", flush=True)


if __name__ == "__main__":
    main()
