"""The managed vLLM server's life (start, reuse, status, stop, a crash, a hang, no environment),
against a stand-in `vllm` executable: the same process handling as the real server, in seconds
and without vLLM installed. tests/llm/test_vllm_server.py runs the real one."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import pytest
from typer.testing import CliRunner

from middo_core.llm import ChatRequest, LLMClient, VLLMBackend, run_sync
from middo_core.llm.vllm_server import VLLMServer, VLLMServerError

# `python -I ENTRY serve MODEL --host H --port P ...`: "ok" answers /health and chat completions (and starts
# an engine-like child process), "crash" writes a traceback and exits, "hang" never listens.
FAKE_VLLM = textwrap.dedent("""\
    #!{python}
    import json, os, subprocess, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    name = args[args.index("--served-model-name") + 1]
    mode = os.environ.get("FAKE_VLLM_MODE", "ok")
    print("INFO starting", args, flush=True)
    if mode == "crash":
        print("Traceback (most recent call last):", flush=True)
        print("ValueError: model type `nonsense` is not supported", flush=True)
        sys.exit(1)
    if mode == "hang":
        time.sleep(3600)
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    with open("engine.pid", "w") as f:
        f.write(str(engine.pid))
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def _send(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def do_GET(self):
            self._send({{}})
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with open("requests.jsonl", "a") as f:
                f.write(json.dumps({{"body": body, "auth": self.headers.get("Authorization")}}) + "\\n")
            self._send({{"id": "x", "object": "chat.completion", "created": 0, "model": name,
                        "choices": [{{"index": 0, "finish_reason": "stop",
                                     "message": {{"role": "assistant", "content": "Blue."}}}}],
                        "usage": {{"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}}})
    HTTPServer(("127.0.0.1", port), H).serve_forever()
""")


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    env = tmp_path / "venv"
    (env / "bin").mkdir(parents=True)
    # the manager runs `<env>/bin/python -I <entry> serve ...` where `<env>/bin/vllm` exists
    for name in ("vllm", "python"):
        exe = env / "bin" / name
        exe.write_text(FAKE_VLLM.format(python=sys.executable))
        exe.chmod(0o755)
    monkeypatch.setenv("MIDDO_VLLM_ENV", str(env))
    monkeypatch.setenv("MIDDO_VLLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-user-secret")
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_reuse_status_and_stop(fake_env, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    server = VLLMServer(str(model), start_timeout_s=30)
    assert server.state() == "stopped"
    record = server.start()
    assert server.state() == "up" and record.base_url.startswith("http://127.0.0.1:")
    saved = json.loads(server.record_path.read_text())
    assert saved["pid"] == record.pid and saved["model"] == str(model) and saved["started"]
    assert "--served-model-name" in server.log_path.read_text()
    again = VLLMServer(str(model)).start()  # another run: the same server, no second start
    assert again.pid == record.pid and again.port == record.port
    engine = int((server.folder / "engine.pid").read_text())
    assert server.stop() is True
    assert server.state() == "stopped" and not server.record_path.exists()
    deadline = time.monotonic() + 10  # init reaps the orphaned engine in its own time
    while _alive(engine) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(record.pid) and not _alive(engine)  # the whole process group went
    assert server.stop() is False


def test_a_crash_while_starting_is_an_error_with_the_reason_from_the_log(fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "crash")
    server = VLLMServer(str(fake_env), start_timeout_s=60)
    began = time.monotonic()
    with pytest.raises(VLLMServerError) as caught:
        server.start()
    assert time.monotonic() - began < 20
    assert "exited (code 1) while starting: ValueError: model type `nonsense`" in caught.value.reason
    assert str(server.log_path) in caught.value.reason
    assert caught.value.log_tail[-1].startswith("ValueError") and server.state() == "stopped"


def test_no_health_within_the_timeout_stops_the_server(fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "hang")
    server = VLLMServer(str(fake_env), start_timeout_s=2)
    with pytest.raises(VLLMServerError, match="not healthy after 2 s and was stopped"):
        server.start()
    assert server.state() == "stopped" and not server.record_path.exists()


def test_without_the_environment_the_error_names_make_vllm_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MIDDO_VLLM_ENV", str(tmp_path / "nowhere"))
    with pytest.raises(VLLMServerError, match="make vllm-env"):
        VLLMServer("smollm2-135m", tmp_path / "home").start()


def test_vllm_backend_starts_the_server_and_never_sends_a_seed_or_the_users_key(fake_env, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    backend = VLLMBackend(model=str(model), start_timeout_s=30)
    try:
        answer = run_sync(LLMClient(backend).complete(ChatRequest(
            model=str(model), messages=(("user", "Name a colour."),), seed=7, top_k=5)))
        assert answer.text == "Blue." and backend.base_url == VLLMServer(str(model)).record().base_url
        [sent] = [json.loads(line) for line in
                  (VLLMServer(str(model)).folder / "requests.jsonl").read_text().splitlines()]
        assert "seed" not in sent["body"] and sent["body"]["top_k"] == 5
        assert sent["auth"] == "Bearer no-key"
    finally:
        VLLMServer(str(model)).stop()


def test_middo_serve_start_status_stop(fake_env, tmp_path):
    from middo_core.cli import app

    runner = CliRunner()
    model = str(tmp_path / "model")
    started = runner.invoke(app, ["serve", "start", "--model", model, "--json"])
    assert started.exit_code == 0, started.output
    pid = json.loads(started.stdout)["pid"]
    status = runner.invoke(app, ["serve", "status"])
    assert status.exit_code == 0 and f"{model}: up at http://127.0.0.1:" in status.stdout
    assert f"(pid {pid}," in status.stdout
    stopped = runner.invoke(app, ["serve", "stop", "--all"])
    assert stopped.exit_code == 0 and f"{model}: stopped" in stopped.stdout
    assert "no managed vLLM servers" in runner.invoke(app, ["serve", "status"]).stdout


def test_middo_serve_start_failure_prints_the_log_and_exits_1(fake_env, monkeypatch):
    from middo_core.cli import app

    monkeypatch.setenv("FAKE_VLLM_MODE", "crash")
    result = CliRunner().invoke(app, ["serve", "start", "--model", str(fake_env)])
    assert result.exit_code == 1
    assert "| ValueError: model type `nonsense` is not supported" in result.output
    assert f"error: vLLM server for {fake_env} exited (code 1)" in result.output
