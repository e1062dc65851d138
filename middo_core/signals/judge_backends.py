"""Where the self-judge runs: transformers (default, CPU/GPU), vLLM (in-process where it imports,
else its managed server), an OpenAI-compatible endpoint.

Each backend rates samples on the six metrics and returns a `JudgeResult`; `QualitySignal` turns
that into its table. Heavy libraries are imported inside `rate`.
"""

from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, TypeVar

from middo_core.progress import ProgressFn, report
from middo_core.registry import Registry
from middo_core.signals.judge_prompts import METRICS, JudgeTemplates, PromptBuilder, parse_rating

if TYPE_CHECKING:
    from middo_core.llm.vllm_engine import Engine
    from middo_core.signals.quality import QualitySignal

STAGE = "quality: self-judge"
TOP_LOGPROBS = 20  # an endpoint's top log-probs per position: the most api.openai.com gives
Token = TypeVar("Token", int, str)  # a token id (vLLM), or its text (an endpoint)


@dataclass
class JudgeResult:
    ratings: list[list[float]] = field(default_factory=list)  # one row of six per sample
    unparseable: int = 0  # generated replies without a number (scored 0, as in the paper)
    tokens_fed: int = 0
    positions_fed: int = 0  # tokens_fed plus padding (transformers backend; 0 elsewhere)
    forward_calls: int = 0
    score_mass: list[float] = field(default_factory=list)  # P(score token) before renormalizing


JUDGE_BACKENDS: Registry = Registry("judge backend")


def _sampling(signal: QualitySignal):
    from middo_core.signals.judge_transformers import Sampling

    return Sampling(signal.temperature, signal.top_p, signal.top_k, signal.max_new_tokens, signal.seed)


