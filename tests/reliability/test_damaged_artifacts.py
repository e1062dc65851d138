"""Damaged artifacts: a checkpoint whose weights are cut short, a vector shard cut short, a map
whose stored projection and embeddings record are gone. The next run detects it and recomputes,
or refuses in one sentence naming the file; the Studio's Map page shows no traceback."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from reliability_helpers import check_consistent, run_job_here
from typer.testing import CliRunner

import middo_core.diagnose
from middo_core.cli import app
from middo_core.config import TrainConfig, WorkspaceConfig
from middo_core.diagnose import diagnose
from middo_core.progress import Cancelled
from middo_core.projections import embeddings_available
from middo_core.sample import Sample
from middo_core.store.db import stamp_write
from middo_core.store.projections import put_projection
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.workspace import init_workspace, open_workspace
from tests.app.studio_helpers import open_app, texts

pytestmark = pytest.mark.slow

N = 24
SIGNALS = "complexity,diversity"
runner = CliRunner()


def samples(n: int) -> list[Sample]:
    return [Sample(instruction=f"Question {i}: what is {i} plus {i}?", output=f"{i} plus {i} is {2 * i}.")
            for i in range(n)]


def make_ws(root, tiny_model, n: int = N, **cfg):
    ws = init_workspace(root, WorkspaceConfig(name="damaged", base_model=tiny_model,
                                              canaries={"enabled": False}, **cfg))
    data = samples(n)
    with ws.store.write() as con:
        insert_samples(con, samples_frame(data))
        set_members(con, 0, [s.id for s in data])
    return ws


def cut_short(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def middo_in_process(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def refused_naming(output: str, path) -> str:
    """The one error line, which names `path`; no traceback."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(path) in errors[0], output
    return errors[0]


def drop_the_map(ws) -> None:
    """The stored map gone (with the write stamp any change to it leaves)."""
    with ws.store.write() as con:
        con.execute("DELETE FROM projections")
        stamp_write(con, "projection:0:tsne")


@pytest.fixture(autouse=True)
def _no_umap(monkeypatch):
    # a diagnosis draws its UMAP map (seconds of compiling): not what these tests are about
    monkeypatch.setattr(middo_core.diagnose, "_draw_map",
                        lambda *a, **k: {"drawn": False, "reason": "not drawn in this test"})


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory, tiny_model):
    """A workspace whose D(0) is diagnosed (loss cached, vectors in shards, embeddings recorded)."""
    ws = make_ws(tmp_path_factory.mktemp("diagnosed") / "ws", tiny_model)
    diagnose(ws, 0, signals=tuple(SIGNALS.split(",")), map_limit=0)
    return ws


@pytest.fixture
def copy_of(diagnosed, tmp_path):
    shutil.copytree(diagnosed.root, tmp_path / "ws")
    return open_workspace(tmp_path / "ws")


def test_a_vector_shard_cut_short(copy_of):
    ws = copy_of
    shards = sorted((ws.artifacts / "vectors").rglob("*.npy"))
    assert shards
    cut_short(shards[0])

    code, out = middo_in_process("diagnose", ws.root, "--signals", SIGNALS)
    assert code == 1
    assert "remove it to recompute its vectors" in refused_naming(out, shards[0])
    failed = run_job_here(ws, "projection", 0, {"method": "tsne"})  # the Map page's button
    assert failed["status"] == "failed" and str(shards[0]) in failed["error"]
    at = open_app(ws.root, "map")
    assert not at.exception and str(shards[0]) in texts(at)  # the job's error, as a sentence
    check_consistent(ws.root)

    shards[0].unlink()  # as the message says
    code, out = middo_in_process("diagnose", ws.root, "--signals", SIGNALS, "--json")
    assert code == 0, out
    assert json.loads(out[out.index("{"):])["computed"]["post"] == N  # the vectors recomputed
    with ws.store.read() as con:
        assert con.execute("SELECT count(diversity) FROM signals").fetchall()[0][0] == N
    check_consistent(ws.root)


def test_a_missing_projection(copy_of):
    ws = copy_of
    with ws.store.write() as con:  # a map was stored...
        ids = [r[0] for r in con.execute("SELECT sample_id FROM dataset_members").fetchall()]
        put_projection(con, 0, "tsne", ids, np.random.default_rng(0).normal(size=(len(ids), 2)))
    drop_the_map(ws)  # ...and is gone
    at = open_app(ws.root, "map")
    at.segmented_control(key="map_method").set_value("tsne").run()
    assert not at.exception and "Compute it in the background" in texts(at)
    assert run_job_here(ws, "projection", 0, {"method": "tsne"})["status"] == "done"  # recomputed
    at.run()
    assert not at.exception and "Compute it in the background" not in texts(at)

    # the embeddings record the map is drawn from, deleted as well
    for record in (ws.artifacts / "embeddings").glob("iter_0*.json"):
        record.unlink()
    drop_the_map(ws)
    failed = run_job_here(ws, "projection", 0, {"method": "tsne"})
    assert failed["status"] == "failed" and "run the diversity diagnosis first" in failed["error"]
    at.run()
    assert not at.exception and "Run it on the Diagnose page first" in texts(at)
    code, out = middo_in_process("diagnose", ws.root, "--signals", SIGNALS, "--json")
    assert code == 0, out
    assert json.loads(out[out.index("{"):])["computed"]["post"] == 0  # all from the caches
    assert embeddings_available(ws, 0)  # the map can be computed again
    check_consistent(ws.root)


def test_a_checkpoint_cut_short(tmp_path, tiny_model):
    train = TrainConfig(preset="custom", learning_rate=3e-3, batch_size=1, max_len=64,
                        warmup_ratio=0.0, scheduler="constant")
    ws = make_ws(tmp_path / "ws", tiny_model, n=8, train=train)
    work = ws.artifacts / "checkpoints" / "iter_0.work"
    saved = work / "checkpoint-2"

    def stop_after_the_first_save(event) -> None:
        if (saved / "trainer_state.json").exists():
            raise Cancelled("stopped")

    from middo_core.train.trainer import train as run_train

    with pytest.raises(Cancelled):
        run_train(ws, 0, progress=stop_after_the_first_save)
    cut_short(saved / "model.safetensors")  # an intermediate checkpoint, as a bad copy leaves it
    code, out = middo_in_process("train", ws.root, "--json")
    assert code == 0, out
    result = json.loads(out[out.index("{"):])
    assert result["resumed_from_step"] == 0 and result["steps"] == 8  # detected: started over

    weights = ws.artifacts / "checkpoints" / "iter_0" / "model.safetensors"
    cut_short(weights)  # M(0) itself
    code, out = middo_in_process("diagnose", ws.root, "--signals", "complexity")
    assert code == 1
    assert "train that iteration again" in refused_naming(out, weights)
    check_consistent(ws.root)
