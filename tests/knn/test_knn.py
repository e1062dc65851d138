"""Cosine kNN: the blocked torch search, faiss exact and brute force agree; self never listed."""

from __future__ import annotations

import numpy as np
import pytest

from middo_core.knn import faiss_backend, knn_search, normalize, topk_cosine
from middo_core.knn.exact import exact_topk

BACKENDS = ["torch", pytest.param("faiss", marks=pytest.mark.skipif(
    not faiss_backend.available(), reason="faiss is not installed"))]


def clustered(n: int, d: int = 32, centers: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d))
    return (c[rng.integers(0, centers, n)] + 0.4 * rng.normal(size=(n, d))).astype(np.float32)


def brute_force(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    unit = normalize(x).astype(np.float64)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(sims, idx, axis=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_with_brute_force(backend):
    x = clustered(1500)
    ref_idx, ref_sims = brute_force(x, 3)
    # small blocks and tiles so the running top-k merge across tiles is exercised
    idx, sims = topk_cosine(x, 3, block=128, backend=backend)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)
    assert (idx == ref_idx).mean() > 0.999  # only exact float ties may order differently


def test_tiles_smaller_than_the_data(monkeypatch):
    import middo_core.knn.exact as exact

    monkeypatch.setattr(exact, "TILE_BYTES", 4 * 64 * 50)  # tiles of 50 columns for 64-row blocks
    x = clustered(700)
    ref_idx, ref_sims = brute_force(x, 2)
    idx, sims = exact_topk(normalize(x), 2, block=64)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)
    assert (idx == ref_idx).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_is_never_a_neighbour_and_duplicates_score_one(backend):
    x = clustered(300)
    x[7] = x[42]  # an exact duplicate pair
    x[100] = x[101] = x[102]  # a triple
    result = knn_search(x, 2, backend=backend)
    assert not (result.idx == np.arange(300)[:, None]).any()
    assert result.idx[7, 0] == 42 and result.idx[42, 0] == 7
    assert result.sims[7, 0] == pytest.approx(1.0, abs=1e-5)
    for i in (100, 101, 102):
        assert set(result.idx[i]) == {100, 101, 102} - {i}
        assert result.sims[i].mean() == pytest.approx(1.0, abs=1e-5)


def test_tiny_inputs():
    idx, sims = topk_cosine(np.eye(3, 4, dtype=np.float32), 5, backend="torch")
    assert idx.shape == (3, 2)  # k is capped at n - 1
    idx, sims = topk_cosine(np.ones((1, 4), np.float32), 2, backend="torch")
    assert idx.shape == (1, 0)


@pytest.mark.skipif(not faiss_backend.available(), reason="faiss is not installed")
def test_approximate_search_reports_its_recall():
    x = clustered(20_000, d=16, centers=50)
    result = knn_search(x, 2, backend="faiss-ivf")
    assert not result.exact and result.backend == "faiss-ivf"
    assert result.recall is not None and result.recall >= 0.95  # nprobe raised until it is
    assert result.params["nprobe"] >= 8 and result.params["recall_queries"] == 1000
    assert not (result.idx == np.arange(len(x))[:, None]).any()


@pytest.mark.gpu
def test_gpu_search_gives_the_cpu_answers():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    x = clustered(5000)
    cpu = knn_search(x, 2, backend="torch", device="cpu")
    gpu = knn_search(x, 2)  # auto picks the exact search on the GPU
    assert gpu.backend == "torch" and gpu.exact and gpu.params["device"] == "cuda"
    np.testing.assert_allclose(gpu.sims, cpu.sims, atol=1e-5)
    assert (gpu.idx == cpu.idx).mean() > 0.999