@JUDGE_BACKENDS.register
class TransformersJudge:
    """The model passed in; the shared layout reuses the common head's and each sample's KV cache."""

    name: ClassVar[str] = "transformers"

    def rate(self, signal, samples, model, tokenizer, progress: ProgressFn | None) -> JudgeResult:
        import torch

        from middo_core.signals.judge_transformers import Counter, Rows

        builder = PromptBuilder(JudgeTemplates.load(), tokenizer, signal.prompt_format, signal.max_len)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        counter, result = Counter(), JudgeResult()
        generator = torch.Generator().manual_seed(signal.seed)
        flat: list[float] = []

        def score(rows: Rows, logits) -> None:
            if signal.mode == "logprobs":
                from middo_core.signals.judge_transformers import expected_scores

                values, mass = expected_scores(rows, logits, builder.score, pad)
                flat.extend(values)
                result.score_mass.extend(mass)
                return
            from middo_core.signals.judge_transformers import generate_replies

            for reply in generate_replies(rows, logits, tokenizer, _sampling(signal), generator):
                rating = parse_rating(reply)
                result.unparseable += rating is None
                flat.append(0.0 if rating is None else rating)

        report(progress, STAGE, 0, len(samples))
        if signal.faithful:  # the paper's layout: every prompt fed in full, batch_size prompts a call
            prompts = [p for s in samples for p in builder.faithful(s)]
            for start in range(0, len(prompts), signal.batch_size):
                rows = Rows(model, counter=counter)
                score(rows, rows.extend(prompts[start : start + signal.batch_size], pad))
                report(progress, STAGE, min((start + signal.batch_size) // 6, len(samples)), len(samples))
            result.ratings = [flat[i : i + 6] for i in range(0, len(flat), 6)]
        else:
            # The head (chat header + intro) is the same for every sample: fed once, its KV cache
            # copied into each batch, so each sample feeds only its own tokens and six questions.
            # Batches take samples of similar length: every row of a batch is padded to its
            # longest, and padding is work thrown away (on Alpaca records, 48% of the positions
            # fed in input order were padding, 13% in length order). Ratings go back by index.
            head = Rows(model, counter=counter)
            head.extend([builder.head], pad)
            cut = len(builder.head)
            all_trees = [builder.tree(s) for s in samples]
            order = sorted(range(len(samples)),
                           key=lambda i: len(all_trees[i].trunk) + len(all_trees[i].branch))
            ratings: list[list[float]] = [[] for _ in samples]
            for start in range(0, len(samples), signal.batch_size):
                chunk = order[start : start + signal.batch_size]
                trees = [all_trees[i] for i in chunk]
                rows = head.select([0] * len(chunk))
                rows.extend([t.trunk[cut:] for t in trees], pad)
                fanout = [i for i in range(len(chunk)) for _ in range(3)]
                instr = rows.select(fanout)  # copy the trunk before the response extends it
                flat.clear()
                score(instr, instr.extend([q for t in trees for q in t.questions[:3]], pad))
                instr_scores = list(flat)
                flat.clear()
                rows.extend([t.branch for t in trees], pad)
                resp = rows.select(fanout)
                score(resp, resp.extend([q for t in trees for q in t.questions[3:]], pad))
                for j, i in enumerate(chunk):
                    ratings[i] = instr_scores[3 * j : 3 * j + 3] + flat[3 * j : 3 * j + 3]
                report(progress, STAGE, start + len(chunk), len(samples))
            result.ratings = ratings
        result.tokens_fed, result.forward_calls = counter.tokens_fed, counter.forward_calls
        result.positions_fed = counter.positions_fed
        return result


def _expected_from_logprobs(top: dict[Token, float], score_of: dict[Token, int]) -> tuple[float, float]:
    """Expected score from top next-token log-probs restricted to score tokens; (score, mass)."""
    probs = [(score_of[t], math.exp(lp)) for t, lp in top.items() if t in score_of]
    mass = sum(p for _, p in probs)  # " 7" and "7" may both appear: their mass adds up
    if mass == 0:
        return 0.0, 0.0
    return sum(k * p for k, p in probs) / mass, mass


_VLLM_ENGINES: dict = {}  # one in-process engine per (model, length): diagnosis rates in chunks


def vllm_engine(signal, model) -> Engine:
    """The engine the vllm backend rates on: vLLM in this process where it imports (the `vllm`
    extra), else the model's product-managed `vllm serve` (vLLM's own environment, `make setup`)."""
    import importlib.util

    from middo_core.llm.vllm_engine import LocalEngine, ServedEngine
    from middo_core.models.loader import resolve_model_path

    name = signal.vllm_model or getattr(model, "name_or_path", None)
    if not name:
        raise ValueError("vllm backend: set vllm_model (a model name or folder) or pass a loaded model")
    if importlib.util.find_spec("vllm") is None:
        return ServedEngine.managed(str(name))  # one server per model name, shared with refinement
    key = (str(name), signal.max_len)
    if key not in _VLLM_ENGINES:
        _VLLM_ENGINES.clear()
        _VLLM_ENGINES[key] = LocalEngine(resolve_model_path(str(name)),
                                         signal.max_len + signal.max_new_tokens + 16)
    return _VLLM_ENGINES[key]


@JUDGE_BACKENDS.register
class VLLMJudge:
    """vLLM's engine, in this process or as the managed server: every prompt in full, as token
    ids (its automatic prefix caching shares the common parts)."""

    name: ClassVar[str] = "vllm"

    def rate(self, signal, samples, model, tokenizer, progress: ProgressFn | None,
             engine: Engine | None = None) -> JudgeResult:
        from middo_core.llm.vllm_engine import Sampling

        engine = engine or vllm_engine(signal, model)
        builder = PromptBuilder(JudgeTemplates.load(), tokenizer, signal.prompt_format, signal.max_len)
        prompts = [
            p for s in samples
            for p in (builder.faithful(s) if signal.faithful else _tree_prompts(builder.tree(s)))
        ]
        result = JudgeResult(tokens_fed=sum(map(len, prompts)), forward_calls=1)
        report(progress, STAGE, 0, len(samples))

        def step(done: int, total: int) -> None:
            report(progress, STAGE, done * len(samples) // max(total, 1), len(samples))

        flat: list[float] = []
        if signal.mode == "logprobs":
            st = builder.score
            tops = engine.next_logprobs(prompts, TOP_LOGPROBS, step)
            score_of = {tid: i for i, tid in enumerate(st.digit_ids)}
            if st.ten_id is not None:
                score_of[st.ten_id] = 10
            if st.ten_two_step:  # split P("1") by whether a digit follows it
                follow = engine.next_logprobs([[*p, st.digit_ids[1]] for p in prompts], TOP_LOGPROBS)
                for top, nxt in zip(tops, follow, strict=True):
                    q = sum(math.exp(lp) for t, lp in nxt.items() if t in st.digit_ids)
                    p1 = math.exp(top.pop(st.digit_ids[1], -math.inf))
                    top[-1], top[-2] = math.log(max(p1 * (1 - q), 1e-30)), math.log(max(p1 * q, 1e-30))
                score_of = {**score_of, -1: 1, -2: 10}
            for top in tops:
                value, mass = _expected_from_logprobs(top, score_of)
                flat.append(value)
                result.score_mass.append(mass)
        else:
            sampling = Sampling(temperature=signal.temperature, top_p=signal.top_p,
                                top_k=signal.top_k, max_tokens=signal.max_new_tokens, seed=signal.seed)
            for text in engine.generate(prompts, sampling, step):
                rating = parse_rating(text)
                result.unparseable += rating is None
                flat.append(0.0 if rating is None else rating)
        result.ratings = [flat[i : i + 6] for i in range(0, len(flat), 6)]
        report(progress, STAGE, len(samples), len(samples))
        return result


def _tree_prompts(tree) -> list[list[int]]:
    return [tree.prompt(i) for i in range(len(METRICS))]


@JUDGE_BACKENDS.register
class EndpointJudge:
    """An OpenAI-compatible chat endpoint (OPENAI_BASE_URL, OPENAI_API_KEY or OPENAI_API_KEY_FILE;
    model: endpoint_model), asked through an `LLMClient` as refinement asks: retries with backoff,
    and the cache and budget of the client handed over with `QualitySignal.use_llm`.

    logprobs mode asks for the top-20 log-probs of the first reply token; a server that gives
    none falls back to reading the number in the reply, as in generate mode. The first error
    (a spent budget, a refused key) stops the run once the requests in flight have finished:
    what they paid for is cached, so a rerun asks only for the rest.
    """

    name: ClassVar[str] = "endpoint"

    def rate(self, signal, samples, model, tokenizer, progress: ProgressFn | None) -> JudgeResult:
        from middo_core.llm import run_sync

        default = signal.llm.backend.model if signal.llm else os.environ.get("OPENAI_MODEL")
        model_name = signal.endpoint_model or default
        if not model_name:
            raise ValueError("endpoint backend: set endpoint_model or the OPENAI_MODEL variable")
        client = signal.llm or _endpoint_client(signal, model_name)
        templates = JudgeTemplates.load()
        jobs = [
            templates.body(s, target, dim, signal.faithful) for s in samples for target, dim in METRICS
        ]
        answers = run_sync(_ask_all(client, signal, model_name, jobs, len(samples), progress))
        result = JudgeResult(tokens_fed=0, forward_calls=len(jobs))
        flat: list[float] = []
        for rating, mass, tokens in answers:
            result.unparseable += rating is None
            result.tokens_fed += tokens
            flat.append(0.0 if rating is None else rating)
            if mass is not None:
                result.score_mass.append(mass)
        result.ratings = [flat[i : i + 6] for i in range(0, len(flat), 6)]
        return result


def _endpoint_client(signal, model_name: str):
    """The client a signal without `use_llm` gets: retries, no cache, no budget."""
    from middo_core.llm import LLMClient, OpenAIBackend

    backend = OpenAIBackend(model=model_name, timeout_s=signal.endpoint_timeout_s,
                            concurrency=signal.endpoint_concurrency)
    return LLMClient(backend, concurrency=signal.endpoint_concurrency)


Answer = tuple[float | None, float | None, int]  # (rating or None, score mass, prompt tokens)


async def _ask_all(client, signal, model_name: str, jobs: list[str], n_samples: int,
                   progress: ProgressFn | None) -> list[Answer]:
    """Every prompt's answer, in order, with at most `client.concurrency` asked at once."""
    from middo_core.llm import ChatRequest

    async def ask(body: str) -> Answer:
        messages = (("user", body),)
        if signal.mode == "logprobs":
            r = await client.complete(ChatRequest(
                model=model_name, messages=messages, max_tokens=1, temperature=0.0,
                top_logprobs=TOP_LOGPROBS, stage="judge"))
            if r.top_logprobs:
                first = r.top_logprobs[0]
                value, mass = _expected_from_logprobs(first, _score_tokens(first))
                if mass > 0:
                    return value, mass, r.prompt_tokens
        r = await client.complete(ChatRequest(
            model=model_name, messages=messages, max_tokens=signal.max_new_tokens,
            temperature=signal.temperature, top_p=signal.top_p, top_k=signal.top_k,
            seed=signal.seed, stage="judge"))
        return parse_rating(r.text), None, r.prompt_tokens

    answers: list[Answer | None] = [None] * len(jobs)
    todo = iter(enumerate(jobs))  # shared by the workers: each prompt is taken once
    failures: list[Exception] = []
    done = 0

    async def worker() -> None:
        nonlocal done
        for i, body in todo:
            if failures:
                return  # stop taking prompts; those in flight finish and are cached
            try:
                answers[i] = await ask(body)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the others stop
                failures.append(exc)
                return
            done += 1
            if done % 6 == 0:
                report(progress, STAGE, done // 6, n_samples)

    report(progress, STAGE, 0, n_samples)
    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(client.concurrency, len(jobs))))))
    finally:
        await client.backend.aclose()  # its connections belong to this event loop
    if failures:
        raise failures[0]
    return answers  # type: ignore[return-value] - every slot is filled when nothing failed


def _score_tokens(top: dict[str, float]) -> dict[str, int]:
    """The tokens among `top` that spell a score 0..10 (" 7" and "7" both count as 7)."""
    return {t: int(t.strip()) for t in top if t.strip().isdecimal() and int(t.strip()) <= 10}
