"""A real OpenAI-compatible chat-completions server on loopback, with scripted faults.

Used by the tests and benchmarks/bench_refine.py. It answers rewrite prompts with a short
four-step answer ending in the marker the prompt asks for, and other prompts with a response.
A request with `logprobs: true` gets `choices[0].logprobs.content` as api.openai.com shapes it:
per answer token, its log-prob and the `top_logprobs` most likely tokens.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A fault applies to one request: "429" (Retry-After: retry_after_s), "500", "401", "hang" (sleep
# hang_s before answering), "malformed" (HTTP 200 with a body that is not JSON), or
# ("text", "...") to answer with that exact content.
Fault = str | tuple[str, str]


def default_answer(body: dict[str, Any]) -> str:
    """A deterministic answer derived from the request: rewrites end with the asked-for marker."""
    prompt = body["messages"][-1]["content"]
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    marker = re.search(r"(FINAL PROMPT:|NEW PROMPT:)", prompt)
    if marker:
        return (f"Step 1: methods. Step 2: plan. Step 3: rewrite. Step 4: review.\n"
                f"{marker.group(1)}\n\"Write a short, clear exercise number {digest}.\"")
    return f"Here is a complete answer ({digest}): first, ... second, ... finally, done."


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackOpenAI.Server  # type: ignore[name-defined]
    protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        owner: LoopbackOpenAI = self.server.owner
        length = int(self.headers.get("content-length", 0))
        raw = self.rfile.read(length)
        body = json.loads(raw)
        fault = owner.record(body, raw, self.headers.get("authorization", ""))
        if owner.delay_s:
            time.sleep(owner.delay_s)
        if fault == "429":
            return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                              {"retry-after": str(owner.retry_after_s)})
        if fault == "401":
            return self._send(401, {"error": {"message": "Incorrect API key provided: sk-te***23.",
                                              "type": "invalid_request_error"}})
        if fault == "500":
            return self._send(500, {"error": {"message": "internal error", "type": "server"}})
        if fault == "hang":
            time.sleep(owner.hang_s)
        if fault == "malformed":
            return self._send_raw(200, b'{"id": "x", "choices": [ this is not json')
        text = fault[1] if isinstance(fault, tuple) else owner.answer(body)
        asks_logprobs = bool(body.get("logprobs")) and owner.logprobs
        if asks_logprobs and owner.next_token is not None and not isinstance(fault, tuple):
            text = max(owner.next_token(body), key=lambda pair: pair[1])[0]  # greedy, one token
        prompt_chars = sum(len(m["content"]) for m in body["messages"])
        finish = "stop"
        limit = body.get("max_tokens")
        if limit is not None and len(text) // 4 > limit:  # like a real server: cut at the limit
            text, finish = text[: 4 * limit], "length"
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None,
                                  "message": {"role": "assistant", "content": text}}
        if asks_logprobs:
            choice["logprobs"] = {"content": owner.logprobs_of(text, body), "refusal": None}
        payload = {
            "id": "chatcmpl-loopback", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(text) // 4,
                      "total_tokens": prompt_chars // 4 + len(text) // 4},
        }
        owner.answered(body)
        self._send(200, payload)

    def _send(self, code: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send_raw(code, json.dumps(payload).encode(), headers)

    def _send_raw(self, code: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout) or died


class LoopbackOpenAI:
    """Start with `with LoopbackOpenAI() as server:`; `server.base_url` ends in /v1."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # many clients connect at once

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that timed out or was killed mid-request is part of the tests
        owner: LoopbackOpenAI

    def __init__(self, delay_s: float = 0.0, answer: Callable[[dict], str] | None = None) -> None:
        self.delay_s = delay_s
        self.answer = answer or default_answer
        self.retry_after_s = 0.2
        self.hang_s = 3.0
        self.faults: deque[Fault] = deque()
        # A fault chosen from the request itself, asked before `faults`: with many requests in
        # flight their arrival order is not fixed, so a test that must hit one sample uses this.
        self.fault_for: Callable[[dict], Fault | None] | None = None
        self.requests: list[dict[str, Any]] = []
        self.request_times: list[tuple[float, str]] = []  # (arrival, body sha256)
        self.answer_times: list[tuple[float, str]] = []  # (answer sent, body sha256)
        self.auth_headers: set[str] = set()
        # The distribution of an answer's first token, [(token, probability)]: a request for
        # log-probs is answered with its most likely token (a judge asks for one, at temperature 0).
        self.next_token: Callable[[dict], list[tuple[str, float]]] | None = None
        self.logprobs = True  # False: ignore a request for log-probs, as some servers do
        self._lock = threading.Lock()
        self._server: LoopbackOpenAI.Server | None = None

    def record(self, body: dict, raw: bytes, auth: str) -> Fault | None:
        with self._lock:
            self.requests.append(body)
            self.request_times.append((time.time(), _body_key(body)))
            self.auth_headers.add(auth)
            chosen = self.fault_for(body) if self.fault_for else None
            if chosen is not None:
                return chosen
            return self.faults.popleft() if self.faults else None

    def answered(self, body: dict) -> None:
        with self._lock:
            self.answer_times.append((time.time(), _body_key(body)))

    def logprobs_of(self, text: str, body: dict) -> list[dict[str, Any]]:
        """`logprobs.content`: one entry per 4-character token of `text`; the first token's
        alternatives come from `next_token` when set, the others' are made up (the token at
        probability 0.9, fillers sharing the rest)."""
        n = int(body.get("top_logprobs") or 0)
        content = []
        for i in range(0, len(text), 4):
            piece = text[i : i + 4]
            if i == 0 and self.next_token is not None:
                dist = sorted(self.next_token(body), key=lambda pair: -pair[1])
            else:
                dist = [(piece, 0.9)] + [(f" alt{k}", 0.1 / max(1, n - 1)) for k in range(1, n)]
            chosen = dict(dist).get(piece, 1e-9)
            content.append({"token": piece, "logprob": math.log(chosen), "bytes": list(piece.encode()),
                            "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())}
                                             for t, p in dist[:n]]})
        return content

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> LoopbackOpenAI:
        self._server = self.Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> LoopbackOpenAI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _body_key(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
