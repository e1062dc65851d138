"""The OpenAI-compatible client against a real HTTP server with injected faults."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest

from middo_core.llm import (
    BudgetExhausted,
    ChatRequest,
    LLMCache,
    LLMClient,
    LLMConfigError,
    LLMError,
    OpenAIBackend,
    Prices,
)


def request(text: str = "Say hello.", **kw) -> ChatRequest:
    return ChatRequest(model="loopback-model", messages=(("user", text),), **kw)


def backend(**kw) -> OpenAIBackend:
    return OpenAIBackend(model="loopback-model", backoff_base_s=0.01, **kw)


def test_429_with_retry_after_and_500_are_retried_and_counted(loopback, api_key):
    loopback.retry_after_s = 0.3
    loopback.faults.extend(["429", "500"])
    b = backend(max_retries=3)
    started = time.monotonic()
    result = asyncio.run(b.complete(request()))
    assert result.text.startswith("Here is a complete answer")
    assert loopback.count == 3
    assert b.stats.retries == 2
    assert b.stats.retry_reasons == {"HTTP 429": 1, "HTTP 500": 1}
    assert time.monotonic() - started >= 0.3  # waited as long as the server asked


def test_a_hang_past_the_timeout_is_retried(loopback, api_key):
    loopback.hang_s = 2.0
    loopback.faults.append("hang")
    b = backend(timeout_s=0.3)
    started = time.monotonic()
    result = asyncio.run(b.complete(request()))
    assert result.text and b.stats.retry_reasons == {"timeout after 0.3 s": 1}
    assert time.monotonic() - started < 1.5  # did not wait for the hung answer


def test_malformed_json_is_retried_then_fails_with_a_reason(loopback, api_key):
    loopback.faults.extend(["malformed"] * 3)
    b = backend(max_retries=2)
    with pytest.raises(LLMError) as info:
        asyncio.run(b.complete(request()))
    assert info.value.reason == "malformed response (gave up after 3 attempts)"
    assert loopback.count == 3 and b.stats.retries == 2


def test_bad_key_stops_at_once_without_echoing_the_key(loopback, api_key, caplog):
    loopback.faults.append("401")
    b = backend()
    with pytest.raises(LLMConfigError) as info:
        asyncio.run(b.complete(request()))
    assert loopback.count == 1 and b.stats.retries == 0
    assert "HTTP 401" in str(info.value) and "sk-te" not in str(info.value)


def test_cached_answer_costs_no_request(loopback, api_key, tmp_path):
    client = LLMClient(backend(), LLMCache(tmp_path / "cache"))
    first = asyncio.run(client.complete(request()))
    client2 = LLMClient(backend(), LLMCache(tmp_path / "cache"))  # a new process, same cache
    second = asyncio.run(client2.complete(request()))
    assert loopback.count == 1
    assert second.text == first.text and second.cached and client2.usage.cache_hits == 1
    asyncio.run(client2.complete(request(temperature=0.5)))  # other sampling: another answer
    assert loopback.count == 2


def test_budget_stops_new_calls(loopback, api_key, tmp_path):
    # each call: ~3 prompt + ~18 completion tokens at $1 per 1k -> about $0.02
    client = LLMClient(backend(), LLMCache(tmp_path / "c"), Prices(1.0, 1.0), budget_usd=0.05,
                       concurrency=1)

    async def run() -> tuple[int, int]:
        ok = refused = 0
        for i in range(6):
            try:
                await client.complete(request(f"Question {i}?"))
                ok += 1
            except BudgetExhausted:
                refused += 1
        return ok, refused

    ok, refused = asyncio.run(run())
    assert ok == loopback.count and 1 < ok < 6 and refused == 6 - ok
    assert client.usage.cost_usd >= 0.05 and client.usage.budget_refused == refused


def test_concurrency_limit_is_respected(loopback, api_key):
    loopback.delay_s = 0.2
    client = LLMClient(backend(concurrency=4), concurrency=4)

    async def run() -> None:
        await asyncio.gather(*(client.complete(request(f"q{i}")) for i in range(8)))

    started = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - started
    assert loopback.count == 8 and 0.4 <= elapsed < 1.5  # two waves of four, not one of eight


def test_key_stays_out_of_logs_and_cache(loopback, api_key, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    loopback.faults.extend(["429", "401"])
    client = LLMClient(backend(), LLMCache(tmp_path / "cache"))
    with pytest.raises(LLMConfigError):
        asyncio.run(client.complete(request("first")))
    asyncio.run(client.complete(request("second")))
    assert f"Bearer {api_key}" in loopback.auth_headers  # it was used...
    assert api_key not in caplog.text  # ...but never logged
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert api_key.encode() not in path.read_bytes()


def test_temp_files_of_killed_writers_are_swept_and_never_counted(loopback, api_key, tmp_path):
    import os
    import time

    client = LLMClient(backend(), LLMCache(tmp_path / "cache"))
    asyncio.run(client.complete(request()))
    assert LLMCache(tmp_path / "cache").swept == 0  # a sweep: nothing left behind yet
    folder = next(p for p in (tmp_path / "cache").iterdir() if p.is_dir())
    stale, fresh = folder / ".tmp-killed.json", folder / ".tmp-writing.json"
    stale.write_text('{"half": ', encoding="utf-8")  # what a SIGKILL mid-write leaves
    fresh.write_text('{"half": ', encoding="utf-8")  # another process still writing
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    again = LLMCache(tmp_path / "cache")  # opened again at once (another task): no new listing
    assert again.swept == 0 and stale.exists()
    mark = tmp_path / "cache" / ".swept"
    os.utime(mark, (time.time() - 700, time.time() - 700))
    cache = LLMCache(tmp_path / "cache")  # the next run, ten minutes later
    assert cache.swept == 1 and not stale.exists() and fresh.exists()
    assert len(cache) == 1


def test_top_logprobs_come_back_and_a_cached_answer_without_them_never_stands_in(
        loopback, api_key, tmp_path):
    loopback.next_token = lambda body: [("7", 0.5), (" 8", 0.25), ("Hello", 0.25)]
    client = LLMClient(backend(), LLMCache(tmp_path / "cache"))
    plain = asyncio.run(client.complete(request(max_tokens=1, temperature=0.0)))
    assert plain.top_logprobs is None and "logprobs" not in loopback.requests[-1]
    asked = request(max_tokens=1, temperature=0.0, top_logprobs=2)
    first = asyncio.run(client.complete(asked))
    assert loopback.count == 2 and not first.cached  # the plain answer was not taken for it
    assert loopback.requests[-1]["logprobs"] is True and loopback.requests[-1]["top_logprobs"] == 2
    assert first.text == "7"
    assert first.top_logprobs == [pytest.approx({"7": math.log(0.5), " 8": math.log(0.25)})]
    again = asyncio.run(LLMClient(backend(), LLMCache(tmp_path / "cache")).complete(asked))
    assert loopback.count == 2 and again.cached and again.top_logprobs == first.top_logprobs


def test_tokens_spelled_alike_add_up_and_top_k_and_seed_reach_the_server(loopback, api_key):
    # two token ids can decode to the same text; a judge reads that text's probability
    loopback.next_token = lambda body: [("7", 0.3), ("7", 0.2), (" 8", 0.25)]
    result = asyncio.run(backend().complete(request(max_tokens=1, top_logprobs=3, top_k=50, seed=3)))
    assert result.top_logprobs == [pytest.approx({"7": math.log(0.5), " 8": math.log(0.25)})]
    body = loopback.requests[-1]
    assert body["top_k"] == 50 and body["seed"] == 3


def test_a_request_without_the_new_fields_keeps_its_cache_key():
    # answers cached before top log-probs, top_k and seed joined the contract still answer
    assert request().cache_key() == "f8e10f6fe732db6bb5f2528f2cf22bda186df61955b0a5f8dc07584835c0e0fe"
    assert request().sampling() == {"temperature": 1.0, "top_p": 1.0, "max_tokens": 512}
