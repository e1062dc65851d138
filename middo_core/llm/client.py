"""The LLM client a run uses: cache first, then the budget check, then the backend; usage and cost."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
from collections.abc import Coroutine
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from middo_core.llm.base import BudgetExhausted, ChatRequest, ChatResult, LLMBackend
from middo_core.llm.cache import LLMCache

log = logging.getLogger("middo.llm")
T = TypeVar("T")


@dataclass(frozen=True)
class Prices:
    """USD per 1,000 tokens (refine.price_per_1k_input / price_per_1k_output)."""

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens / 1000 * self.input_per_1k + completion_tokens / 1000 * self.output_per_1k


@dataclass
class Usage:
    """What a run asked for and paid: paid calls, cache hits, tokens, cost, calls refused by budget."""

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    budget_refused: int = 0

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


class PrioritySlots:
    """A semaphore whose waiters with a lower priority number go first (FIFO among equals).

    Second calls (responses) go before new first calls (rewrites), so proposals finish one by one
    instead of all at the end: the store fills steadily, and a stopped run keeps more.
    """

    def __init__(self, n: int) -> None:
        self.free = n
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._seq = itertools.count()

    async def acquire(self, priority: int = 0) -> None:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # granted just as we were cancelled: pass the slot on
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


class LLMClient:
    def __init__(self, backend: LLMBackend, cache: LLMCache | None = None,
                 prices: Prices | None = None, budget_usd: float | None = None,
                 concurrency: int = 16) -> None:
        self.backend = backend
        self.cache = cache
        self.prices = prices or Prices()
        self.budget_usd = budget_usd
        self.concurrency = concurrency
        self.usage = Usage()
        self._slots: PrioritySlots | None = None

    @property
    def budget_reached(self) -> bool:
        return self.budget_usd is not None and self.usage.cost_usd >= self.budget_usd

    async def complete(self, request: ChatRequest) -> ChatResult:
        """A cached answer costs nothing; otherwise one paid call, at most `concurrency` at once.

        The budget is checked when a call gets its slot, so once the cap is reached no new call
        starts (BudgetExhausted); calls already in flight finish, so a run overshoots the cap by
        at most `concurrency` calls.
        """
        if self.cache is not None:
            hit = self.cache.get(request)
            if hit is not None:
                self.usage.cache_hits += 1
                return hit
        if self._slots is None:
            self._slots = PrioritySlots(self.concurrency)
        await self._slots.acquire(0 if request.stage == "response" else 1)
        try:
            if self.budget_reached:
                self.usage.budget_refused += 1
                raise BudgetExhausted(f"budget of ${self.budget_usd:.4f} reached")
            result = await self.backend.complete(request)
        finally:
            self._slots.release()
        if self.cache is not None:
            self.cache.put(request, result)  # before anything else: a crash now loses nothing paid
        self.usage.calls += 1
        self.usage.prompt_tokens += result.prompt_tokens
        self.usage.completion_tokens += result.completion_tokens
        self.usage.cost_usd += self.prices.cost(result.prompt_tokens, result.completion_tokens)
        return result

    def cost_of(self, result: ChatResult) -> float:
        return 0.0 if result.cached else self.prices.cost(result.prompt_tokens, result.completion_tokens)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to its end from synchronous code (refinement, the endpoint judge): in this
    thread, or in a thread of its own where this one already runs an event loop (notebooks,
    some apps, a worker inside async code), since asyncio.run cannot nest."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
