"""CPU attention: transformers' SDPA path vs middo_core.models.speedups.attention at a diagnosis's shapes.

    python -m benchmarks.bench_attention

SmolLM2-135M's heads (9 query heads, 3 key/value heads, head size 64), bf16, causal, no mask, as
in the loss pass; then a judge-like step (60 new positions after a 700-position key cache with
right padding, boolean mask). Error: max |out - float64 reference| and its mean, over outputs.
"""

from __future__ import annotations

import os
import time

SHAPES = [(4, 1024), (8, 512), (16, 256), (32, 128), (64, 64)]


def bench(fn, seconds: float = 1.5) -> float:
    fn()
    fn()
    reps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn()
        reps += 1
    return (time.perf_counter() - started) / reps


def reference(q, k, v, allowed):
    rep = q.shape[1] // k.shape[1]
    k, v = (t.double().repeat_interleave(rep, dim=1) for t in (k, v))
    scores = (q.double() @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return (scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v).transpose(1, 2)


def main() -> None:
    import torch
    import torch.nn.functional as F

    from middo_core.models.loader import keep_cpu_buffers_in_heap
    from middo_core.models.speedups import Speedups
    from middo_core.models.speedups.attention import grouped_attention

    kernels = Speedups.from_env().kernels()  # as a loaded model runs it

    keep_cpu_buffers_in_heap()  # as after load_model on a CPU
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| case | SDPA ms | ours ms | speed-up | SDPA error (max, mean) | ours error (max, mean) |")
    print("|---|---:|---:|---:|---:|---:|")
    gen = torch.Generator().manual_seed(0)

    def make(*shape):
        return torch.randn(*shape, generator=gen).to(torch.bfloat16)

    def row(name, sdpa, ours, ref):
        t_sdpa, t_ours = bench(sdpa), bench(ours)
        errs = [(f().double() - ref).abs() for f in (sdpa, ours)]
        print(f"| {name} | {t_sdpa * 1e3:.1f} | {t_ours * 1e3:.1f} | {t_sdpa / t_ours:.2f}x | "
              + " | ".join(f"{e.max():.1e}, {e.mean():.1e}" for e in errs) + " |", flush=True)

    for b, s in SHAPES:
        q, k, v = make(b, 9, s, 64), make(b, 3, s, 64), make(b, 3, s, 64)
        causal = torch.ones(s, s, dtype=torch.bool).tril()[None, None]
        row(f"causal, {b} x {s} tokens",
            lambda q=q, k=k, v=v: F.scaled_dot_product_attention(
                q, k, v, is_causal=True, enable_gqa=True).transpose(1, 2),
            lambda q=q, k=k, v=v: grouped_attention(q, k, v, 64 ** -0.5, kernels=kernels),
            reference(q, k, v, causal))
    b, new, cached = 48, 60, 700
    q, k, v = make(b, 9, new, 64), make(b, 3, cached + new, 64), make(b, 3, cached + new, 64)
    allowed = torch.ones(b, 1, new, cached + new, dtype=torch.bool)
    allowed[..., cached:] = torch.ones(new, new, dtype=torch.bool).tril()
    for i in range(b):
        allowed[i, :, :, cached - 7 * i % cached:cached] = False  # padding left in the cache
    row(f"judge step, {b} rows: {new} new after {cached} cached, mask",
        lambda: F.scaled_dot_product_attention(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1),
                                               attn_mask=allowed).transpose(1, 2),
        lambda: grouped_attention(q, k, v, 64 ** -0.5, allowed, kernels=kernels),
        reference(q, k, v, allowed))


if __name__ == "__main__":
    main()
