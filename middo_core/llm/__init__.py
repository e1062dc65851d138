"""LLM access for refinement and the endpoint judge: one contract (ChatRequest -> ChatResult,
top log-probs included), backends by name, an on-disk answer cache, usage, cost and a budget cap."""

from middo_core.llm.base import (
    BACKENDS,
    BudgetExhausted,
    ChatRequest,
    ChatResult,
    LLMBackend,
    LLMConfigError,
    LLMError,
    TopLogprobs,
)
from middo_core.llm.cache import LLMCache
from middo_core.llm.client import LLMClient, Prices, Usage, run_sync
from middo_core.llm.local_backend import LocalBackend
from middo_core.llm.openai_backend import OpenAIBackend
from middo_core.llm.vllm_backend import VLLMBackend

__all__ = ["BACKENDS", "BudgetExhausted", "ChatRequest", "ChatResult", "LLMBackend", "LLMCache",
           "LLMClient", "LLMConfigError", "LLMError", "LocalBackend", "OpenAIBackend", "Prices",
           "TopLogprobs", "Usage", "VLLMBackend", "make_backend", "resolve_backend", "run_sync"]


def make_backend(config, name: str | None = None, model: str | None = None) -> LLMBackend:
    """The backend named in middo.yaml's `refine` section (RefineConfig), or `name`/`model`."""
    return BACKENDS.get(resolve_backend(name or config.backend)).from_config(config, model or config.model)


def resolve_backend(name: str) -> str:
    """`auto` (the default): the managed vLLM server where vLLM's environment is installed (it
    generated 6.5x the local backend's tokens/s on 2 CPU cores, docs/BENCHMARKS.md), else the
    local transformers backend. Any other name is itself."""
    if name != "auto":
        return name
    from middo_core.llm.vllm_server import vllm_installed

    return "vllm" if vllm_installed() else "local"
