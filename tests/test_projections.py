"""Maps of the embeddings, and the drawing helpers behind the Studio's charts."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from middo_core import summaries
from middo_core.projections import ProjectionError, ensure_projection, project, umap_seconds
from middo_core.sample import Sample
from middo_core.store.samples import add_members, insert_samples, samples_frame


def clusters(n_per: int = 60, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(2, dim)) * 5
    labels = np.repeat([0, 1], n_per)
    return centers[labels] + rng.normal(size=(2 * n_per, dim)) * 0.3, labels


def separated(xy: np.ndarray, labels: np.ndarray) -> bool:
    a, b = xy[labels == 0], xy[labels == 1]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    spread = max(a.std(0).max(), b.std(0).max())
    return gap > 3 * spread


def test_tsne_keeps_clusters_apart_even_when_fitted_on_a_subsample():
    matrix, labels = clusters(n_per=30)
    xy = project(matrix, "tsne", max_fit=30)  # half the points are placed, not fitted
    assert xy.shape == (60, 2) and np.isfinite(xy).all()
    assert separated(xy, labels)


@pytest.mark.slow
def test_umap_transforms_points_beyond_the_fitted_subsample():
    matrix, labels = clusters()
    xy = project(matrix, "umap", max_fit=80)
    assert separated(xy, labels)


@pytest.mark.slow
@pytest.mark.parametrize("n_per", [60, 2100])  # exact neighbours; from 4,096 fitted, UMAP's index
def test_the_fast_path_places_the_rest_at_their_nearest_fitted_points(n_per):
    matrix, labels = clusters(n_per=n_per)
    fit = 80 if n_per == 60 else 4100
    xy = project(matrix, "umap", max_fit=fit, placement="neighbours")
    assert xy.shape == (2 * n_per, 2) and np.isfinite(xy).all()
    assert separated(xy, labels)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a thread limit is only seen with two or more cores")
def test_a_map_leaves_a_process_limited_to_one_thread_training_on_one_thread():
    # a worker started with OMP_NUM_THREADS=1 draws its map at the end of a diagnosis, then
    # trains: UMAP's numba kernels had set its OpenMP count to every core, and torch followed
    script = """
import numpy as np, torch
from middo_core.projections import project
before = torch.get_num_threads()
rng = np.random.default_rng(0)
project(rng.normal(size=(120, 16)).astype(np.float32), "umap")
print(before, torch.get_num_threads())
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=600, check=True).stdout.split()
    assert out[-2:] == ["1", "1"]


def test_the_estimate_knows_the_fast_path_and_a_warm_cache():
    n = 1_000_000
    assert umap_seconds(n, placement="neighbours") < umap_seconds(n, placement="transform") / 3
    assert umap_seconds(5000, cached=True) < umap_seconds(5000, cached=False) - 20
    with pytest.raises(ProjectionError, match="unknown placement"):
        project(np.zeros((10, 3)), "umap", placement="pca")


def test_bad_requests_read_as_sentences():
    with pytest.raises(ProjectionError, match="unknown projection method"):
        project(np.zeros((10, 3)), "pca")
    with pytest.raises(ProjectionError, match="at least 5 samples"):
        project(np.zeros((3, 3)), "tsne")


def test_projection_is_computed_once_and_stored(workspace_factory):
    ws = workspace_factory()
    matrix, _ = clusters(n_per=10)
    samples = [Sample(instruction=f"q{i}", output=f"a{i}") for i in range(len(matrix))]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        add_members(con, 0, [s.id for s in samples])
    calls = []

    def loader(ws_, iteration):
        calls.append(iteration)
        return [s.id for s in samples], matrix

    first = ensure_projection(ws, 0, "tsne", loader=loader)
    again = ensure_projection(ws, 0, "tsne", loader=loader)
    assert len(calls) == 1 and len(first) == len(samples)
    assert np.allclose(first[["x", "y"]].to_numpy(), again[["x", "y"]].to_numpy())
    assert set(first["origin"]) == {"seed"}


def test_histogram_bins_are_shared_and_ignore_missing_values():
    a = np.array([0.0, 1.0, np.nan, 2.0])
    b = np.array([3.0, 4.0])
    edges = summaries.shared_edges(a, b, bins=4)
    assert edges[0] == 0.0 and edges[-1] == 4.0
    assert summaries.histogram(a, edges).sum() == 3


def test_drawing_subset_keeps_every_flagged_point():
    keep = np.zeros(200_000, dtype=bool)
    keep[::10] = True
    idx = summaries.drawing_subset(200_000, keep, max_points=50_000)
    assert idx.size == 50_000 and np.all(np.diff(idx) > 0)
    assert keep[idx].sum() == keep.sum()
    assert summaries.drawing_subset(10, None, max_points=50).tolist() == list(range(10))
    # when nearly everything is flagged, unflagged context still gets a quarter of the budget
    mostly = np.ones(200_000, dtype=bool)
    mostly[:40_000] = False
    idx = summaries.drawing_subset(200_000, mostly, max_points=50_000)
    assert idx.size == 50_000 and (~mostly[idx]).sum() == 12_500


def test_flag_labels_name_the_axis_or_several():
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    masks = {"complexity": np.array([True, True, False, False]),
             "quality": np.array([False, True, False, False])}
    labels = summaries.flag_labels(ids, masks, np.array(["d", "a", "b", "x"], dtype=object))
    assert labels.tolist() == ["not flagged", "complexity", "several axes", "not flagged"]
