"""The local transformers backend with a tiny in-process model (its text is gibberish by design)."""

from __future__ import annotations

import asyncio

from middo_core.llm import ChatRequest, LLMCache, LLMClient, LocalBackend


def req(text: str, **kw) -> ChatRequest:
    return ChatRequest(model="tiny", messages=(("user", text),), temperature=0.0, max_tokens=8, **kw)


def test_batched_generation_matches_one_by_one(tiny_model):
    prompts = ["Hi", "Write a long story about a dragon who guards a library of old maps."]
    alone = []
    for p in prompts:
        b = LocalBackend(model=tiny_model, batch_size=1)
        alone.append(asyncio.run(b.complete(req(p))).text)
    batched = LocalBackend(model=tiny_model, batch_size=8)

    async def both():
        return await asyncio.gather(*(batched.complete(req(p)) for p in prompts))

    results = asyncio.run(both())
    assert [r.text for r in results] == alone  # left padding does not change greedy output
    assert batched.stats.requests == 2
    assert all(r.prompt_tokens > 0 and 0 < r.completion_tokens <= 8 for r in results)
    assert results[1].prompt_tokens > results[0].prompt_tokens


def test_prefill_starts_the_answer_and_cache_skips_generation(tiny_model, tmp_path):
    cache = LLMCache(tmp_path / "cache")
    first = LLMClient(LocalBackend(model=tiny_model), cache)
    a = asyncio.run(first.complete(req("Make it simpler.", prefill="FINAL PROMPT:")))
    assert a.text.startswith("FINAL PROMPT:")
    again = LocalBackend(model=tiny_model)
    b = asyncio.run(LLMClient(again, cache).complete(req("Make it simpler.", prefill="FINAL PROMPT:")))
    assert b.cached and b.text == a.text and again.stats.requests == 0 and again._model is None
