"""Two `middo loop` processes on one demo workspace, as a new user in two terminals would start
them: the second is refused with who holds the workspace and since when, a Studio-started run is
refused the same way, reading goes on; the first is killed (SIGKILL) mid-training, and
`middo loop --resume` takes over the dead process's lock and finishes the one iteration that was
asked for, not the config's three."""

from __future__ import annotations

import json
import re
import secrets
import socket

import pytest
from reliability_helpers import check_consistent, kill9, middo, middo_env, start_middo, wait_for
from typer.testing import CliRunner

from middo_core.cli import app
from middo_core.data import create_demo_workspace
from middo_core.jobs import start_job
from middo_core.jobs.lock import RunLocked, holder, lock_path
from middo_core.loop import last_loop
from middo_core.store.runs import list_runs
from tests.llm.openai_server import LoopbackOpenAI

pytestmark = pytest.mark.slow


def tiny_demo(root, tiny_model):
    ws = create_demo_workspace(root, size=40)
    cfg = ws.config
    cfg.base_model = tiny_model
    cfg.signals.max_len = cfg.train.max_len = 64
    cfg.train.preset, cfg.train.batch_size = "custom", 4  # 9 steps, a checkpoint every 3
    cfg.eval.suite = ["heldout"]
    cfg.refine.backend, cfg.refine.model = "openai", "loopback-model"
    cfg.loop.axes = ["complexity"]  # one signal keeps the iteration short
    cfg.selection.m_complexity = 0.5
    cfg.canaries.enabled = False
    ws.save_config()
    assert cfg.loop.iterations == 3  # what a resume that forgot --iterations 1 would run
    return ws


def test_second_loop_refused_then_killed_loop_resumed_with_its_options(tmp_path, tiny_model):
    ws = tiny_demo(tmp_path / "demo", tiny_model)
    work = ws.artifacts / "checkpoints" / "iter_0.work"
    with LoopbackOpenAI() as llm:
        env = middo_env(OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY="sk-test-" + secrets.token_hex(8))
        first = start_middo("loop", ws.root, "--iterations", "1", "--review", "auto",
                            log=tmp_path / "first.log", env=env)
        owner = wait_for(lambda: holder(ws), 120, "the first loop to take the lock", first,
                         tmp_path / "first.log")
        assert owner["pid"] == first.pid and owner["host"] == socket.gethostname()

        # the second terminal: refused at once, nothing of the first one's record touched
        second = middo("loop", ws.root, "--iterations", "1", "--review", "auto", env=env, check=False)
        assert second.returncode == 1 and "Traceback" not in second.stderr
        message = second.stderr
        assert f"in use by `middo loop {ws.root} --iterations 1 --review auto` (pid {first.pid} on " \
               f"{socket.gethostname()}) since " in message
        assert re.search(r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+ s ago\)", message)
        assert f"kill {first.pid}" in message and "run this again" in message
        # the Studio's buttons start jobs through start_job: refused the same way, nothing recorded
        with pytest.raises(RunLocked, match=f"pid {first.pid}"):
            start_job(ws, "train", 0, {})
        with ws.store.read() as con:
            assert list_runs(con).empty
        # reading goes on
        status = CliRunner().invoke(app, ["status", str(ws.root), "--json"])
        assert status.exit_code == 0 and json.loads(status.stdout)["dataset_sizes"]["0"]["train"] == 36

        def saved_step():
            steps = [int(p.name.split("-")[1]) for p in work.glob("checkpoint-*")
                     if (p / "trainer_state.json").exists()]
            return max(steps) if steps else None

        wait_for(saved_step, 240, "a first checkpoint of M(0)", first, tmp_path / "first.log", 0.02)
        kill9(first)
        assert json.loads(lock_path(ws).read_text())["pid"] == first.pid  # left behind
        assert holder(ws) is None  # and seen as dead
        check_consistent(ws.root)

        resumed = middo("loop", ws.root, "--resume", "--json", env=env)
    stderr = resumed.stderr
    assert re.search(r"Resuming the loop started at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d with "
                     r"--iterations 1 --review auto\.", stderr), stderr[-2000:]
    assert f"took over the workspace's run lock from `middo loop {ws.root} --iterations 1 " \
           f"--review auto` (pid {first.pid} on" in stderr
    report = json.loads(resumed.stdout)
    assert report["iterations_done"] == 1 and report["stopped_at"] is None
    assert report["steps_run"][0] == "train 0" and report["steps_run"][-1] == "evaluate 1"
    checkpoints = sorted(p.name for p in (ws.artifacts / "checkpoints").iterdir())
    assert checkpoints == ["iter_0", "iter_1"]  # no M(2): one iteration, as asked; no .work left
    assert not lock_path(ws).exists()
    state = check_consistent(ws.root)
    assert set(state["sizes"]) == {0, 1}
    # the loop it started is done: a further `--resume` says so and runs nothing
    assert last_loop(ws)["finished"] and last_loop(ws)["settings"] == {"iterations": 1, "review": "auto"}
    again = CliRunner().invoke(app, ["loop", str(ws.root), "--resume", "--json"])
    assert again.exit_code == 0, again.output
    assert "Nothing to resume: the loop started at" in again.output
    assert "with --iterations 1 --review auto is done" in again.output
    assert json.loads(again.stdout)["steps_run"] == []
