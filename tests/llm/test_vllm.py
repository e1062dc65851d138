"""vLLM for real on this CPU, on the packaged SmolLM2 and the demo's samples.

In-process: `LocalEngine` in vLLM's own environment (.venv-vllm, made by `make setup`) runs the
project's vLLM code, the response-token loss from prompt log-probs and the vllm judge backend in
both modes. Served: one `vllm serve` on loopback, started by the product's server manager and
shared by the tests, then the refiner, the endpoint judge, the vllm judge and the loss from the
project's environment, the "serve" job, the Studio's sidebar, and a server that crashes while
starting. vLLM's numbers must agree with the project's transformers passes on the same model
within bf16 noise (measured, see vllm_reference.py), and flag the same samples up to the number
the project's own bf16 pass flags differently from float32.

One module, so that a parallel run keeps it on one worker with one server; the server starts in
the background while the in-process engine works. Each test's time and the server's start time
go to test-artifacts/vllm_timings.json. Without .venv-vllm the tests skip, naming `make setup`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from vllm_reference import JUDGED, LOSSES, MAX_LEN, MODEL, flags, within_bf16_noise

from middo_core.llm import ChatRequest, LLMClient, OpenAIBackend, VLLMBackend, run_sync
from middo_core.llm.vllm_server import VLLMServer, vllm_env, vllm_installed
from middo_core.refine import RefineOptions, refine
from middo_core.sample import Sample
from middo_core.signals.quality import QualitySignal
from middo_core.store.proposals import list_proposals
from tests.app.studio_helpers import open_app, wait_final

REPO = Path(__file__).resolve().parents[2]
JOB = Path(__file__).with_name("vllm_inprocess_job.py")
TIMINGS: dict[str, float] = {}
needs_vllm = pytest.mark.skipif(
    not vllm_installed(),
    reason=f"vLLM's environment is missing ({vllm_env()}): run `make setup`")
# the first test's setup waits for the in-process job and the server start, which share the cores
pytestmark = [pytest.mark.slow, needs_vllm, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def server_start(tmp_path_factory):
    """Starts the packaged SmolLM2's server in the background as the module begins; MIDDO_VLLM_HOME
    points at its folder so that `refine.backend: vllm`, the judge and `middo serve` find it."""
    home = tmp_path_factory.mktemp("vllm")
    before = os.environ.get("MIDDO_VLLM_HOME")
    os.environ["MIDDO_VLLM_HOME"] = str(home)
    server = VLLMServer(MODEL, home, start_timeout_s=900)
    outcome: dict = {}

    def start() -> None:
        began = time.monotonic()
        try:
            outcome["record"] = server.start()
        except Exception as exc:  # noqa: BLE001 - raised in the test that needs the server
            outcome["error"] = exc
        TIMINGS["server_start_s"] = round(time.monotonic() - began, 1)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    yield server, thread, outcome
    thread.join()
    began = time.monotonic()
    server.stop()
    TIMINGS["server_stop_s"] = round(time.monotonic() - began, 1)
    if before is None:
        os.environ.pop("MIDDO_VLLM_HOME", None)
    else:
        os.environ["MIDDO_VLLM_HOME"] = before
    out = REPO / "test-artifacts" / "vllm_timings.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({**TIMINGS, "load": os.getloadavg()[0]}, indent=1))


@pytest.fixture(scope="module")
def vllm_server(server_start):
    """(server, its record) once it is healthy."""
    server, thread, outcome = server_start
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return server, outcome["record"]


@pytest.fixture(scope="module")
def inprocess(server_start, tmp_path_factory, project_reference):
    """The job's answers: one in-process engine, every pass on it (while the server starts)."""
    from middo_core.models.loader import resolve_model_path

    folder = tmp_path_factory.mktemp("vllm-inprocess")
    samples, _ = project_reference
    job = {"model": resolve_model_path(MODEL), "samples": [s.model_dump() for s in samples],
           "judged": JUDGED, "max_len": MAX_LEN, "prompt_format": "chat"}
    (folder / "job.json").write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PYTHONPATH=str(REPO), VLLM_CPU_KVCACHE_SPACE="1")
    began = time.monotonic()
    run = subprocess.run([str(vllm_env() / "bin" / "python"), str(JOB), "job.json", "out.json"],
                         cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    log = (run.stdout + run.stderr)[-3000:]
    assert run.returncode == 0, f"the in-process vLLM job failed:\n{log}"
    out = json.loads((folder / "out.json").read_text())
    out["wall_s"] = round(time.monotonic() - began, 1)
    shown = {k: out[k] for k in ("engine_start_s", "seconds", "versions", "wall_s")}
    print(f"\nvLLM in-process: {json.dumps(shown)}", file=sys.stderr)
    return samples, out


@pytest.fixture(scope="module")
def reference(project_reference):
    return project_reference[1]


def test_inprocess_losses_agree_with_the_shared_pass_within_bf16_noise(inprocess, reference):
    _, out = inprocess
    vllm = np.array(out["loss"])
    assert vllm.shape == reference["float32"]["loss"].shape and np.isfinite(vllm).all()
    distance, noise = within_bf16_noise(vllm, reference, "loss")
    assert 0 < noise < 0.05  # the yardstick itself: bf16 moves a loss by hundredths
    assert distance <= 2 * noise
    # the complexity flags at the default m: vLLM's differ from float32's by no more samples than
    # the project's own bf16 pass does (plus one at the threshold's edge)
    flagged = flags(reference["float32"]["loss"])
    assert len(flagged) >= LOSSES * 10 // 96  # 10 of 96
    assert len(flags(vllm) ^ flagged) <= len(flags(reference["bfloat16"]["loss"]) ^ flagged) + 1


def test_inprocess_judge_logprobs_agrees_with_transformers_within_bf16_noise(inprocess, reference):
    _, out = inprocess
    vllm = np.array(out["logprobs"])
    assert vllm.shape == (JUDGED, 6) and ((vllm >= 0) & (vllm <= 10)).all()
    # the score tokens hold most of the next token's probability: the top-20 log-probs vLLM
    # returns cover them
    assert np.mean(out["score_mass"]) > 0.5
    distance, noise = within_bf16_noise(vllm, reference, "logprobs")
    assert distance <= 2 * noise


def test_inprocess_judge_generate_reads_the_same_greedy_ratings(inprocess, reference):
    _, out = inprocess
    ours = reference["bfloat16"]["generate"]
    vllm = np.array(out["generate"])
    assert vllm.shape == (JUDGED, 6) and ((vllm >= 0) & (vllm <= 10)).all()
    # greedy replies: the same rating, except where bf16 rounding turns a near tie the other way
    # (the project's bf16 and float32 passes differ at a like rate)
    same = (vllm == ours).mean()
    drift = (ours != reference["float32"]["generate"]).mean()
    assert same >= 1 - max(2 * drift, 0.05)


@pytest.fixture
def timed(request):
    began = time.monotonic()
    yield
    TIMINGS[request.node.name] = round(time.monotonic() - began, 1)


@pytest.fixture
def flagged_ws(workspace_factory):
    """A workspace whose D(1) holds two samples, refined greedily with short answers."""
    from middo_core.store.samples import insert_samples, samples_frame, set_members

    ws = workspace_factory("vllm", refine={"temperature": 0.0, "max_new_tokens": 96,
                                           "keep_truncated": True})
    samples = [Sample(instruction="List three uses of copper.", output="Wiring, plumbing, coins."),
               Sample(instruction="Sort these numbers: 9, 2, 7, 4.", output="2, 4, 7, 9")]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        set_members(con, 1, [s.id for s in samples])
    ws.ids = [s.id for s in samples]  # type: ignore[attr-defined]
    return ws


def test_refiner_openai_backend_writes_a_proposal_through_vllm(vllm_server, flagged_ws, timed):
    _, record = vllm_server
    backend = OpenAIBackend(model=MODEL, base_url=record.base_url, timeout_s=300)
    rep = refine(flagged_ws, 1, {"quality": flagged_ws.ids[:1]}, backend=backend,
                 options=RefineOptions(lenient_marker=True))
    with flagged_ws.store.read() as con:
        rows = list_proposals(con, 1)
    assert rep.total_created + rep.total_failed == 1 and len(rows) == 1
    row = rows.iloc[0]
    assert row["model"] == MODEL and row["usage"]["rewrite"]["completion_tokens"] > 0
    assert row["raw_text"].strip()  # the 135M model's own words, whatever their quality
    if rep.total_created:
        assert row["status"] == "pending" and row["instruction"] and row["output"]
    else:  # a rewrite a 135M model got wrong is stored as failed, with why
        assert rows.iloc[0]["status"] == "failed" and rep.failure_reasons


def test_refine_backend_vllm_reuses_the_managed_server(vllm_server, flagged_ws, timed):
    server, record = vllm_server
    flagged_ws.config.refine.backend = "vllm"  # as a user sets it in middo.yaml
    flagged_ws.save_config()
    rep = refine(flagged_ws, 1, {"complexity": flagged_ws.ids[1:]},
                 options=RefineOptions(lenient_marker=True))
    assert rep.backend == "vllm" and rep.total_created + rep.total_failed == 1
    assert rep.usage["calls"] >= 1 and server.record().pid == record.pid  # no second server
    # a seed in the request must not reach the CPU engine: the shared server lives on
    backend = VLLMBackend.from_config(flagged_ws.config.refine, MODEL)
    answer = run_sync(LLMClient(backend).complete(ChatRequest(
        model=MODEL, messages=(("user", "Name a colour."),), max_tokens=8, seed=7)))
    assert backend.base_url == record.base_url and answer.completion_tokens > 0
    assert server.state() == "up"


def test_middo_serve_shows_and_reuses_the_server(vllm_server, timed):
    from middo_core.cli import app

    _, record = vllm_server
    runner = CliRunner()
    status = runner.invoke(app, ["serve", "status", "--json"])
    assert status.exit_code == 0, status.output
    [state] = json.loads(status.stdout)
    assert state["state"] == "up" and state["pid"] == record.pid and state["model"] == MODEL
    again = runner.invoke(app, ["serve", "start", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["pid"] == record.pid


def test_endpoint_judge_reads_logprobs_through_vllm(vllm_server, timed):
    _, record = vllm_server
    client = LLMClient(OpenAIBackend(model=MODEL, base_url=record.base_url, timeout_s=300))
    signal = QualitySignal(backend="endpoint", mode="logprobs").use_llm(client)
    samples = [Sample(instruction="Name three primary colors.", output="Red, blue and yellow.")]
    frame = signal.compute(samples, None, None)
    # every rating came from the first token's log-probs: none fell back to reading a reply
    assert client.usage.calls == 6 and client.usage.completion_tokens == 6
    assert signal.report.unparseable == 0 and 0 < signal.report.score_mass_mean <= 1.0
    assert 0.0 <= frame["quality"].iloc[0] <= 10.0


def test_vllm_judge_and_losses_run_on_the_managed_server_from_the_project_env(
        vllm_server, project_reference, timed):
    """The project's environment has no vllm: the vllm judge backend and the loss from prompt
    log-probs reach the managed server refinement uses (no second one), with numbers within
    bf16 noise of the project's float32 pass, as the in-process engine's are."""
    from middo_core.llm.vllm_engine import ServedEngine, response_losses
    from middo_core.models.loader import load_tokenizer
    from middo_core.signals.encode import encode_all

    server, record = vllm_server
    samples, ref = project_reference
    samples, judged = samples[:min(48, LOSSES)], JUDGED
    tokenizer = load_tokenizer(MODEL)
    signal = QualitySignal(backend="vllm", mode="logprobs", max_len=512, vllm_model=MODEL)
    ratings = signal.compute(samples[:judged], None, tokenizer).drop(columns="quality").to_numpy()
    assert server.record().pid == record.pid and signal.report.backend == "vllm"
    distance, noise = within_bf16_noise(ratings, ref, "logprobs")
    assert distance <= 2 * noise
    losses = response_losses(ServedEngine(record.base_url, MODEL),
                             encode_all(samples, tokenizer, "chat", 512))
    distance, noise = within_bf16_noise(np.array(losses), ref, "loss")
    assert distance <= 2 * noise
    # generate mode: the replies are read for their number
    generated = QualitySignal(backend="vllm", mode="generate", max_len=512, vllm_model=MODEL,
                              temperature=0.0).compute(samples[:2], None, tokenizer)
    assert ((generated >= 0) & (generated <= 10)).all().all()
    assert server.record().pid == record.pid


def test_the_serve_job_finds_the_running_server_and_links_its_log(vllm_server, flagged_ws, timed):
    from middo_core.jobs import start_job
    from middo_core.jobs.runfiles import run_dir

    server, record = vllm_server
    run_id = start_job(flagged_ws, "serve", None, {"model": MODEL})  # a worker process, as the Studio starts it
    final = wait_final(flagged_ws, run_id, timeout=600)
    assert final["status"] == "done", final
    assert final["result"]["pid"] == record.pid and final["result"]["base_url"] == record.base_url
    assert (run_dir(flagged_ws, run_id) / "server.log").resolve() == server.log_path.resolve()


def test_the_studio_sidebar_shows_the_server_and_stops_it(vllm_server, flagged_ws, timed):
    """Last of the tests on the shared server: it stops it, as a curator does from the sidebar."""
    server, record = vllm_server
    flagged_ws.config.refine.backend = "vllm"
    flagged_ws.save_config()
    at = open_app(flagged_ws.root)
    sidebar = " ".join(str(c.value) for c in at.sidebar.caption)
    assert f"{MODEL}: up on port {record.port}" in sidebar and f"pid {record.pid}" in sidebar
    at.sidebar.button(key="stop_model_server").click().run()
    assert not at.exception
    assert server.state() == "stopped"
    sidebar = " ".join(str(c.value) for c in at.sidebar.caption)
    assert f"{MODEL}: stopped" in sidebar
    assert at.sidebar.button(key="start_model_server")  # and it can be started again


def test_a_server_that_crashes_while_starting_fails_its_run_with_the_log_reason(
        workspace_factory, tmp_path, monkeypatch, timed):
    from middo_core.jobs import start_job

    bad = tmp_path / "broken-model"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "no-such-architecture"}')
    monkeypatch.setenv("MIDDO_VLLM_HOME", str(tmp_path / "home"))
    ws = workspace_factory("crash", refine={"backend": "vllm", "model": str(bad),
                                            "vllm_start_timeout_s": 1800})
    run_id = start_job(ws, "serve", None, {})
    # the exit is seen when it happens (vLLM's imports, then the config check), not at the timeout
    final = wait_final(ws, run_id, timeout=600)
    assert final["status"] == "failed", final
    assert "exited" in final["error"] and "no-such-architecture" in final["error"]
    server = VLLMServer(str(bad), tmp_path / "home")
    assert str(server.log_path) in final["error"] and server.state() == "stopped"
