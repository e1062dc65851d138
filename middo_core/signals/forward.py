"""The shared batched forward pass: response-token losses and prompt embeddings in one pass.

Why it is fast: sequences are sorted by length and padded per batch (little padding); the
decoder runs with no attention mask (right padding + causal attention means real tokens never
see padding, so the fused causal kernel is used); the LM head, a vocabulary-sized matrix
product, runs only at the positions that predict response tokens, not at every position.
On a CPU, a Llama-architecture bf16 model takes a batch laid end to end with no padding at all
(the loader's `fast_path`, from the CPU speed layer): batches then fill up to their token budget
whatever the lengths, and only attention sees padding, per group of similar lengths.
Why the embedding is free: in a causal model the hidden states of the prompt positions do not
depend on what follows, so mean-pooling them in the loss pass equals a separate prompt-only pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from middo_core.models.loader import fast_path
from middo_core.progress import ProgressFn, report
from middo_core.signals.encode import Encoded

HEAD_ROWS = 2048  # response positions per LM-head chunk on a GPU (bounds the logits buffer)
CPU_HEAD_ROWS = 256  # on a CPU: positions per LM-head product (see _response_nll)
CPU_SOFTMAX_ROWS = 32  # and per float32 log-softmax, whose logits then stay in cache
MAX_PADDING = 0.1  # on a CPU a batch takes sequences at least 90% as long as its longest
# (on a GPU no cap: there fewer, larger batches win, as launches and not FLOPs set the pace)


@dataclass
class PassOutput:
    """Results for some of the encoded samples, by their index in the encoded list."""

    index: list[int] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)  # mean NLL per response token
    n_response: list[int] = field(default_factory=list)
    embedding: list[np.ndarray] = field(default_factory=list)  # float32, only when asked for
    last_nll: list[float | None] = field(default_factory=list)  # NLL of the last response token
    token_nll: list[np.ndarray | None] = field(default_factory=list)  # per response token, if asked

    def extend(self, other: PassOutput) -> None:
        self.index += other.index
        self.token_nll += other.token_nll
        self.loss += other.loss
        self.last_nll += other.last_nll
        self.n_response += other.n_response
        self.embedding += other.embedding

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class PassStats:
    samples: int = 0
    batches: int = 0  # forward calls into the model
    tokens: int = 0  # real tokens fed to the model
    padded_tokens: int = 0  # tokens including padding (packed batches have none)
    response_tokens: int = 0  # positions the LM head ran at
    seconds: float = 0.0


def plan_batches(encoded: list[Encoded], batch_tokens: int = 4096,
                 max_batch: int = 64, max_padding: float = MAX_PADDING,
                 packed: bool = False) -> list[list[int]]:
    """Longest first (memory problems show at once); each batch's padded size <= batch_tokens,
    and no sequence padded by more than `max_padding` of the batch's width (padding is work
    thrown away: on a CPU it costs more than the larger batch saves). `packed`: the batch is
    laid end to end with no padding (the loader's `fast_path`), so only its real tokens count and
    lengths may differ freely."""
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].ids))
    batches: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i in order:
        n = len(encoded[i].ids)
        if packed:
            full = current and size + n > batch_tokens
        else:
            width = len(encoded[current[0]].ids) if current else n
            full = current and ((len(current) + 1) * width > batch_tokens
                                or n < (1 - max_padding) * width)
        if full or len(current) >= max_batch:
            batches.append(current)
            current, size = [], 0
        current.append(i)
        size += n
    if current:
        batches.append(current)
    return batches


def _decoder(model):
    """The transformer body without its LM head (returns hidden states after the final norm)."""
    body = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    if body is None or body is model:
        raise TypeError(f"{type(model).__name__}: cannot find the decoder body under the LM head")
    return body


def run_batch(model, encoded: list[Encoded], batch: list[int], want_loss: bool = True,
              want_embedding: bool = False, packed: bool | None = None,
              want_tokens: bool = False) -> PassOutput:
    """packed: lay the batch end to end (the loader's `fast_path`; None: where the model allows
    it). want_tokens: also each response token's NLL (float32 array, None where not scored)."""
    import torch

    device = next(model.parameters()).device
    fast = fast_path(model)
    packed = (fast is not None and fast.packs()) if packed is None else packed
    if packed and fast is None:
        raise ValueError("packed batches need a model the loader sped up (load_model on a CPU)")
    if packed:
        batch = sorted(batch, key=lambda i: -len(encoded[i].ids))
    lens = [len(encoded[i].ids) for i in batch]
    with torch.inference_mode():
        if packed:  # end to end, no padding: row starts[b] is sequence b's first
            flat = fast.hidden_states([encoded[i].ids for i in batch])
            ids = torch.tensor([t for i in batch for t in encoded[i].ids], dtype=torch.long)
            starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).tolist()
        else:  # padded to the longest (right padding: real tokens never see it)
            pad = getattr(model.config, "pad_token_id", None)
            pad = 0 if pad is None or isinstance(pad, list) else pad
            width = max(lens)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            for b, i in enumerate(batch):
                ids[b, : lens[b]] = torch.tensor(encoded[i].ids, dtype=torch.long)
            ids = ids.to(device)
            hidden = _decoder(model)(input_ids=ids, use_cache=False).last_hidden_state
            flat = hidden.reshape(-1, hidden.shape[-1])
            ids = ids.reshape(-1)
            starts = [b * width for b in range(len(batch))]
        out = PassOutput(index=list(batch))
        if want_embedding:
            for b, i in enumerate(batch):
                s, e = encoded[i].span
                out.embedding.append(flat[starts[b] + s:starts[b] + e].float().mean(0).cpu().numpy())
        scored = [b for b, i in enumerate(batch)
                  if want_loss and not encoded[i].empty_response and encoded[i].response_len > 0]
        losses: dict[int, tuple[float, int, float]] = {}
        tokens: dict[int, np.ndarray] = {}
        if scored:
            # position t predicts token t+1: response tokens [P, L) are predicted from [P-1, L-1)
            rows = torch.cat([starts[b] + torch.arange(encoded[batch[b]].prompt_len - 1, lens[b] - 1)
                              for b in scored]).to(device)
            counts = [lens[b] - encoded[batch[b]].prompt_len for b in scored]
            nll = _response_nll(model, flat, rows, ids[rows + 1], fast)
            for b, part in zip(scored, torch.split(nll, counts), strict=True):
                losses[b] = (float(part.mean()), part.numel(), float(part[-1]))
                if want_tokens:
                    tokens[b] = part.float().cpu().numpy()
        for b, i in enumerate(batch):
            loss, n, last = losses.get(b, (None, encoded[i].response_len, None))
            if want_tokens:
                out.token_nll.append(tokens.get(b))
            out.loss.append(loss)
            out.n_response.append(n)
            out.last_nll.append(last)
    return out


