"""Quality judge backends: an OpenAI-compatible endpoint on loopback, vLLM on GPU."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from middo_core.sample import Sample
from middo_core.signals.quality import QualitySignal

SAMPLES = [
    Sample(instruction="Name three primary colors.", output="Red, blue and yellow."),
    Sample(instruction="What is 2 + 2?", output="4"),
]


class JudgeServer:
    """A chat-completions server: top log-probs when asked (unless `logprobs` is off), else `reply`."""

    def __init__(self, reply: str = "6 - fine", logprobs: bool = True):
        self.reply, self.logprobs, self.requests = reply, logprobs, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"body": body, "auth": self.headers.get("Authorization")})
                payload = json.dumps(server.answer(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, body: dict) -> dict:
        choice = {"index": 0, "finish_reason": "stop", "logprobs": None,
                  "message": {"role": "assistant", "content": self.reply}}
        if body.get("logprobs") and self.logprobs:
            top = [("7", 0.5), (" 8", 0.25), ("Hello", 0.25)]
            choice["message"]["content"] = "7"
            choice["logprobs"] = {"content": [{
                "token": "7", "logprob": math.log(0.5), "bytes": None,
                "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top],
            }]}
        return {"id": "r", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [choice], "usage": {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101}}


@pytest.fixture
def endpoint(monkeypatch):
    servers = []

    def start(**kw) -> JudgeServer:
        server = JudgeServer(**kw)
        servers.append(server)
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
        return server

    yield start
    for s in servers:
        s.httpd.shutdown()


def test_endpoint_logprobs_give_the_expected_score_over_score_tokens(endpoint):
    server = endpoint()
    signal = QualitySignal(backend="endpoint", endpoint_model="judge-1")
    frame = signal.compute(SAMPLES, None, None)
    # "7" 0.5 and " 8" 0.25 are score tokens; "Hello" is not: (7*.5 + 8*.25) / .75
    assert frame["quality"].tolist() == pytest.approx([22 / 3, 22 / 3])
    assert len(server.requests) == 12
    first = server.requests[0]["body"]
    assert first["logprobs"] is True and first["top_logprobs"] == 20 and first["max_tokens"] == 1
    assert first["model"] == "judge-1"
    assert server.requests[0]["auth"] == "Bearer sk-test-secret"
    assert signal.report.tokens_fed == 1200
    assert "sk-test-secret" not in json.dumps(frame.attrs["report"])
    contents = [r["body"]["messages"][0]["content"] for r in server.requests]
    assert any("Name three primary colors." in c and "Rate only the assistant response" in c for c in contents)


def test_endpoint_without_logprobs_falls_back_to_reading_the_reply(endpoint):
    server = endpoint(logprobs=False, reply="6 - fine")
    signal = QualitySignal(backend="endpoint", endpoint_model="judge-1")
    frame = signal.compute(SAMPLES[:1], None, None)
    assert frame["quality"].iloc[0] == 6.0
    asked = [r["body"] for r in server.requests]
    assert len(asked) == 12  # a log-prob request, then a sampled reply, per metric
    sampled = [b for b in asked if not b.get("logprobs")]
    assert sampled[0]["temperature"] == 0.1 and sampled[0]["top_p"] == 0.7 and sampled[0]["top_k"] == 50


def test_endpoint_generate_mode_counts_replies_without_a_number(endpoint):
    endpoint(reply="I cannot rate this.")
    signal = QualitySignal(backend="endpoint", endpoint_model="judge-1", mode="generate")
    frame = signal.compute(SAMPLES, None, None)
    assert (frame == 0).all().all() and signal.report.unparseable == 12


def test_endpoint_needs_a_model_name(endpoint, monkeypatch):
    endpoint()
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    with pytest.raises(ValueError, match="endpoint_model"):
        QualitySignal(backend="endpoint").compute(SAMPLES, None, None)


@pytest.mark.gpu
def test_vllm_backend_agrees_with_transformers(tiny_model):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("vllm")
    from middo_core.models.loader import load_model

    model, tok = load_model(tiny_model, device="cuda", dtype="float32")
    ref = QualitySignal().compute(SAMPLES, model, tok)
    got = QualitySignal(backend="vllm", vllm_model=tiny_model).compute(SAMPLES, model, tok)
    assert list(got.index) == list(ref.index)
    # vLLM sees only the top-20 next tokens: close to, not exactly, the full distribution.
    assert ((got >= 0) & (got <= 10)).all().all()
