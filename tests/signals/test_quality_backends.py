"""Quality judge backends: an OpenAI-compatible endpoint on loopback (through the LLM client:
retries, cache, budget), vLLM on GPU."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from middo_core.llm import BudgetExhausted, LLMCache, LLMClient, OpenAIBackend, Prices
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


# The endpoint judge asks through the LLM client that refinement uses (tests/llm/openai_server.py).
FIRST_TOKEN = [("7", 0.5), (" 8", 0.25), ("Hello", 0.25)]  # the JudgeServer's answer above


def judged_by(loopback, tmp_path, **client_args) -> tuple[QualitySignal, LLMClient]:
    """An endpoint judge whose LLM client has an on-disk cache in tmp_path (and client_args)."""
    loopback.next_token = lambda body: FIRST_TOKEN
    client = LLMClient(OpenAIBackend(model="judge-1", backoff_base_s=0.01),
                       LLMCache(tmp_path / "cache"), **client_args)
    return QualitySignal(backend="endpoint").use_llm(client), client


def test_endpoint_judge_retries_a_failing_server_and_scores_as_before(loopback, api_key):
    loopback.next_token = lambda body: FIRST_TOKEN
    loopback.retry_after_s = 0.01
    loopback.faults.extend(["429", "500", "malformed"])
    signal = QualitySignal(backend="endpoint", endpoint_model="judge-1")
    frame = signal.compute(SAMPLES, None, None)
    assert frame["quality"].tolist() == pytest.approx([22 / 3, 22 / 3])  # as JudgeServer's run
    assert loopback.count == 12 + 3  # each failed request asked again
    assert {b["top_logprobs"] for b in loopback.requests} == {20}


@pytest.mark.parametrize("logprobs", [True, False])
def test_endpoint_judge_second_run_sends_no_request(loopback, api_key, tmp_path, logprobs):
    loopback.logprobs = logprobs  # False: a server that ignores the request for log-probs
    loopback.answer = lambda body: "6 - fine"
    signal, client = judged_by(loopback, tmp_path)
    first = signal.compute(SAMPLES, None, None)
    asked = loopback.count
    assert asked == (12 if logprobs else 24)  # without log-probs, a sampled reply per metric
    assert first["quality"].tolist() == pytest.approx([22 / 3] * 2 if logprobs else [6.0] * 2)
    again, client2 = judged_by(loopback, tmp_path)  # a later run on the same cache
    second = again.compute(SAMPLES, None, None)
    assert loopback.count == asked and client2.usage.calls == 0 and client2.usage.cache_hits == asked
    assert second.equals(first) and again.report.tokens_fed == signal.report.tokens_fed
    for path in (tmp_path / "cache").rglob("*.json"):
        assert api_key.encode() not in path.read_bytes()


def test_endpoint_judge_stops_at_the_budget_and_a_rerun_pays_for_the_rest(loopback, api_key, tmp_path):
    # each prompt is ~150 tokens: $0.15 at $1 per 1k, so $0.5 buys four
    signal, client = judged_by(loopback, tmp_path, prices=Prices(1.0, 1.0), budget_usd=0.5,
                               concurrency=1)
    with pytest.raises(BudgetExhausted):
        signal.compute(SAMPLES, None, None)
    paid = loopback.count
    assert 1 < paid < 12 and client.usage.calls == paid and client.usage.budget_refused == 1
    assert client.usage.cost_usd >= 0.5
    rest, client2 = judged_by(loopback, tmp_path, prices=Prices(1.0, 1.0))
    frame = rest.compute(SAMPLES, None, None)
    assert frame["quality"].tolist() == pytest.approx([22 / 3, 22 / 3])
    assert loopback.count == 12 and client2.usage.cache_hits == paid  # nothing paid twice


def test_endpoint_judge_runs_from_inside_an_event_loop(loopback, api_key):
    loopback.next_token = lambda body: FIRST_TOKEN
    signal = QualitySignal(backend="endpoint", endpoint_model="judge-1")

    async def caller():  # a worker or a notebook that already runs a loop calls the sync judge
        return signal.compute(SAMPLES, None, None)

    frame = asyncio.run(caller())
    assert frame["quality"].tolist() == pytest.approx([22 / 3, 22 / 3])


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