def _response_nll(model, flat, rows, targets, fast=None):
    """Per-position NLL of the target tokens, in float32: the LM head only at `rows`, in chunks.

    On a CPU the head's product runs on 256 positions at a time (its rate drops below that),
    and the float32 log-softmax on 32 of them at a time, so that its (32 x vocabulary) float32
    copy stays in cache: 2.2x faster than on the whole chunk, same values. (With a 49k
    vocabulary a 256-position float32 copy is 50 MB, past the 32 MB last-level cache, and was
    9x slower than in 32-position pieces.) Where the speed layer's native kernels are built
    (`fast`, the loader's `fast_path`), the loss comes from the bf16 logits in one sweep per row,
    with no float32 copy at all (3.1x faster)."""
    import torch
    import torch.nn.functional as F

    head = model.get_output_embeddings()
    on_gpu = flat.device.type == "cuda"
    step, piece = (HEAD_ROWS, HEAD_ROWS) if on_gpu else (CPU_HEAD_ROWS, CPU_SOFTMAX_ROWS)
    nll = torch.empty(rows.numel(), dtype=torch.float32, device=flat.device)
    fast = None if on_gpu else fast
    for c in range(0, rows.numel(), step):
        logits = head(flat[rows[c:c + step]])
        fused = None if fast is None else fast.response_nll(logits, targets[c:c + step])
        if fused is not None:
            nll[c:c + step] = fused
            continue
        for p in range(0, logits.shape[0], piece):
            nll[c + p:c + p + piece] = F.cross_entropy(
                logits[p:p + piece].float(), targets[c + p:c + p + piece], reduction="none")
    return nll


def run_pass(model, encoded: list[Encoded], *, want_loss: bool = True, want_embedding: bool = False,
             batch_tokens: int = 4096, progress: ProgressFn | None = None, stage: str = "forward pass",
             on_chunk: Callable[[PassOutput], None] | None = None, chunk_batches: int = 4,
             want_tokens: bool = False) -> PassStats:
    """Run every encoded sample once; hand results to `on_chunk` every `chunk_batches` batches.

    Finished batches are handed over even when the pass stops early (a Cancelled raised by the
    progress callback, Ctrl-C), so a rerun resumes from there.
    """
    stats = PassStats()
    started = time.perf_counter()
    on_gpu = next(model.parameters()).device.type == "cuda"
    fast = fast_path(model)
    packed = fast is not None and fast.packs()
    batches = plan_batches(encoded, batch_tokens, max_padding=1.0 if on_gpu else MAX_PADDING,
                           packed=packed)
    pending = PassOutput()

    def flush() -> None:
        nonlocal pending
        if len(pending) and on_chunk is not None:
            on_chunk(pending)
        pending = PassOutput()

    total = len(encoded)
    report(progress, stage, 0, total)
    try:
        for n, batch in enumerate(batches, start=1):
            pending.extend(run_batch(model, encoded, batch, want_loss, want_embedding, packed,
                                     want_tokens))
            lens = [len(encoded[i].ids) for i in batch]
            stats.batches += 1
            stats.samples += len(batch)
            stats.tokens += sum(lens)
            stats.padded_tokens += sum(lens) if packed else max(lens) * len(batch)
            stats.response_tokens += sum(encoded[i].response_len for i in batch
                                         if not encoded[i].empty_response)
            if n % chunk_batches == 0:
                flush()
            report(progress, stage, stats.samples, total)
    finally:
        flush()  # keep what is finished, also when stopping early
        stats.seconds = time.perf_counter() - started
    return stats
