"""diagnose(): signals stored per sample id, cache reuse, new models recompute, cancel and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from middo_core.diagnose import STAGE_POST, DiagnoseError, diagnose
from middo_core.models.source import ModelSource
from middo_core.progress import Cancelled
from middo_core.sample import Sample
from middo_core.signals.diversity import load_embeddings
from middo_core.store.iterations import get_iteration, upsert_iteration
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.store.signals import load_signals

TOPICS = ["cooking pasta", "the French revolution", "prime numbers", "photosynthesis", "tax forms",
          "knitting a scarf", "black holes", "sorting algorithms", "tennis rules", "volcanoes"]


def make_samples(n: int) -> list[Sample]:
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        out.append(Sample(instruction=f"Explain {topic} to a beginner (question {i}).",
                          input="Keep it short." if i % 3 == 0 else "",
                          output=f"{topic.capitalize()} is a topic with many parts; part {i} is simple."))
    return out


def fill(ws, samples: list[Sample], iteration: int = 0) -> None:
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        set_members(con, iteration, [s.id for s in samples])


@pytest.fixture
def ws(workspace_factory, tiny_model):
    ws = workspace_factory("diag", base_model=tiny_model)
    fill(ws, make_samples(24) + [Sample(instruction="Say nothing at all.", output="")])
    return ws


def test_signals_are_stored_per_sample_and_the_iteration_is_marked(ws):
    rep = diagnose(ws, 0, signals=("complexity", "diversity"))
    assert rep.n == 25 and rep.empty_responses == 1 and rep.truncated == 0
    assert rep.post_model_is_base and rep.computed["post"] == 25
    assert rep.computed["base"] == 0  # post model = base model: the base pass is all cache hits
    assert rep.tokens["post"] > 0 and rep.knn["exact"]
    with ws.store.read() as con:
        frame = load_signals(con, 0).set_index("sample_id")
        rec = get_iteration(con, 0)
        n_null = con.execute("SELECT count(*) FROM signals WHERE loss_pre IS NULL").fetchall()[0][0]
    assert rec["status"] == "diagnosed" and rec["counts"]["post_model_is_base"] is True
    assert rec["counts"]["diagnosis"]["n"] == 25 and rec["k"] == 2
    empty_id = Sample(instruction="Say nothing at all.", output="").id
    assert frame.loc[empty_id, "empty_response"] and n_null == 1  # NULL in the store, never NaN
    full = frame.drop(index=empty_id)
    assert np.isfinite(full["loss_pre"]).all()
    np.testing.assert_allclose(full["loss_pre"], full["loss_post"])  # same model twice
    assert frame["diversity"].between(-1, 1).all()
    for sid, row in frame.iterrows():
        neigh = json.loads(row["neighbours"])
        assert len(neigh) == 2 and sid not in neigh and set(neigh) <= set(frame.index)
        assert np.mean(json.loads(row["neighbour_sims"])) == pytest.approx(row["diversity"], abs=1e-5)
    ids, matrix = load_embeddings(ws, 0)
    assert sorted(ids) == sorted(frame.index) and matrix.shape[0] == 25
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


def test_rerun_is_served_from_the_cache_and_a_new_model_recomputes(ws, tiny_model_b):
    diagnose(ws, 0, signals=("complexity", "diversity"))
    source = ModelSource()
    again = diagnose(ws, 0, signals=("complexity", "diversity"), source=source)
    assert again.computed_total == 0 and source.loads == 0 and sum(again.tokens.values()) == 0
    with ws.store.write() as con:
        upsert_iteration(con, 0, model=tiny_model_b)  # a checkpoint trained on D(0)
    trained = diagnose(ws, 0, signals=("complexity", "diversity"))
    assert not trained.post_model_is_base and trained.post_model == tiny_model_b
    assert trained.computed == {"post": 25, "base": 0}  # new post model; base losses reused
    with ws.store.read() as con:
        frame = load_signals(con, 0).dropna(subset=["loss_pre"])
    assert not np.allclose(frame["loss_pre"], frame["loss_post"])


def test_duplicate_samples_have_diversity_near_one(workspace_factory, tiny_model):
    ws = workspace_factory("dup", base_model=tiny_model)
    base = make_samples(12)
    twin = base[0].model_copy(update={"output": "A different answer to the same question."})
    fill(ws, [*base, twin])
    diagnose(ws, 0, signals=("diversity",))
    with ws.store.read() as con:
        frame = load_signals(con, 0).set_index("sample_id")
    sims = json.loads(frame.loc[base[0].id, "neighbour_sims"])
    assert json.loads(frame.loc[base[0].id, "neighbours"])[0] == twin.id
    assert sims[0] == pytest.approx(1.0, abs=1e-4)  # same prompt: same embedding
    assert frame["loss_pre"].isna().all()  # complexity was not asked for


def test_cancel_keeps_finished_batches_and_a_rerun_computes_only_the_rest(ws):
    ws.config.signals.batch_size = 1  # 512 padded tokens per batch: several batches for 25 samples
    seen = []

    def cancel_halfway(ev):
        if ev.stage == STAGE_POST:
            seen.append(ev.done)
            if ev.done >= 12:
                raise Cancelled()

    with pytest.raises(Cancelled):
        diagnose(ws, 0, signals=("complexity", "diversity"), progress=cancel_halfway)
    done_before = max(seen)
    assert 12 <= done_before < 25
    with ws.store.read() as con:
        assert load_signals(con, 0).empty  # nothing half-written into the signals table
        cached = con.execute("SELECT count(*) FROM signal_cache WHERE signal = 'loss'").fetchall()[0][0]
    assert cached == done_before
    rep = diagnose(ws, 0, signals=("complexity", "diversity"))
    assert rep.computed["post"] == 25 - done_before


def test_rows_join_by_sample_id_not_position(workspace_factory, tiny_model, ws):
    diagnose(ws, 0, signals=("complexity",))
    samples = make_samples(24)
    alone = workspace_factory("alone", base_model=tiny_model)
    fill(alone, [samples[17], samples[3]])  # other order, other neighbours in the table
    diagnose(alone, 0, signals=("complexity",))
    with ws.store.read() as con:
        big = load_signals(con, 0).set_index("sample_id")
    with alone.store.read() as con:
        small = load_signals(con, 0).set_index("sample_id")
    for s in (samples[17], samples[3]):
        assert small.loc[s.id, "loss_pre"] == pytest.approx(big.loc[s.id, "loss_pre"], abs=2e-2)
    # a sample that leaves the dataset version loses its signal row on the next diagnosis
    with ws.store.write() as con:
        set_members(con, 0, [s.id for s in samples[:20]])
    diagnose(ws, 0, signals=("complexity",))
    with ws.store.read() as con:
        assert sorted(load_signals(con, 0)["sample_id"]) == sorted(s.id for s in samples[:20])


def test_truncation_is_counted(workspace_factory, tiny_model):
    ws = workspace_factory("trunc", base_model=tiny_model)
    ws.config.signals.max_len = 96
    fill(ws, [*make_samples(4), Sample(instruction="List numbers.", output=" ".join(map(str, range(200))))])
    rep = diagnose(ws, 0, signals=("complexity",))
    assert rep.truncated == 1
    with ws.store.read() as con:
        assert load_signals(con, 0)["truncated"].sum() == 1


def test_plain_format_uses_its_own_cache(ws):
    first = diagnose(ws, 0, signals=("complexity",))
    ws.config.signals.prompt_format = "plain"
    plain = diagnose(ws, 0, signals=("complexity",))
    assert first.computed["post"] == plain.computed["post"] == 25


def test_empty_dataset_and_unknown_signal_are_refused(ws):
    with pytest.raises(DiagnoseError, match="D\\(5\\) has no samples"):
        diagnose(ws, 5)
    with pytest.raises(DiagnoseError, match="unknown signals"):
        diagnose(ws, 0, signals=("loss",))


def test_pmi_quality_takes_its_conditional_loss_from_the_post_pass(workspace_factory, tiny_model):
    from middo_core.models.loader import load_model
    from middo_core.signals.judge_pmi import pmi_scores

    ws = workspace_factory("pmi", base_model=tiny_model, signals={"quality_mode": "pmi"})
    samples = make_samples(12) + [Sample(instruction="Say nothing at all.", output="")]
    fill(ws, samples)
    first = diagnose(ws, 0)
    # the post model is the judge: its losses come from the post pass; only the 13 responses
    # after an empty user turn are run (and the base pass is all cache hits: base = post here)
    assert first.computed["post"] == 13 and first.computed["quality"] == 13
    assert first.covered["quality"] == 26  # the 13 conditional losses came from the post pass
    assert 0 < first.tokens["quality"] < first.tokens["post"]  # not the conditional pass again
    assert first.quality["mode"] == "pmi"
    with ws.store.read() as con:
        stored = load_signals(con, 0).set_index("sample_id")["quality"]
    model, tok = load_model(tiny_model, "cpu")
    direct = pmi_scores(samples, model, tok)["quality"]
    np.testing.assert_allclose(stored.loc[direct.index], direct, atol=1e-6)
    assert stored[samples[-1].id] == 0  # an empty response
    again = diagnose(ws, 0)
    with ws.store.read() as con:
        rerun = load_signals(con, 0).set_index("sample_id")["quality"]
    assert again.computed_total == 0 and rerun.equals(stored)
    assert again.covered["quality"] == 26
