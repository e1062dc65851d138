"""The Ray executor on a local Ray instance (2 CPUs, 2 actors) against the in-process path.

The same demo workspace is diagnosed in-process and through Ray: every signal column and the
embeddings must be identical, bit for bit. They can be, because a Ray task is made of whole
in-process batches (same samples, same padded shape, same kernels), the judge runs the same chunks
with the same seed, the kNN runs on the driver over the same matrix, and the actors load the
model with the attention path this process settled.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ray_toy_signal import LastLogSumExp
from typer.testing import CliRunner

from middo_core.cli import app
from middo_core.data import create_demo_workspace
from middo_core.diagnose import STAGE_POST, diagnose
from middo_core.executors import make_executor
from middo_core.executors.shards import shards_root
from middo_core.progress import Cancelled
from middo_core.signals.base import SIGNALS, registered
from middo_core.signals.diversity import load_embeddings
from middo_core.store.signals import load_signals

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'middo-studio[ray]'")
pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def ray_session():
    # the actors import the toy signal's module as this process does, from this folder
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def _demo(root, tiny_model):
    ws = create_demo_workspace(root, size=60)
    ws.config.base_model = tiny_model
    ws.config.canaries.enabled = False  # these tests count the passes over the samples exactly
    ws.config.signals.quality_mode = "logprobs"  # the self-judge's own pass runs on actors too
    ws.save_config()
    return ws


def _signals(ws) -> pd.DataFrame:
    with ws.store.read() as con:
        return load_signals(con, 0).set_index("sample_id")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, tiny_model):
    ws = _demo(tmp_path_factory.mktemp("local") / "demo", tiny_model)
    rep = diagnose(ws, 0)
    return ws, rep


def test_ray_cli_diagnosis_gives_the_same_signals_as_in_process(ray_session, local_run, tmp_path,
                                                                 tiny_model):
    local_ws, local_rep = local_run
    ws = _demo(tmp_path / "demo", tiny_model)
    result = CliRunner().invoke(app, ["diagnose", str(ws.root), "--executor", "ray",
                                      "--actors", "2", "--json"])
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout[result.stdout.index("{"):])
    assert rep["executor"]["executor"] == "ray" and rep["executor"]["actors"] == 2
    assert rep["computed"] == local_rep.computed and rep["tokens"] == local_rep.tokens
    runs = rep["executor"]["runs"]
    assert [r["actor"] for r in runs] == ["LossWork", "SignalWork"]
    assert sum(r["samples"] for r in runs) == 2 * local_rep.n
    ours, theirs = _signals(ws), _signals(local_ws)
    assert len(ours) == local_rep.n == 54
    # bit for bit: the actors load the model with the attention path this process settled
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    ids_a, emb_a = load_embeddings(ws, 0)
    ids_b, emb_b = load_embeddings(local_ws, 0)
    assert ids_a == ids_b and np.array_equal(emb_a, emb_b)
    assert not any(shards_root(ws).iterdir())  # every shard was ingested and removed


def test_a_stopped_ray_pass_keeps_finished_tasks_and_the_rerun_does_the_rest(
        ray_session, local_run, tmp_path, tiny_model):
    ws = _demo(tmp_path / "demo", tiny_model)
    ws.config.signals.batch_size = 1  # 512 padded tokens per batch: several tasks for 54 samples
    seen: list[int] = []

    def stop_after_first_task(ev):
        if ev.stage == STAGE_POST and 0 < ev.done < ev.total:
            seen.append(ev.done)
            raise Cancelled()

    signals = ("complexity", "diversity")
    # shared_storage=False: rows come back through Ray and the driver writes the shards
    with make_executor("ray", actors=1, task_samples=8, shared_storage=False) as ex, \
            pytest.raises(Cancelled):
        diagnose(ws, 0, signals=signals, progress=stop_after_first_task, executor=ex)
    assert seen and _signals(ws).empty  # nothing half-written into the signals table
    with make_executor("ray", actors=1, task_samples=8) as ex:
        rep = diagnose(ws, 0, signals=signals, executor=ex)
    assert 0 < rep.computed["post"] <= 54 - seen[0]  # finished tasks were not run again
    assert not any(shards_root(ws).iterdir())
    # Not bit for bit here: smaller batches (batch_size 1) and a resumed pass that re-plans the
    # rest put samples in other padded shapes than the reference run, and bf16 kernels round
    # differently per shape (the in-process path behaves the same way). Observed: ~6e-5.
    theirs, ours = _signals(local_run[0]), _signals(ws)
    assert list(ours.index) == list(theirs.index)
    for col in ("loss_pre", "loss_post", "diversity"):
        np.testing.assert_allclose(ours[col], theirs[col], rtol=0, atol=1e-3)
    for col in ("truncated", "empty_response"):
        pd.testing.assert_series_equal(ours[col], theirs[col])


def test_ray_refinement_stores_the_same_proposals_as_in_process(ray_session, workspace_factory):
    from middo_core.llm import OpenAIBackend
    from middo_core.refine import refine
    from middo_core.sample import Sample
    from middo_core.store.iterations import get_iteration
    from middo_core.store.proposals import list_proposals
    from middo_core.store.samples import insert_samples, samples_frame, set_members
    from tests.llm.openai_server import LoopbackOpenAI

    samples = [Sample(instruction=f"Explain topic number {i} in two sentences.", output=f"Topic {i}.")
               for i in range(6)]
    ids = [s.id for s in samples]
    flagged = {"complexity": ids[:3], "quality": ids[2:5]}
    frames = []
    with LoopbackOpenAI() as server:
        for name, executor in (("here", None), ("ray", make_executor("ray", actors=2))):
            ws = workspace_factory(name)
            with ws.store.write() as con:
                insert_samples(con, samples_frame(samples))
                set_members(con, 1, ids)
            # the endpoint travels as a backend setting; no key is needed by a loopback server
            llm = OpenAIBackend(model="loopback-model", base_url=server.base_url, max_retries=2)
            rep = refine(ws, 1, flagged, backend=llm, executor=executor)
            assert rep.created == {"complexity": 3, "quality": 3} and rep.complete
            with ws.store.read() as con:
                frames.append(list_proposals(con, 1).set_index("id").sort_index())
                assert get_iteration(con, 1)["status"] == "refined"
        assert len(server.requests) == 2 * 12  # two calls per proposal, per run (no cache shared)
    cols = ["axis", "source_id", "status", "instruction", "output", "raw_text", "template_hash"]
    pd.testing.assert_frame_equal(frames[0][cols], frames[1][cols])


@pytest.fixture
def toy_signal():
    registered()
    SIGNALS.register(LastLogSumExp)
    yield LastLogSumExp
    SIGNALS.unregister("last_logsumexp")


def test_a_registered_toy_signal_gives_the_same_values_on_ray_as_in_process(
        ray_session, toy_signal, tmp_path, tiny_model):
    import torch

    # An actor has one CPU, so one intra-op thread (Ray sets OMP_NUM_THREADS), and a model's own
    # forward rounds a few last bits differently across thread counts (the loss pass does not):
    # the in-process run here uses one thread too.
    threads = torch.get_num_threads()
    values = []
    for name, executor in (("here", None), ("ray", make_executor("ray", actors=1))):
        ws = _demo(tmp_path / name, tiny_model)
        torch.set_num_threads(1 if executor is None else threads)
        try:
            rep = diagnose(ws, 0, signals=("last_logsumexp",), executor=executor)
        finally:
            torch.set_num_threads(threads)
        assert rep.computed["last_logsumexp"] == rep.n
        values.append(_signals(ws)["last_logsumexp"])
    assert values[0].notna().all()
    pd.testing.assert_series_equal(values[0], values[1], check_exact=True)  # bit for bit
