"""Diagnosis keeps its embeddings in the vector cache: reruns read them back, old workspaces move."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from middo_core.diagnose import diagnose
from middo_core.models.loader import model_fingerprint
from middo_core.models.source import ModelSource
from middo_core.sample import Sample
from middo_core.signals.complexity import ComplexitySignal
from middo_core.signals.diversity import load_embeddings
from middo_core.store import vectors as V
from middo_core.store.iterations import upsert_iteration
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.store.signals import load_signals, put_cached
from middo_core.store.vectors import encode_vector, vector_cache, vectors_root

SIGNALS = ("complexity", "diversity")


@pytest.fixture
def ws(workspace_factory, tiny_model):
    ws = workspace_factory("emb", base_model=tiny_model)
    samples = [Sample(instruction=f"Name a fact about the number {i}.", output=f"{i} is {i % 2 and 'odd' or 'even'}.")
               for i in range(20)]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        set_members(con, 0, [s.id for s in samples])
    return ws


def _emb_key(ws, model: str) -> str:
    cfg = ws.config.signals
    signal = ComplexitySignal(prompt_format=cfg.prompt_format, max_len=cfg.max_len)
    return signal.keys(model_fingerprint(model), ModelSource().tokenizer(model))[1]


def _signals(ws):
    with ws.store.read() as con:
        return load_signals(con, 0).set_index("sample_id")


def _cache_rows(ws, signal: str) -> int:
    with ws.store.read() as con:
        return con.execute("SELECT count(*) FROM signal_cache WHERE signal = ?", [signal]).fetchall()[0][0]


def test_a_rerun_reads_embeddings_from_the_vector_cache_and_computes_nothing(ws, tiny_model):
    first = diagnose(ws, 0, signals=SIGNALS)
    key = _emb_key(ws, tiny_model)
    cache = vector_cache(ws, key)
    assert len(cache.ids()) == 20 and cache.shards()
    assert _cache_rows(ws, "embedding") == 0 and _cache_rows(ws, "loss") == 20  # none in the store
    ids, unit = load_embeddings(ws, 0)
    source = ModelSource()
    again = diagnose(ws, 0, signals=SIGNALS, source=source)
    assert again.computed_total == 0 and source.loads == 0 and first.computed["post"] == 20
    ids2, unit2 = load_embeddings(ws, 0)
    assert ids2 == ids and np.array_equal(unit2, unit)  # the same vectors, bit for bit
    # without its vectors the post pass runs again: they did come from the vector cache
    shutil.rmtree(cache.folder)
    assert diagnose(ws, 0, signals=SIGNALS).computed["post"] == 20


def test_a_new_checkpoint_gets_its_own_vectors(ws, tiny_model, tiny_model_b):
    diagnose(ws, 0, signals=SIGNALS)
    with ws.store.write() as con:
        upsert_iteration(con, 0, model=tiny_model_b)
    rep = diagnose(ws, 0, signals=SIGNALS)
    assert rep.computed["post"] == 20  # nothing of the base model's vectors reused
    a, b = vector_cache(ws, _emb_key(ws, tiny_model)), vector_cache(ws, _emb_key(ws, tiny_model_b))
    assert a.folder != b.folder and a.ids() == b.ids()
    sid = next(iter(a.ids()))
    assert not np.allclose(a.get([sid])[sid], b.get([sid])[sid])


def test_a_workspace_from_before_the_vector_cache_is_served_without_recomputing(ws, tiny_model):
    """Diagnose, then turn the workspace into what earlier versions left (base64 rows in the
    store, no vector folder): the next diagnosis moves the rows and computes nothing."""
    diagnose(ws, 0, signals=SIGNALS)
    before = _signals(ws)
    key = _emb_key(ws, tiny_model)
    vectors = vector_cache(ws, key).get(before.index)
    shutil.rmtree(vectors_root(ws))
    with ws.store.write() as con:
        con.execute("DELETE FROM meta WHERE key = ?", [V.MOVED_META])
        put_cached(con, "embedding", key, [(sid, {"v": encode_vector(v)}) for sid, v in vectors.items()])
    source = ModelSource()
    rep = diagnose(ws, 0, signals=SIGNALS, source=source)
    assert rep.computed_total == 0 and source.loads == 0
    assert _cache_rows(ws, "embedding") == 0 and len(vector_cache(ws, key).ids()) == 20
    after = _signals(ws)
    np.testing.assert_array_equal(after["diversity"], before["diversity"])
    assert after["neighbours"].tolist() == before["neighbours"].tolist()


def test_the_map_reads_the_diagnosis_vectors_from_the_cache_with_no_second_copy(ws, tiny_model):
    from middo_core.knn import normalize
    from middo_core.signals.diversity import embeddings_meta
    from middo_core.variants import create_variant

    diagnose(ws, 0, signals=SIGNALS)
    folder = ws.artifacts / "embeddings"
    key = _emb_key(ws, tiny_model)
    assert embeddings_meta(ws, 0)["vectors"] == key and not list(folder.glob("*.npy"))
    ids, unit = load_embeddings(ws, 0)
    assert ids == _signals(ws).index.tolist() or sorted(ids) == sorted(_signals(ws).index)
    np.testing.assert_array_equal(unit, normalize(vector_cache(ws, key).matrix(ids)))
    # an ablation variant starts from D(0)'s diagnosis: its map has the same vectors
    child = create_variant(ws, random_control=True)
    child_ids, child_unit = load_embeddings(child, 0)
    assert child_ids == ids and np.array_equal(child_unit, unit)
    # vectors gone from the cache: a clear error that says what to do, not a wrong map
    shutil.rmtree(vector_cache(ws, key).folder)
    with pytest.raises(FileNotFoundError, match="diagnose again"):
        load_embeddings(ws, 0)


def test_a_workspace_with_the_older_normalized_copy_still_maps(ws):
    import json

    folder = ws.artifact_dir("embeddings")
    unit = np.eye(3, 4, dtype=np.float32)
    np.save(folder / "iter_0.npy", unit)
    (folder / "iter_0_ids.json").write_text(json.dumps(["a", "b", "c"]))
    (folder / "iter_0.json").write_text(json.dumps({"model": "old", "n": 3, "dim": 4}))
    ids, matrix = load_embeddings(ws, 0)
    assert ids == ["a", "b", "c"] and np.array_equal(matrix, unit)
