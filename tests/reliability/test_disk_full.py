"""The disk fills up during an import, a diagnosis, a checkpoint save, a build and an export: the
workspace (or the folder written) sits on a small tmpfs, filled by a ballast file so the step runs
out of room. What was stored before stays whole, no half-written file is left where a later run
would trust it, the CLI says in one sentence which disk is full and to free space and run again,
and the rerun after freeing it completes."""

from __future__ import annotations

import json

import pytest
from reliability_helpers import (
    check_consistent,
    fill_disk,
    resize_disk,
    run_job_here,
    small_disk,
)
from typer.testing import CliRunner

from middo_core.cli import app
from middo_core.config import SignalsConfig, TrainConfig, WorkspaceConfig
from middo_core.sample import Sample
from middo_core.store.proposals import put_proposals
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.workspace import init_workspace
from tests.app.studio_helpers import open_app

pytestmark = pytest.mark.slow
runner = CliRunner()
EARLIER = 100


def middo_in_process(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def assert_disk_full_sentence(output: str, path) -> None:
    """One line on stderr naming the full disk's path and what to do; no traceback."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert f"no space left on the disk holding {path}" in errors[0], errors[0]
    assert "free some space there and run the command again" in errors[0]


def samples(n: int, tag: str = "", width: int = 1) -> list[Sample]:
    return [Sample(instruction=f"{tag}Question {i}: what is {i} times {i}? " * width,
                   output=f"{i} times {i} is {i * i}. " * width) for i in range(n)]


def make_ws(root, data: list[Sample], **cfg):
    ws = init_workspace(root, WorkspaceConfig(name="full", canaries={"enabled": False}, **cfg))
    with ws.store.write() as con:
        insert_samples(con, samples_frame(data))
        set_members(con, 0, [s.id for s in data])
    return ws


@pytest.fixture(scope="module")
def big_jsonl(tmp_path_factory):
    """3,000 records of about 600 bytes (on the large disk, as a user's download would be)."""
    path = tmp_path_factory.mktemp("data") / "big.jsonl"
    path.write_text("".join(json.dumps({"instruction": s.instruction, "output": s.output}) + "\n"
                            for s in samples(3000, "Imported. ", width=6)))
    return path


def test_import_on_a_full_disk(tmp_path, big_jsonl):
    with small_disk(tmp_path / "disk", "8m") as disk:
        ws = make_ws(disk / "ws", samples(EARLIER))
        ballast = fill_disk(disk, 256 << 10)
        code, out = middo_in_process("import", ws.root, big_jsonl)
        assert code == 1
        assert_disk_full_sentence(out, ws.root)
        state = check_consistent(ws.root)
        assert state["samples"] == EARLIER and state["sizes"] == {0: EARLIER}  # nothing half in
        assert not list((ws.artifacts / "tmp").iterdir())  # the staged records are gone
        assert not (ws.artifacts / "import_reports").exists()  # no report of an import not done
        job = run_job_here(ws, "import", 0, {"path": str(big_jsonl), "format": None,
                                             "skip_invalid": False, "split": "train"})
        assert job["status"] == "failed"  # the same sentence for the Studio's import
        assert job["error"].startswith(f"no space left on the disk holding {ws.root}")
        assert check_consistent(ws.root)["samples"] == EARLIER
        at = open_app(ws.root, "data")  # the Data page's import, in the Studio's process
        at.radio(key="import_source").set_value("A file on this machine").run()
        at.text_input(key="import_path").set_value(str(big_jsonl)).run()
        next(b for b in at.button if b.label == "Import this file").click().run()
        assert not at.exception
        shown = [e.value for e in at.error if e.value.startswith("Could not import")]
        assert len(shown) == 1 and f"no space left on the disk holding {ws.root}" in shown[0], shown
        assert check_consistent(ws.root)["samples"] == EARLIER

        ballast.unlink()
        code, out = middo_in_process("import", ws.root, big_jsonl)
        assert code == 0, out
        assert check_consistent(ws.root)["sizes"] == {0: EARLIER + 3000}


def test_export_on_a_full_disk(tmp_path):
    ws = make_ws(tmp_path / "ws", samples(3000, width=4))
    with small_disk(tmp_path / "exports", "256k") as exports:
        earlier = exports / "d0.jsonl"
        earlier.write_text('{"instruction": "an earlier export", "output": "kept"}\n')
        code, out = middo_in_process("export", ws.root, earlier, "--format", "jsonl")
        assert code == 1
        assert_disk_full_sentence(out, earlier)
        assert earlier.read_text() == '{"instruction": "an earlier export", "output": "kept"}\n'
        assert sorted(p.name for p in exports.iterdir()) == ["d0.jsonl"]  # no partial file

        resize_disk(exports, "8m")
        code, out = middo_in_process("export", ws.root, earlier, "--format", "jsonl")
        assert code == 0, out
        assert len(earlier.read_text().splitlines()) == 3000
    check_consistent(ws.root)


def test_build_on_a_full_disk(tmp_path):
    n = 2000
    with small_disk(tmp_path / "disk", "16m") as disk:
        data = samples(n)
        ws = make_ws(disk / "ws", data)
        with ws.store.write() as con:
            put_proposals(con, [
                {"id": f"p{i:05d}", "iteration": 0, "axis": "quality", "source_id": s.id,
                 "instruction": f"Rewritten question {i}. " * 8, "input": "",
                 "output": f"A longer and better answer {i}. " * 12, "status": "pending"}
                for i, s in enumerate(data)])
        code, out = middo_in_process("review", ws.root, "--iteration", "0", "--bulk", "accept")
        assert code == 0, out
        ballast = fill_disk(disk, 192 << 10)
        code, out = middo_in_process("build", ws.root, "--iteration", "0")
        assert code == 1
        assert_disk_full_sentence(out, ws.root)
        state = check_consistent(ws.root)
        assert state["sizes"] == {0: n} and state["samples"] == n  # D(1) absent, no new sample
        assert "build" not in state["records"].get(0, ("", {}))[1]
        assert state["statuses"] == {"accepted": n} and state["review_log"] == n

        ballast.unlink()
        code, out = middo_in_process("build", ws.root, "--iteration", "0")
        assert code == 0, out
        assert check_consistent(ws.root)["sizes"] == {0: n, 1: n}


def test_store_checkpoint_on_a_full_disk(tmp_path, big_jsonl):
    """Room for DuckDB's write-ahead log but not for folding it into the main file: the commit
    stands, the failed checkpoint is silent, and the log is replayed on every open until there
    is room."""
    with small_disk(tmp_path / "disk", "16m") as disk:
        ws = make_ws(disk / "ws", samples(EARLIER))
        ballast = fill_disk(disk, 2 << 20)
        code, out = middo_in_process("import", ws.root, big_jsonl)
        assert code == 0, out
        wal = ws.root / "middo.duckdb.wal"
        assert wal.stat().st_size > 0  # the import is in the log, not yet in the main file
        assert check_consistent(ws.root)["sizes"] == {0: EARLIER + 3000}
        ballast.unlink()
        assert check_consistent(ws.root)["sizes"] == {0: EARLIER + 3000}
        assert not wal.exists()  # folded in once there was room


def cached_rows(ws) -> int:
    with ws.store.read() as con:
        return con.execute("SELECT count(*) FROM signal_cache").fetchall()[0][0]


def test_diagnosis_on_a_full_disk(tmp_path, tiny_model, monkeypatch):
    import middo_core.diagnose

    # the map a diagnosis draws is not what this test is about (UMAP compiles for seconds)
    monkeypatch.setattr(middo_core.diagnose, "_draw_map",
                        lambda *a, **k: {"drawn": False, "reason": "not drawn in this test"})
    n = 96
    with small_disk(tmp_path / "disk", "8m") as disk:
        # batch_size 1: several cache checkpoints in one pass
        ws = make_ws(disk / "ws", samples(n), base_model=tiny_model,
                     signals=SignalsConfig(batch_size=1))
        ballast = fill_disk(disk, 550 << 10)  # room for about two of the three cache batches
        code, out = middo_in_process("diagnose", ws.root, "--signals", "complexity,diversity")
        assert code == 1
        assert_disk_full_sentence(out, ws.root)
        at_failure = cached_rows(ws)
        assert at_failure < n  # the disk filled up during the pass's cache writes
        state = check_consistent(ws.root)  # every cached batch whole
        assert state["sizes"] == {0: n}
        with ws.store.read() as con:
            assert con.execute("SELECT count(*) FROM signals").fetchall()[0][0] == 0
        vectors = ws.artifacts / "vectors"
        assert not [p for p in vectors.rglob(".tmp-*")] if vectors.exists() else True

        ballast.unlink()
        code, out = middo_in_process("diagnose", ws.root, "--signals", "complexity,diversity",
                                     "--json")
        assert code == 0, out
        rep = json.loads(out[out.index("{"):])
        assert rep["computed"]["post"] == n - at_failure  # cached batches are not redone
        with ws.store.read() as con:
            assert con.execute("SELECT count(*), count(loss_pre), count(diversity) FROM signals"
                               ).fetchall()[0] == (n, n, n)
        check_consistent(ws.root)


def test_checkpoint_save_on_a_full_disk(tmp_path, tiny_model):
    # 16 steps, saved every 4: a checkpoint (weights, optimizer state, tokenizer) is about 42 MB, and
    # the next one is written before the last is removed, so the second save finds the disk full
    train = TrainConfig(preset="custom", learning_rate=3e-3, batch_size=1, max_len=64,
                        warmup_ratio=0.0, scheduler="constant")
    ws = make_ws(tmp_path / "ws", samples(16), base_model=tiny_model, train=train)
    work = ws.artifacts / "checkpoints" / "iter_0.work"
    with small_disk(ws.artifacts / "checkpoints", "45m") as disk:
        code, out = middo_in_process("train", ws.root)
        assert code == 1
        assert_disk_full_sentence(out, work)
        kept = sorted(p.name for p in work.glob("checkpoint-*"))
        assert kept == ["checkpoint-4"], kept  # the whole one; the one cut short is gone
        assert not (disk / "iter_0").exists() and not (disk / "iter_0.tmp").exists()
        with ws.store.read() as con:
            model = con.execute("SELECT model FROM iterations WHERE number = 0").fetchall()
        assert not model or model[0][0] is None  # M(0) not recorded

        resize_disk(disk, "200m")
        code, out = middo_in_process("train", ws.root, "--json")
        assert code == 0, out
        result = json.loads(out[out.index("{"):])
        assert result["resumed_from_step"] == 4 and result["steps"] == 16
        assert (disk / "iter_0" / "model.safetensors").exists() and not work.exists()
    check_consistent(ws.root)


def test_a_job_that_fills_the_disk_ends_failed_with_its_reason(tmp_path, monkeypatch):
    """A job fails on a full disk, and the store cannot take its failure either: the status reads
    failed with the disk's sentence (from the worker's log line) while the disk stays full, and is
    recorded once there is room. A run that left no line on the full disk reads as died there."""
    import contextlib
    import subprocess

    from middo_core.jobs import kinds, runfiles, worker
    from middo_core.jobs.lock import process_identity
    from middo_core.jobs.manager import job_status
    from middo_core.store import runs as run_store

    with small_disk(tmp_path / "disk", "8m") as disk:
        ws = make_ws(disk / "ws", samples(10))
        out = ws.root / "export.jsonl"

        def filling_job(ws_, run_id, iteration, args, progress):
            fill_disk(disk, 0)
            with out.open("w") as f:  # the job's own output meets the full disk
                f.write("x" * (1 << 20))
            return None

        monkeypatch.setattr(kinds, "get_job_kind", lambda name: filling_job)
        gone = subprocess.Popen(["true"])
        gone.wait()  # each run's process has ended by the time it is looked at
        with ws.store.write() as con:
            run_ids = [run_store.create_run(con, "import", None, {}) for _ in range(2)]
        for run_id in run_ids:
            folder = runfiles.run_dir(ws, run_id)
            folder.mkdir(parents=True)
            runfiles.write_json_atomic(folder / runfiles.PROCESS_FILE, process_identity(gone.pid))
        job, silent = run_ids
        with (runfiles.run_dir(ws, job) / runfiles.LOG_FILE).open("w") as log, \
                contextlib.redirect_stdout(log):
            assert worker.run(ws.root, job) == 1  # returns: no error escapes the worker

        with ws.store.read() as con:
            assert run_store.get_run(con, job)["status"] == "running"  # the store took nothing
        status = job_status(ws, job)
        assert status["status"] == "failed" and status["alive"] is False
        assert status["error"].startswith(f"no space left on the disk holding {ws.root}"), status["error"]
        assert "free some space there and run the command again" in status["error"]
        died = job_status(ws, silent)
        assert died["status"] == "failed"
        assert died["error"].startswith(f"process died; no space left on the disk holding {ws.root}")

        (disk / "ballast").unlink()
        assert job_status(ws, job)["error"] == status["error"]
        with ws.store.read() as con:
            recorded = run_store.get_run(con, job)
        assert recorded["status"] == "failed" and recorded["error"] == status["error"]
        check_consistent(ws.root)
