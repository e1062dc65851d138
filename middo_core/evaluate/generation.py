"""Batched model passes for evaluation: greedy generation, response loss, next-token logits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _by_length(texts: list[str]) -> list[int]:
    return sorted(range(len(texts)), key=lambda i: len(texts[i]))


def generate(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int,
             batch_size: int = 8, stop: list[str] | None = None,
             on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Greedy continuations of `prompts` (already formatted), cut at the first stop string."""
    import torch

    out: list[str] = [""] * len(prompts)
    order = _by_length(prompts)  # similar lengths per batch: little padding
    done = 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                        padding_side="left", add_special_tokens=False).to(model.device)
        kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=tokenizer.pad_token_id)
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=tokenizer)
        with torch.no_grad():
            gen = model.generate(**enc, **kwargs, temperature=None, top_p=None, top_k=None)
        texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, text in zip(idx, texts, strict=True):
            out[i] = cut_at_stop(text, stop or [])
        done += len(idx)
        if on_batch is not None:
            on_batch(done)
    return out


def cut_at_stop(text: str, stop: list[str]) -> str:
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if at >= 0:
            cut = min(cut, at)
    return text[:cut]


def response_nll(model: Any, items: list[Any], pad_token_id: int, batch_size: int = 4,
                 on_batch: Callable[[int], None] | None = None) -> list[tuple[float, int]]:
    """(summed negative log-likelihood, response tokens) per encoded item (sft_data.Encoded)."""
    import torch

    from middo_core.train.sft_data import IGNORE_INDEX, PadCollator

    collate = PadCollator(pad_token_id)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(items)
    order = sorted(range(len(items)), key=lambda i: len(items[i].input_ids))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = collate([{"input_ids": items[i].input_ids, "labels": items[i].labels} for i in idx])
        batch = {k: v.to(model.device) for k, v in batch.items()}
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
        mask = labels != IGNORE_INDEX
        for row, i in enumerate(idx):
            out[i] = (float(nll[row][mask[row]].sum()), int(mask[row].sum()))
        if on_batch is not None:
            on_batch(start + len(idx))
    return out


def next_token_logits(model: Any, tokenizer: Any, prompts: list[str], batch_size: int = 8,
                      on_batch: Callable[[int], None] | None = None) -> list[Any]:
    """Logits of the token after each prompt (left padding, so it is the last position)."""
    import torch

    out: list[Any] = [None] * len(prompts)
    order = _by_length(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                        padding_side="left", add_special_tokens=False).to(model.device)
        positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)  # left padding
        with torch.no_grad():
            logits = model(**enc, position_ids=positions).logits[:, -1].float().cpu()
        for row, i in enumerate(idx):
            out[i] = logits[row]
        if on_batch is not None:
            on_batch(start + len(idx))
    return out
