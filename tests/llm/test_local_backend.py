"""The local transformers backend with a tiny in-process model (its text is gibberish by design)."""

from __future__ import annotations

import asyncio

import pytest

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


def test_top_logprobs_are_the_model_own_next_token_distribution(tiny_model, tmp_path):
    import torch

    cache = LLMCache(tmp_path / "cache")
    backend = LocalBackend(model=tiny_model, batch_size=8)
    client = LLMClient(backend, cache)

    async def both():  # asked together: they differ in what they return, so in their batch
        return await asyncio.gather(client.complete(req("Hi")),
                                    client.complete(req("Hi", top_logprobs=5)))

    plain, with_top = asyncio.run(both())
    assert plain.top_logprobs is None and plain.text == with_top.text
    assert len(with_top.top_logprobs) == with_top.completion_tokens > 0
    assert all(0 < len(p) <= 5 and max(p.values()) <= 0 for p in with_top.top_logprobs)
    # the first position is the prompt's next-token distribution under the model itself
    tok, model = backend._tok, backend._model
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                     tokenize=False)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(ids).logits[0, -1].float(), dim=-1)
    values, top_ids = logprobs.topk(5)
    expected = {tok.decode([t]): v for t, v in zip(top_ids.tolist(), values.tolist(), strict=True)}
    assert with_top.top_logprobs[0] == pytest.approx(expected, abs=1e-3)
    again = asyncio.run(LLMClient(LocalBackend(model=tiny_model), cache).complete(req("Hi", top_logprobs=5)))
    assert again.cached and again.top_logprobs == with_top.top_logprobs
