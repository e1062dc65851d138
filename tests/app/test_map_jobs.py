"""Maps computed as background jobs: progress, the stored result, cancel, and the Map page around it."""

from __future__ import annotations

import numpy as np
import pytest
from studio_helpers import open_app, texts, wait_final

from middo_core.jobs import cancel_job, start_job
from middo_core.projections import embeddings_available, load_projection

pytestmark = pytest.mark.slow  # each job is a fresh worker process (imports, then t-SNE)


def save_clustered_embeddings(ws, ids: list[str], dim: int = 16, seed: int = 0) -> None:
    from middo_core.signals.diversity import save_embeddings
    from middo_core.store.vectors import vector_cache

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, dim)) * 4
    matrix = centers[np.arange(len(ids)) % 3] + rng.normal(size=(len(ids), dim)) * 0.3
    vector_cache(ws, "test-key").put(ids, matrix.astype(np.float32))
    save_embeddings(ws, 0, ids, "test-key", dim, {"model": "test"})


def test_the_projection_job_stores_the_map_with_progress(studio_ws):
    ws, samples = studio_ws
    ids = [s.id for s in samples]
    save_clustered_embeddings(ws, ids)
    run_id = start_job(ws, "projection", 0, {"method": "tsne", "max_fit": 200})
    final = wait_final(ws, run_id)
    assert final["status"] == "done", final["log_tail"]
    assert final["result"] == {"iteration": 0, "method": "tsne", "points": len(ids)}
    prog = final["progress"]  # one step for the fit, one per block of placed points
    assert prog["stage"] == "tsne map" and prog["done"] == prog["total"] == 2
    stored = load_projection(ws, 0, "tsne")
    assert sorted(stored["sample_id"]) == sorted(ids) and np.isfinite(stored[["x", "y"]].to_numpy()).all()


def test_a_projection_job_can_be_cancelled_and_stores_nothing(studio_ws):
    ws, samples = studio_ws
    save_clustered_embeddings(ws, [s.id for s in samples])
    run_id = start_job(ws, "projection", 0, {"method": "tsne"})
    status = cancel_job(ws, run_id, grace_s=30)
    assert status["status"] == "cancelled" and status["alive"] is False
    assert load_projection(ws, 0, "tsne").empty


def test_the_map_page_computes_a_map_in_the_background(studio_ws):
    ws, samples = studio_ws
    at = open_app(ws.root, "map")
    assert "diversity diagnosis" in texts(at) and not any(b.label.startswith("Compute") for b in at.button)

    save_clustered_embeddings(ws, [s.id for s in samples])
    assert embeddings_available(ws, 0)
    at.segmented_control(key="map_method").set_value("tsne").run()
    assert "No t-SNE map for iteration 0 yet" in texts(at)
    at.button(key="compute_map_tsne").click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)  # the page returns at once: the job's panel, not the map
    assert "Job " in shown and "No t-SNE map" not in shown
    assert any(b.label == "Cancel" for b in at.button)
    with ws.store.read() as con:
        run_id = con.execute("SELECT id FROM runs WHERE kind = 'projection'").fetchall()[0][0]
    assert wait_final(ws, run_id)["status"] == "done"
    at.run()
    assert not at.exception
    assert "Draw a lasso" in texts(at) and len(at.get("plotly_chart")) == 1


def test_the_stored_map_stays_drawn_while_a_new_one_is_computed(studio_ws):
    from middo_core.store.projections import put_projection

    ws, samples = studio_ws
    ids = [s.id for s in samples]
    save_clustered_embeddings(ws, ids)
    with ws.store.write() as con:
        put_projection(con, 0, "umap", ids, np.random.default_rng(0).normal(size=(len(ids), 2)))
    run_id = start_job(ws, "projection", 0, {"method": "umap", "recompute": True})
    try:
        at = open_app(ws.root, "map")
        assert not at.exception, [e.value for e in at.exception]
        shown = texts(at)
        assert len(at.get("plotly_chart")) == 1 and "Draw a lasso" in shown  # the old map, usable
        assert "stays usable until a new one replaces it" in shown and "Job " in shown  # page and banner
    finally:
        cancel_job(ws, run_id, grace_s=30)
