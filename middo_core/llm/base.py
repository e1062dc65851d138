"""The one LLM contract: a chat request in, a completion out; backends register by name."""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from middo_core.registry import Registry


class LLMError(RuntimeError):
    """A request failed for good (after retries); `reason` is one short sentence for the store."""

    def __init__(self, reason: str, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class LLMConfigError(LLMError):
    """The endpoint refuses every request (bad key, unknown model): stop the run instead."""


class BudgetExhausted(RuntimeError):
    """The run's cost cap is reached: no new paid call is issued."""


TopLogprobs = list[dict[str, float]]
"""Per generated token of the answer's text, its most likely tokens: {token text: log-prob}."""


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion. `prefill` starts the assistant's answer (local backend only);
    `attempt` > 0 asks for a fresh sample instead of the cached one (retrying a failed proposal);
    `top_logprobs` asks for the N most likely tokens at each generated position (a judge reads
    the first one's). `top_k` and `seed` are sent where the backend takes them."""

    model: str
    messages: tuple[tuple[str, str], ...]  # (role, content)
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    prefill: str = ""
    attempt: int = 0
    stage: str = "rewrite"  # rewrite | response | judge: scheduling hint, not part of the key
    top_k: int | None = None
    seed: int | None = None
    top_logprobs: int | None = None

    def sampling(self) -> dict[str, Any]:
        """The parameters that shape the answer; the optional ones only when set, so that the
        keys of requests that never set them stay what they were."""
        params: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p,
                                  "max_tokens": self.max_tokens}
        for name in ("top_k", "seed", "top_logprobs"):
            if getattr(self, name) is not None:
                params[name] = getattr(self, name)
        return params

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def cache_key(self) -> str:
        """sha256 of model + messages + sampling parameters (+ prefill, attempt when set)."""
        payload: dict[str, Any] = {"model": self.model, "messages": self.message_dicts(),
                                   "params": self.sampling()}
        if self.prefill:
            payload["prefill"] = self.prefill
        if self.attempt:
            payload["attempt"] = self.attempt
        blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def approx_prompt_tokens(self) -> int:
        # ~4 characters per token for English text: good enough for an estimate before a run
        return sum(len(c) for _, c in self.messages) // 4 + 4 * len(self.messages)


@dataclass
class ChatResult:
    """An answer; `top_logprobs` is filled when the request asked for it and the backend gave it."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    cached: bool = False
    top_logprobs: TopLogprobs | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text": self.text, "prompt_tokens": self.prompt_tokens,
                                "completion_tokens": self.completion_tokens,
                                "finish_reason": self.finish_reason}
        if self.top_logprobs is not None:
            data["top_logprobs"] = self.top_logprobs
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], cached: bool = False) -> ChatResult:
        top = data.get("top_logprobs")
        return cls(text=data["text"], prompt_tokens=int(data.get("prompt_tokens", 0)),
                   completion_tokens=int(data.get("completion_tokens", 0)),
                   finish_reason=data.get("finish_reason", "stop"), cached=cached,
                   top_logprobs=None if top is None else [
                       {str(t): float(lp) for t, lp in position.items()} for position in top])


def top_tokens(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    """{token: log-prob} from (token, log-prob) pairs. Two token ids can spell the same text
    (" 7" twice in some vocabularies): their probabilities add up, as that text's."""
    top: dict[str, float] = {}
    for token, logprob in pairs:
        top[token] = logprob if token not in top else _logaddexp(top[token], logprob)
    return top


def _logaddexp(a: float, b: float) -> float:
    high, low = max(a, b), min(a, b)
    return high if low == -math.inf else high + math.log1p(math.exp(low - high))


@dataclass
class BackendStats:
    """What a backend did in this process: requests sent, retries and why."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)

    def count_retry(self, reason: str) -> None:
        self.retries += 1
        self.retry_reasons[reason] = self.retry_reasons.get(reason, 0) + 1


class LLMBackend(ABC):
    """A chat model behind `complete`. Heavy setup happens on first use, inside the run."""

    name: ClassVar[str]
    supports_prefill: ClassVar[bool] = False  # can start the answer with given text
    max_tokens_cap: int | None = None  # a backend's own ceiling on tokens per call
    model: str
    stats: BackendStats

    @abstractmethod
    async def complete(self, request: ChatRequest) -> ChatResult: ...

    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Import what the first call needs (run in a thread while a run plans its work)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients and models at the end of a run."""

    def describe(self) -> dict[str, Any]:
        """What a proposal records about the backend (never secrets)."""
        return {"backend": self.name, "model": self.model}

    @classmethod
    def from_config(cls, config: Any, model: str) -> LLMBackend:
        """Build from middo.yaml's `refine` section (RefineConfig)."""
        return cls(model=model)  # type: ignore[call-arg]


BACKENDS: Registry[LLMBackend] = Registry("LLM backend")
