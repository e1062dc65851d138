"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM serve, llama.cpp server, Ollama).

The endpoint and key come from the environment (OPENAI_BASE_URL; OPENAI_API_KEY, or
OPENAI_API_KEY_FILE naming a secrets file that holds the key) and live only in the client
object: they are never part of a request record, the cache, the store or a log line.
The openai package's own retries are off; ours are counted and honour Retry-After.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from middo_core.llm.base import (
    BACKENDS,
    BackendStats,
    ChatRequest,
    ChatResult,
    LLMBackend,
    LLMConfigError,
    LLMError,
    TopLogprobs,
    top_tokens,
)

log = logging.getLogger("middo.llm")
MAX_RETRY_AFTER_S = 120.0


@BACKENDS.register
@dataclass(eq=False)
class OpenAIBackend(LLMBackend):
    name: ClassVar[str] = "openai"
    model: str = "gpt-4o-mini"
    base_url: str | None = None  # None: OPENAI_BASE_URL, else the openai package's default
    concurrency: int = 16
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    stats: BackendStats = field(default_factory=BackendStats)
    _client: Any = field(default=None, init=False, repr=False)
    _sem: asyncio.Semaphore | None = field(default=None, init=False, repr=False)
    _loop: Any = field(default=None, init=False, repr=False)

    def _setup(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # a client's pooled connections belong to one event loop: a new loop gets a new client
            import openai

            self._loop = loop

            base_url, api_key = self._credentials()
            if not api_key:
                if base_url is None:
                    raise LLMConfigError(
                        "the openai backend needs OPENAI_API_KEY in the environment, or "
                        "OPENAI_API_KEY_FILE naming a file that holds the key (or OPENAI_BASE_URL "
                        "pointing at a server that needs no key)")
                api_key = "no-key"  # local servers (vLLM, llama.cpp, Ollama) accept any key
            self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key,
                                              max_retries=0, timeout=self.timeout_s)
            self._sem = asyncio.Semaphore(self.concurrency)
        return self._client

    def _credentials(self) -> tuple[str | None, str | None]:
        """(base URL, API key) for the client; neither leaves the client object."""
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or None, api_key_from_env()

    def warm_up(self) -> None:
        import openai  # noqa: F401 - about half a second of imports, off the critical path

    def endpoint(self) -> str:
        """Where requests go (for messages; holds no credentials)."""
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"

    async def complete(self, request: ChatRequest) -> ChatResult:
        client = self._setup()
        assert self._sem is not None
        async with self._sem:  # held through backoff too: a rate-limited endpoint gets less load
            attempt = 0
            while True:
                self.stats.requests += 1
                try:
                    response = await client.chat.completions.create(**self._arguments(request))
                    return _result(response, request)
                except Exception as exc:  # noqa: BLE001 - sorted into retry / fail below
                    kind, delay, fatal = self._classify(exc)
                    if fatal:
                        self.stats.failures += 1
                        raise LLMConfigError(f"{self.endpoint()}: {kind}") from None
                    if kind is None:
                        raise
                    if attempt >= self.max_retries:
                        self.stats.failures += 1
                        raise LLMError(f"{kind} (gave up after {attempt + 1} attempts)",
                                       retryable=True) from None
                    wait = delay if delay is not None else self._backoff(attempt)
                    self.stats.count_retry(kind.split(":")[0])
                    log.warning("LLM request: %s; retry %d/%d in %.2f s", kind, attempt + 1,
                                self.max_retries, wait)
                    attempt += 1
                    await asyncio.sleep(wait)

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        args: dict[str, Any] = {"model": request.model, "messages": request.message_dicts(),
                                "temperature": request.temperature, "top_p": request.top_p,
                                "max_tokens": request.max_tokens}
        if request.seed is not None:
            args["seed"] = request.seed
        if request.top_logprobs is not None:
            args.update(logprobs=True, top_logprobs=request.top_logprobs)
        if request.top_k is not None and "api.openai.com" not in self.endpoint():
            args["extra_body"] = {"top_k": request.top_k}  # vLLM, llama.cpp take it; OpenAI rejects it
        return args

    def _backoff(self, attempt: int) -> float:
        # exponential, with jitter so many waiting requests do not return at the same instant
        return min(self.backoff_max_s, self.backoff_base_s * 2**attempt) * random.uniform(0.5, 1.0)

    def _classify(self, exc: Exception) -> tuple[str | None, float | None, bool]:
        """(reason, server-requested delay, fatal). reason None: not an endpoint problem."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return f"timeout after {self.timeout_s:g} s", None, False
        if isinstance(exc, openai.APIConnectionError):
            return "connection error", None, False
        if isinstance(exc, openai.APIStatusError):
            code = exc.status_code
            if code == 429 or code >= 500 or code == 408:
                return f"HTTP {code}", _retry_after(exc.response.headers), False
            return f"HTTP {code}: {_short(exc)}", None, code in (401, 403, 404)
        if isinstance(exc, (ValueError, KeyError, IndexError, TypeError, openai.APIResponseValidationError)):
            return "malformed response", None, False
        return None, None, False

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client, self._sem = None, None  # the next run gets a client on its own event loop

    @classmethod
    def from_config(cls, config: Any, model: str) -> OpenAIBackend:
        return cls(model=model, concurrency=config.concurrency, timeout_s=config.timeout_s,
                   max_retries=config.max_retries)


def _result(response: Any, request: ChatRequest) -> ChatResult:
    if not getattr(response, "choices", None):
        raise ValueError("no choices in the answer")
    choice = response.choices[0]
    text = choice.message.content
    if text is None:
        raise ValueError("no message content in the answer")
    usage = getattr(response, "usage", None)
    return ChatResult(
        text=text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        finish_reason=choice.finish_reason or "stop",
        top_logprobs=_top_logprobs(choice) if request.top_logprobs is not None else None,
    )


def _top_logprobs(choice: Any) -> TopLogprobs | None:
    """choice.logprobs.content[i].top_logprobs as {token: log-prob} per token; None where the
    server gave none (some OpenAI-compatible servers ignore the request)."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return [top_tokens((t.token, float(t.logprob)) for t in (position.top_logprobs or []))
            for position in content]


