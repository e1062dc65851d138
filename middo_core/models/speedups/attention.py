"""Attention for bf16 inference on a CPU, written as the bf16 matrix products the CPU runs fastest.

On this kind of machine (AVX-512 BF16) a bf16 matrix product runs at ~900 GFLOP/s on two cores,
while `scaled_dot_product_attention`'s CPU kernel computes its tiles in float32 and reaches
60-120 GFLOP/s. Here attention is q @ k^T and p @ v in bf16 (float32 accumulation inside the
product), the softmax in float32 inside the kernel with a bf16 result, in query blocks so the
score tile stays in cache and causal blocks skip the keys after them: 2.5-3.1x faster than SDPA
at the shapes of a diagnosis (benchmarks/bench_attention.py), with about twice SDPA's error, as
the scores are rounded to bf16 before the softmax.

Grouped-query heads share their key/value head: the query heads of one group are stacked as rows
of one product instead of copying keys and values per head (`repeat_kv`).

It only takes the cases it is faster for: CPU, bf16, no gradient, no dropout, more than
one query position, and either no mask (causal self-attention over the whole sequence) or a 4-D
boolean mask. Anything else
(training, sliding windows, attention sinks, soft-capping, a GPU) goes to transformers' SDPA path.
`use_gemm_attention(model, choice, kernels)` switches a loaded model to it; the mask construction
stays SDPA's.

Precision: the scores q k^T are rounded to bf16 before the softmax (SDPA keeps them in float32).
Against a float32 run of SmolLM2-135M on Alpaca the mean absolute error of a sample's loss is
0.0075 (SDPA: 0.0053) and the judge's ratings are as close as SDPA's (0.074 vs 0.073 on 0-10).
Whether a CPU gains is measured once per process (`faster_than_sdpa_here`, ~50 ms); where bf16
products are slow (no AVX-512 BF16 or AMX) SDPA stays. The choice comes from the settings
(MIDDO_ATTENTION: sdpa keeps SDPA everywhere, gemm skips the measurement). The mask and the
softmax run as one native sweep where the kernels are built (`native.py`), else as PyTorch's bias
add and softmax.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

NAME = "middo_gemm"
QUERY_BLOCK = 128  # query positions per tile: (rows x keys) bf16 scores stay in cache
TILE_BYTES = 16 << 20  # at most this much of bf16 scores at once (split over the batch)

# The native kernels each switched model's modules run their softmax on (None: PyTorch's), by
# module: transformers hands the attention function the module, not the model.
_kernels_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, gemm_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def use_gemm_attention(model: Any, choice: str = "auto", kernels: Any = None) -> bool:
    """Switch a bf16 model on a CPU to this attention (choice: auto, gemm or sdpa; `kernels`:
    the native kernels, or None); True when switched. (Not fp16: a CPU without AVX-512 FP16
    multiplies fp16 matrices at a few GFLOP/s.)"""
    import torch

    if choice == "sdpa":
        return False
    param = next(model.parameters())
    if param.device.type != "cpu" or param.dtype != torch.bfloat16:
        return False
    if choice != "gemm" and not faster_than_sdpa_here(kernels):
        return False
    if getattr(model.config, "_attn_implementation", None) not in ("sdpa", "eager", NAME):
        return False  # a model with its own attention kernel keeps it
    if not getattr(model, "_can_set_attn_implementation", lambda: False)():
        return False
    _register()
    for module in model.modules():
        _kernels_of[module] = kernels
    model.set_attn_implementation(NAME)
    return model.config._attn_implementation == NAME


@functools.cache
def faster_than_sdpa_here(kernels: Any = None) -> bool:
    """Time both on one small causal case (8 x 256 tokens, 9 heads on 3; ~50 ms, once per
    process): bf16 products are only fast on CPUs with bf16 dot-product instructions (AVX-512
    BF16, AMX); elsewhere SDPA stays."""
    import time

    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    q = torch.randn(8, 9, 256, 64, generator=gen).to(torch.bfloat16)
    k, v = (torch.randn(8, 3, 256, 64, generator=gen).to(torch.bfloat16) for _ in range(2))

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(3):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    with torch.inference_mode():
        ours = best(lambda: grouped_attention(q, k, v, 0.125, kernels=kernels))
        sdpa = best(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))
    return ours < sdpa


_UNSUPPORTED = ("softcap", "sliding_window", "s_aux", "position_bias")


def _fast_path_ok(module, query, attention_mask, dropout: float, kwargs: dict) -> bool:
    import torch

    if query.device.type != "cpu" or query.dtype != torch.bfloat16:
        return False
    if dropout or (torch.is_grad_enabled() and query.requires_grad):
        return False
    if any(kwargs.get(k) is not None for k in _UNSUPPORTED):
        return False
    if query.shape[2] == 1:  # one-token decoding: SDPA's own path is as fast
        return False
    if attention_mask is None:
        return getattr(module, "is_causal", True)
    return attention_mask.dtype == torch.bool and attention_mask.dim() == 4


def gemm_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                           scaling: float | None = None, is_causal: bool | None = None,
                           **kwargs):
    """transformers' attention signature: query (B, H, Sq, D), key/value (B, KV, Sk, D);
    returns ((B, Sq, H, D), None)."""
    if (is_causal is False or not _fast_path_ok(module, query, attention_mask, dropout, kwargs)
            # no mask with a longer key cache: SDPA's rule for it (crop the keys) is the reference
            or (attention_mask is None and key.shape[2] != query.shape[2])):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return grouped_attention(query, key, value, scale, attention_mask,
                             kernels=_kernels_of.get(module)), None


def grouped_attention(query, key, value, scale: float, mask=None, block: int = QUERY_BLOCK,
                      out=None, kernels: Any = None):
    """Attention in query blocks. mask None: causal over equal-length query and keys; else a
    boolean (B or 1, 1, Sq, Sk) mask, True = attend. Returns (B, Sq, H, D), written to `out`
    (a contiguous tensor of that shape) when given. `kernels`: the native kernels for the mask
    and softmax (None: PyTorch's ops)."""
    import torch

    b, h, sq, d = query.shape
    kv, sk = key.shape[1], key.shape[2]
    rep = h // kv
    # (B, KV, Sq, rep, D): a block of positions is one contiguous (positions x rep) row range;
    # scaled and laid out in one pass
    q = torch.empty((b, kv, sq, rep, d), dtype=query.dtype, device=query.device)
    torch.mul(query.view(b, kv, rep, sq, d).transpose(2, 3), scale, out=q)
    out = (torch.empty((b, sq, kv, rep, d), dtype=query.dtype, device=query.device) if out is None
           else out.view(b, sq, kv, rep, d))  # = (B, Sq, H, D)
    kt = key.transpose(-1, -2)
    bias = None if mask is None else _mask_bias(mask, query.dtype)
    fused = kernels if query.device.type == "cpu" else None
    for start in range(0, sq, block):
        end = min(sq, start + block)
        n = end - start
        width = end if mask is None else sk  # causal: keys after the block are never read
        # sequences per tile: the bf16 score tile stays within TILE_BYTES (memory and cache)
        step = max(1, TILE_BYTES // (kv * n * rep * width * query.element_size()))
        for first in range(0, b, step):
            last = min(b, first + step)
            rows = q[first:last, :, start:end].reshape(last - first, kv, n * rep, d)
            scores = torch.matmul(rows, kt[first:last, :, :, :width])
            # masks are additive bias (0 or the lowest value), broadcast over the rep heads:
            # adding is ~15x faster than masked_fill with a boolean mask on a CPU
            part = None if bias is None else bias[first:last] if bias.shape[0] > 1 else bias
            by_position = scores.view(last - first, kv, n, rep, width)
            if fused is not None:  # mask and softmax in one sweep
                probs = (fused.causal_softmax_(scores, start, rep) if part is None else
                         fused.masked_softmax_(by_position, part[:, 0, start:end]).view(scores.shape))
            else:
                if part is None:
                    scores[..., start:end].add_(causal_bias(n, rep, query.dtype, query.device))
                else:
                    by_position.add_(part[:, :, start:end, None])
                probs = torch.softmax(scores, dim=-1)
            out[first:last, start:end] = torch.matmul(
                probs, value[first:last, :, :width]).view(last - first, kv, n, rep, d).transpose(1, 2)
    return out.view(b, sq, h, d)


@functools.lru_cache(maxsize=32)
def causal_bias(n: int, rep: int, dtype, device):
    """(n x rep, n): row (i, r) is 0 for keys up to i, the dtype's lowest value after it: the
    causal bias of n positions with each position's rep query heads in consecutive rows (a plain
    2-D bias adds ~30% faster than one broadcast over the heads)."""
    import torch

    bias = torch.full((n, n), torch.finfo(dtype).min, dtype=dtype, device=device).triu_(1)
    return bias[:, None].expand(n, rep, n).reshape(n * rep, n)


_bias_of: tuple[Any, int, Any] | None = None  # (weak reference to a mask, its version, its bias)


def _mask_bias(mask, dtype):
    """The additive bias of a boolean mask, made once per forward pass: transformers hands the
    same mask object to every layer. Not -inf: a row with no allowed key stays finite."""
    import torch

    global _bias_of
    cached = _bias_of
    version = -1 if mask.is_inference() else mask._version  # inference tensors have none
    if cached is not None and cached[0]() is mask and cached[1] == version \
            and cached[2].dtype == dtype:
        return cached[2]
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    bias.masked_fill_(~mask, torch.finfo(dtype).min)
    _bias_of = (weakref.ref(mask, _forget_bias), version, bias)
    return bias


def _forget_bias(_ref) -> None:
    global _bias_of
    if _bias_of is not None and _bias_of[0] is _ref:
        _bias_of = None
