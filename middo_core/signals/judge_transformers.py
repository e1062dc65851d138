"""Self-judge scoring with a transformers model: shared-prefix KV reuse, last-position logits.

`Rows` holds a batch of token rows and their KV cache. Rows are right-padded; positions and the
attention mask are kept explicitly, so a row may be extended (more tokens appended after its own
last real token, even when the cache has padding after it) and copied (one shared prefix
expanded into several continuations). Only the last real position of each row goes through the
LM head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from middo_core.signals.judge_prompts import ScoreTokens, parse_rating


@dataclass
class Counter:
    tokens_fed: int = 0  # real (unpadded) tokens run through the model
    positions_fed: int = 0  # the same with the padding of each batch's shorter rows
    forward_calls: int = 0


@dataclass
class Rows:
    model: Any
    cache: Any = None  # transformers DynamicCache, or None before the first extend
    mask: Any = None  # (rows, cached length) 1 = real token
    lens: Any = None  # (rows,) real tokens per row
    counter: Counter = field(default_factory=Counter)

    def extend(self, new: list[list[int]], pad_id: int):
        """Append `new[i]` to row i (or start rows); returns logits at each row's last new token."""
        import torch
        from transformers import DynamicCache

        dev = self.model.device
        width = max(len(r) for r in new)
        ids = torch.full((len(new), width), pad_id, dtype=torch.long, device=dev)
        new_mask = torch.zeros((len(new), width), dtype=torch.long, device=dev)
        for i, row in enumerate(new):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long, device=dev)
            new_mask[i, : len(row)] = 1
        new_lens = new_mask.sum(1)
        if self.cache is None:
            self.cache = DynamicCache(config=self.model.config)
            self.mask = new_mask[:, :0]
            self.lens = torch.zeros(len(new), dtype=torch.long, device=dev)
        positions = self.lens[:, None] + torch.arange(width, device=dev)[None, :]
        attention = torch.cat([self.mask, new_mask], dim=1)
        decoder = self.model.get_decoder()
        with torch.inference_mode():  # the cache is updated in place
            out = decoder(
                input_ids=ids, attention_mask=attention, position_ids=positions,
                use_cache=True, **{_cache_kwarg(decoder): self.cache},
            )
            hidden = out.last_hidden_state[torch.arange(len(new), device=dev), new_lens - 1]
            logits = _lm_head(self.model, hidden)
        self.mask = attention
        self.lens = self.lens + new_lens
        self.counter.tokens_fed += int(new_lens.sum())
        self.counter.positions_fed += ids.numel()
        self.counter.forward_calls += 1
        return logits

    def select(self, index: list[int]) -> Rows:
        """New rows copied from these (an index may repeat: one prefix, several continuations)."""
        import torch
        from transformers import DynamicCache

        idx = torch.tensor(index, dtype=torch.long, device=self.model.device)
        cache = DynamicCache(config=self.model.config)
        for layer, old in enumerate(self.cache.layers):
            cache.update(old.keys[idx], old.values[idx], layer)
        return Rows(self.model, cache, self.mask[idx], self.lens[idx], self.counter)


def _cache_kwarg(decoder) -> str:
    """transformers 5.x names the cache argument `cache`; older releases `past_key_values`."""
    import inspect

    params = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _lm_head(model, hidden):
    logits = model.get_output_embeddings()(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:  # Gemma-style models squash logits; keep their distribution exact
        import torch

        logits = torch.tanh(logits / cap) * cap
    return logits


def expected_scores(rows: Rows, logits, st: ScoreTokens, pad_id: int) -> tuple[list[float], list[float]]:
    """Expected score from the next-token distribution over "0".."10", and the mass it had.

    The distribution is restricted to the score tokens and renormalized. Where "10" is two tokens
    ("1", "0"), the "1" mass is split by one more step: P(10) = P("1") * P(any digit after "1").
    """
    import torch

    probs = torch.softmax(logits, dim=-1)
    ids = list(st.digit_ids) + ([st.ten_id] if st.ten_id is not None else [])
    p = probs[:, ids]
    mass = p.sum(1)
    if st.ten_two_step:
        after_one = torch.softmax(rows.extend([[st.digit_ids[1]]] * len(logits), pad_id), dim=-1)
        digit_follows = after_one[:, st.digit_ids].sum(1)
        p = torch.cat([p, (p[:, 1] * digit_follows)[:, None]], dim=1)
        p[:, 1] = p[:, 1] * (1 - digit_follows)
    p = p / p.sum(1, keepdim=True).clamp_min(1e-30)
    scores = (p * torch.arange(p.shape[1], device=p.device, dtype=p.dtype)).sum(1)
    return scores.tolist(), mass.tolist()


@dataclass(frozen=True)
class Sampling:
    """The paper's judge sampling: temperature 0.1, top_p 0.7, top_k 50."""

    temperature: float = 0.1
    top_p: float = 0.7
    top_k: int = 50
    max_new_tokens: int = 12
    seed: int = 0


def sample_next(logits, s: Sampling, generator):
    import torch

    logits = logits / max(s.temperature, 1e-5)
    top = torch.topk(logits, min(s.top_k, logits.shape[-1]), dim=-1)
    probs = torch.softmax(top.values, dim=-1)
    keep = probs.cumsum(-1) - probs < s.top_p  # smallest set whose mass reaches top_p
    probs = torch.where(keep, probs, torch.zeros_like(probs))
    probs = probs / probs.sum(-1, keepdim=True)
    choice = torch.multinomial(probs.cpu(), 1, generator=generator).to(logits.device)
    return top.indices.gather(-1, choice).squeeze(-1)


def generate_replies(rows: Rows, logits, tokenizer, s: Sampling, generator) -> list[str]:
    """Sample each row's reply until it holds a complete number, an end token or the limit."""
    stop = {tokenizer.eos_token_id, getattr(tokenizer, "pad_token_id", None)}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    replies: list[list[int]] = [[] for _ in range(len(logits))]
    active = list(range(len(logits)))
    for step in range(s.max_new_tokens):
        tokens = sample_next(logits, s, generator).tolist()
        still = []
        for pos, (row, token) in enumerate(zip(active, tokens, strict=True)):
            if token in stop:
                continue
            replies[row].append(token)
            if not _number_closed(tokenizer.decode(replies[row])):
                still.append(pos)
        if not still or step == s.max_new_tokens - 1:
            break
        if len(still) < len(active):  # drop finished rows from the batch and the cache
            rows = rows.select(still)
        active = [active[p] for p in still]
        logits = rows.extend([[replies[r][-1]] for r in active], pad_id)
    return [tokenizer.decode(r) for r in replies]


def _number_closed(text: str) -> bool:
    """A number has been written and something other than a digit or a point followed it."""
    rating = parse_rating(text)
    if rating is None:
        return False
    stripped = text.rstrip()
    return stripped != text or not (stripped[-1].isdigit() or stripped[-1] == ".")