def _retry_after(headers: Any) -> float | None:
    """Retry-After in seconds or as an HTTP date; retry-after-ms where a server sends that."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return min(MAX_RETRY_AFTER_S, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, parsed.timestamp() - time.time()))


def _short(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    message = str(exc)
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("error", {}).get("message") or message)
    return scrub(message)[:200]


_KEY_LIKE = re.compile(r"\b(sk|key|token)-[A-Za-z0-9_\-*.]{4,}", re.IGNORECASE)
KEY_FILE_ENV = "OPENAI_API_KEY_FILE"


def api_key_from_env() -> str | None:
    """The API key: the contents of the file named by OPENAI_API_KEY_FILE when set (a secrets
    file, e.g. mounted by the platform, mode 600), else OPENAI_API_KEY. Never logged or stored."""
    path = os.environ.get(KEY_FILE_ENV)
    if path:
        try:
            key = Path(path).expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise LLMConfigError(f"cannot read the API key file {path} ({KEY_FILE_ENV}): {reason}") from None
        if not key:
            raise LLMConfigError(f"the API key file {path} ({KEY_FILE_ENV}) is empty")
        return key
    return os.environ.get("OPENAI_API_KEY") or None


def scrub(text: str) -> str:
    """Remove anything key-like from a server message before it is stored or logged
    (providers echo a masked key in 401 messages)."""
    for key in (os.environ.get("OPENAI_API_KEY"), _file_key()):
        if key:
            text = text.replace(key, "***")
    return _KEY_LIKE.sub("***", text)


def _file_key() -> str | None:
    try:
        return api_key_from_env() if os.environ.get(KEY_FILE_ENV) else None
    except LLMConfigError:
        return None
