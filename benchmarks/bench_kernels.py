"""The native bf16 kernels (middo_core/models/speedups/native.py) against the PyTorch code they replace.

    python -m benchmarks.bench_kernels

At a diagnosis's shapes for SmolLM2-135M: causal query blocks of the loss pass (3 key/value
heads x 96 positions x 3 query heads), the judge's padded rows over a key cache, the head's
cross-entropy on 256 rows of a 49,152-token vocabulary, RMSNorm and rotary on a 4,096-token
batch. Each time is the best of many runs, inputs made fresh outside the timing.
"""

from __future__ import annotations

import time
from dataclasses import replace


def best(fn, make, reps: int = 30) -> float:
    times = []
    for _ in range(reps):
        x = make()
        started = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - started)
    return min(times) * 1e6


def main() -> None:
    import torch
    import torch.nn.functional as F
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from middo_core.models import speedups
    from middo_core.models.speedups.attention import causal_bias
    from middo_core.models.speedups.sequence_packing import rotary_in_place

    settings = speedups.Speedups.from_env()
    k = settings.kernels()
    if k is None:
        raise SystemExit("the native kernels are not available here (no C compiler?)")
    torch.manual_seed(0)
    bf16, rows = torch.bfloat16, []

    def rand(*shape):
        return (torch.randn(*shape) * 3).to(bf16)

    with torch.inference_mode():
        for b, width, start in [(6, 96, 0), (6, 288, 192), (2, 768, 672)]:
            n = min(96, width - start)
            scores = rand(b, 3, n * 3, width)

            def stock(x, n=n, start=start):
                x[..., start:start + n].add_(causal_bias(n, 3, x.dtype, x.device))
                torch.softmax(x, -1)

            rows.append((f"causal softmax, {b} x 3 x {n * 3} x {width}", best(stock, scores.clone),
                         best(lambda x, s=start: k.causal_softmax_(x, s, 3), scores.clone)))
        for b, n, width in [(24, 40, 760), (8, 128, 600)]:
            scores = rand(b, 3, n, 3, width)
            bias = torch.zeros(b, 1, n, width, dtype=bf16)
            bias[..., -20:] = torch.finfo(bf16).min

            def stock(x, bias=bias):
                x.add_(bias[:, :, :, None])
                torch.softmax(x, -1)

            rows.append((f"masked softmax, {b} x 3 x {n} x 3 x {width}", best(stock, scores.clone),
                         best(lambda x, bias=bias: k.masked_softmax_(x, bias[:, 0]), scores.clone)))
        logits, targets = rand(256, 49152), torch.randint(0, 49152, (256,))

        def stock_nll(x):  # forward.py's PyTorch path: float32 pieces of 32 rows
            for p in range(0, 256, 32):
                F.cross_entropy(x[p:p + 32].float(), targets[p:p + 32], reduction="none")

        rows.append(("cross-entropy, 256 x 49,152", best(stock_nll, lambda: logits, 10),
                     best(lambda x: k.row_nll(x, targets), lambda: logits, 10)))
        x = rand(4096, 576)
        cos, sin, qkv = rand(4096, 64), rand(4096, 64), rand(4096, 15, 64)
        timed = {}
        for setting in ("0", "1"):
            kernels = k if setting == "1" else None
            norm = LlamaRMSNorm(576).to(bf16)
            speedups.apply(torch.nn.Sequential(norm),  # the lean norm, PyTorch's or native
                           replace(settings, attention="sdpa", native=kernels is not None))
            rotate = rotary_in_place(cos, sin, kernels)
            timed[setting] = (best(norm, lambda: x, 20),
                              best(lambda t, r=rotate: r(t[:, :12]), qkv.clone, 20))
        rows.append(("RMSNorm, 4,096 x 576", timed["0"][0], timed["1"][0]))
        rows.append(("rotary, 4,096 tokens x 12 heads", timed["0"][1], timed["1"][1]))
    print("| operation | PyTorch us | native us | speed-up |\n|---|---:|---:|---:|")
    for name, a, b in rows:
        print(f"| {name} | {a:,.0f} | {b:,.0f} | {a / b:.1f}x |")


if __name__ == "__main__":
    main()
