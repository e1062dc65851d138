"""A local chat model through transformers (offline default: the packaged SmolLM2-135M-Instruct).

Requests arrive one by one from many coroutines; a small scheduler gathers them into batches
(left padding, the tokenizer's chat template) and runs generation in a worker thread, so the
event loop keeps feeding work while the model computes. Second-stage requests (responses) go
first, so proposals complete early and a stopped run keeps the most.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
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


@BACKENDS.register
@dataclass(eq=False)
class LocalBackend(LLMBackend):
    name: ClassVar[str] = "local"
    supports_prefill: ClassVar[bool] = True
    model: str = "smollm2-135m"  # alias, local folder or hub id (see middo_core.models.loader)
    device: str = "auto"
    batch_size: int = 16  # decoding a small model on CPU costs about the same for 1 or 16 rows
    max_tokens_cap: int | None = 128  # small local models ramble; None: as the request asks
    max_prompt_tokens: int = 2048  # longer prompts keep their end (the instructions and marker)
    seed: int = 0
    stats: BackendStats = field(default_factory=BackendStats)
    _model: Any = field(default=None, init=False, repr=False)
    _tok: Any = field(default=None, init=False, repr=False)
    _queue: list[tuple[ChatRequest, asyncio.Future]] = field(default_factory=list, init=False, repr=False)
    _worker: asyncio.Task | None = field(default=None, init=False, repr=False)

    def setup(self) -> None:
        if self._model is None:
            from middo_core.models.loader import load_model

            self._model, self._tok = load_model(self.model, device=self.device)
            self._tok.padding_side = "left"  # generation continues from the right edge
            if self._tok.pad_token is None:
                self._tok.pad_token = self._tok.eos_token

    async def complete(self, request: ChatRequest) -> ChatResult:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            await asyncio.sleep(0)  # let every coroutine that is ready enqueue its request first
            if self._model is None:
                try:
                    await asyncio.to_thread(self.setup)
                except Exception as exc:  # noqa: BLE001 - a model that cannot load stops the run
                    error = LLMConfigError(f"cannot load local model '{self.model}': {exc}"[:300])
                    for _, fut in self._queue:
                        if not fut.done():
                            fut.set_exception(error)
                    self._queue.clear()
                    return
            batch = self._next_batch()
            try:
                results = await asyncio.to_thread(self._generate, [r for r, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiter of this batch gets the error
                self.stats.failures += len(batch)
                error = exc if isinstance(exc, LLMError) else LLMError(
                    f"local generation failed: {type(exc).__name__}: {exc}"[:300])
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(error)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    def _next_batch(self) -> list[tuple[ChatRequest, asyncio.Future]]:
        # responses first; one batch shares its sampling parameters
        self._queue.sort(key=lambda item: item[0].stage != "response")
        first = self._queue[0][0]
        batch, rest = [], []
        for item in self._queue:
            if len(batch) < self.batch_size and item[0].sampling() == first.sampling():
                batch.append(item)
            else:
                rest.append(item)
        self._queue[:] = rest
        return batch

    def _generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        import torch

        tok, model = self._tok, self._model
        texts = [tok.apply_chat_template(r.message_dicts(), add_generation_prompt=True, tokenize=False)
                 + r.prefill for r in requests]
        tok.truncation_side = "left"
        enc = tok(texts, return_tensors="pt", padding=True, truncation=True,
                  max_length=self.max_prompt_tokens, add_special_tokens=False).to(model.device)
        first = requests[0]
        sample = first.temperature > 0
        gen_args: dict[str, Any] = {"max_new_tokens": first.max_tokens, "do_sample": sample,
                                    "pad_token_id": tok.pad_token_id}
        if sample:
            gen_args.update(temperature=first.temperature, top_p=first.top_p, top_k=first.top_k or 0)
        want_top = first.top_logprobs is not None  # one batch shares its sampling parameters
        if want_top:  # the model's own logits, before temperature and top-p reshape them
            gen_args.update(return_dict_in_generate=True, output_logits=True)
        torch.manual_seed(self.seed if first.seed is None else first.seed)
        self.stats.requests += len(requests)
        with torch.inference_mode():
            out = model.generate(**enc, **gen_args)
        sequences = out.sequences if want_top else out
        new_tokens = sequences[:, enc["input_ids"].shape[1]:]
        eos = {tok.eos_token_id, tok.pad_token_id} - {None}
        results = []
        for i, request in enumerate(requests):
            ids = new_tokens[i].tolist()
            stop = next((j for j, t in enumerate(ids) if t in eos), None)
            kept = ids if stop is None else ids[:stop]
            text = tok.decode(kept, skip_special_tokens=True)
            results.append(ChatResult(
                text=request.prefill + text,
                prompt_tokens=int(enc["attention_mask"][i].sum()),
                completion_tokens=len(kept),
                finish_reason="length" if stop is None else "stop",
                top_logprobs=self._top(out.logits, i, len(kept), first.top_logprobs) if want_top else None,
            ))
        return results

    def _top(self, logits: Any, row: int, positions: int, n: int | None) -> TopLogprobs:
        """The n most likely tokens (decoded text: log-prob) at each of a row's first positions."""
        import torch

        top = []
        for step in logits[:positions]:
            values, ids = torch.log_softmax(step[row].float(), dim=-1).topk(min(n or 0, step.shape[-1]))
            texts = [self._tok.decode([t]) for t in ids.tolist()]
            top.append(top_tokens(zip(texts, values.tolist(), strict=True)))
        return top

    async def aclose(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        self._worker = None
        self._queue.clear()
