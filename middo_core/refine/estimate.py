"""The cost of a refinement run before it runs: calls, tokens and dollars (nothing is called).

Answers already in the cache cost nothing, so a resumed run's estimate counts only what is left.
Output tokens are an upper bound (max_new_tokens per call); prompt tokens assume ~4 characters
per token, and a response prompt the size of its source prompt when its rewrite is not known yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from middo_core.llm import LLMCache, Prices

if TYPE_CHECKING:
    from middo_core.refine.pipeline import Job, Runner


def estimate_run(jobs: list[Job], runner: Runner, cache: LLMCache, prices: Prices,
                 budget_usd: float | None) -> dict[str, Any]:
    calls = cached = prompt_tokens = completion_tokens = 0

    def count(request) -> None:
        nonlocal calls, prompt_tokens, completion_tokens
        calls += 1
        prompt_tokens += request.approx_prompt_tokens()
        completion_tokens += request.max_tokens

    for job in jobs:
        request, prompted = runner.rewrite_request(job)
        hit = cache.get(request)
        if hit is None:
            count(request)
            count(runner.response_request(job.source.prompt, job.attempt))
            continue
        cached += 1
        parsed = runner.parse_rewrite(job, prompted, hit.text)
        if not parsed.ok:
            continue  # the proposal fails on its cached answer; no second call
        second = runner.response_request(parsed.text, job.attempt)
        if cache.get(second) is None:
            count(second)
        else:
            cached += 1
    cost = prices.cost(prompt_tokens, completion_tokens)
    return {
        "proposals": len(jobs),
        "calls": calls,
        "cached_calls": cached,
        "prompt_tokens": prompt_tokens,
        "completion_tokens_max": completion_tokens,
        "cost_usd_max": round(cost, 6),
        "budget_usd": budget_usd,
        "within_budget": budget_usd is None or cost <= budget_usd,
    }
