"""Loss-pass speed: the shared batched pass vs the bf16 matmul roofline and a per-sample HF loop.

    python -m benchmarks.bench_loss [--n 96] [--model smollm2-135m] [--data PATH] [--device cuda]

Samples: real Alpaca records from ../shared/data/alpaca_en_demo.json (chat format, max_len 1024).
Roofline: the bf16 GEMM peak measured in the same run at the model's own shape (tokens per batch
x hidden x intermediate), the best of torch.matmul and oneDNN's linear on a prepacked weight (the
pass's own path on a CPU), measured after each of --repeat passes; the best pass is reported
against the best peak. Model FLOPs = 2 x (parameters without the LM head) x tokens +
2 x (LM-head parameters) x response tokens + causal attention's two products (q k^T and p v:
2 x layers x heads x head size x S(S+1) per sequence of S tokens; printed apart too).
Baseline: a plain transformers loop (stock SDPA attention, stock linear layers and RMSNorm), one
sample at a time,
model(input_ids, labels=masked).
A second, shape-aware roofline: every linear layer's matrix product timed alone at the pass's rows
per batch, summed over the model (the pass's floor on this machine), against the pass's time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_samples(path: Path, n: int):
    from middo_core.sample import Sample

    records = json.loads(path.read_text(encoding="utf-8"))[:n]
    return [Sample(instruction=r["instruction"], input=r.get("input", ""), output=r["output"])
            for r in records]


def gemm_gflops(m: int, k: int, n: int, seconds: float = 3.0, device: str = "cpu",
                packed: bool = False) -> float:
    """bf16 GFLOP/s of an (m x k) @ (k x n) product: torch.matmul, or (packed, CPU) oneDNN's
    linear on a weight reordered once, as the pass runs its layers."""
    import torch

    a = torch.randn(m, k, dtype=torch.bfloat16, device=device)
    b = torch.randn(k, n, dtype=torch.bfloat16, device=device)
    if packed:
        w = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), m)

        def product():
            return torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], "")
    else:
        def product():
            return a @ b
    for _ in range(3):
        product()
    sync(device)
    reps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(1 if device == "cpu" else 50):
            product()
            reps += 1
        sync(device)
    return 2 * m * k * n * reps / (time.perf_counter() - started) / 1e9


def gemm_peak(m: int, k: int, n: int, device: str) -> float:
    """The best bf16 rate this machine reaches at this shape: torch.matmul, and on a CPU with
    oneDNN also its prepacked linear (which the pass uses)."""
    from middo_core.models.speedups import oneDNN_bf16_available

    rates = [gemm_gflops(m, k, n, device=device)]
    if device == "cpu" and oneDNN_bf16_available():
        rates.append(gemm_gflops(m, k, n, device=device, packed=True))
    return max(rates)


def model_gemm_seconds(model, rows: int, tokens: int, response_tokens: int, device: str,
                       seconds_per_shape: float = 1.0) -> float:
    """Time the model's own matrix products alone would take for this pass: every nn.Linear of
    the decoder at `rows` rows per call (measured shape by shape here), scaled to `tokens`, plus
    the LM head over the response tokens. The pass cannot be faster than this on this machine."""
    from collections import Counter

    import torch

    from middo_core.models import speedups
    from middo_core.signals.forward import CPU_HEAD_ROWS, HEAD_ROWS

    head = model.get_output_embeddings()
    shapes = Counter((m.in_features, m.out_features) for m in model.modules()
                     if isinstance(m, torch.nn.Linear) and m is not head)
    packed = device == "cpu" and speedups.applied_to(model)["packed linear"] > 0

    def rate(m: int, k: int, n: int) -> float:
        return gemm_gflops(m, k, n, seconds_per_shape, device, packed=packed)

    per_row = sum(count * 2 * k * n / (rate(rows, k, n) * 1e9) for (k, n), count in shapes.items())
    k, n = head.in_features, head.out_features
    head_rows = min(rows, HEAD_ROWS if device != "cpu" else CPU_HEAD_ROWS)  # the head's chunks
    per_head_row = 2 * k * n / (rate(head_rows, k, n) * 1e9)
    return per_row * tokens + per_head_row * response_tokens


def speed_up_summary(model) -> str:
    from middo_core.models import speedups

    counts = speedups.applied_to(model)
    kernels = "built" if counts.pop("native kernels") else "not available (PyTorch ops)"
    return ", ".join([*(f"{name}: {n} layers" for name, n in counts.items()),
                      f"native kernels: {kernels}"])


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "alpaca_en_demo.json"))
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3, help="measured passes (the best is reported)")
    args = ap.parse_args()
    import torch

    from middo_core.models import speedups
    from middo_core.models.loader import load_model
    from middo_core.signals.encode import encode_all
    from middo_core.signals.forward import PassOutput, run_pass

    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}")
    model, tok = load_model(args.model, args.device)
    samples = load_samples(Path(args.data), args.n)
    encoded = encode_all(samples, tok, "chat", 1024)
    head = model.get_output_embeddings().weight.numel()
    params = sum(p.numel() for p in model.parameters())
    body = params - head  # tied embeddings: the lookup is not a matmul, the head is counted apart
    cfg = model.config
    tokens = sum(len(e.ids) for e in encoded)
    resp = sum(e.response_len for e in encoded)
    width = cfg.num_attention_heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    attn_flops = 2 * cfg.num_hidden_layers * width * sum(len(e.ids) * (len(e.ids) + 1) for e in encoded)
    flops = 2 * body * tokens + 2 * head * resp + attn_flops

    # warm up, then the measured passes, each followed by a measure of the GEMM peak: the
    # best pass against the best peak (a shared machine's speed drifts by ~10% over minutes)
    run_pass(model, encoded[:8], want_embedding=True, batch_tokens=args.batch_tokens)
    roof_shape = (args.batch_tokens // 2, cfg.hidden_size, cfg.intermediate_size)
    passes, peaks = [], []
    for _ in range(args.repeat):
        out = PassOutput()
        stats = run_pass(model, encoded, want_embedding=True, batch_tokens=args.batch_tokens,
                         on_chunk=out.extend)
        passes.append(stats.seconds)
        peaks.append(gemm_peak(*roof_shape, args.device))
    ours, roof = min(passes), max(peaks)
    floor = model_gemm_seconds(model, stats.padded_tokens // max(stats.batches, 1), tokens, resp,
                               args.device)
    summary = speed_up_summary(model)

    attention = model.config._attn_implementation
    speedups.restore_stock(model)  # the baseline is stock transformers
    model.set_attn_implementation("sdpa")
    ref = {}
    with torch.inference_mode():
        model(torch.tensor([encoded[0].ids], device=args.device))
        sync(args.device)
        started = time.perf_counter()
        for i, e in enumerate(encoded):
            ids = torch.tensor([e.ids], device=args.device)
            labels = ids.clone()
            labels[0, : e.prompt_len] = -100
            ref[i] = float(model(ids, labels=labels).loss)
        loop = time.perf_counter() - started
    ours_loss = dict(zip(out.index, out.loss, strict=True))
    diffs = [abs(ours_loss[i] - ref[i]) for i in ref]
    diff, mean_diff = max(diffs), sum(diffs) / len(diffs)
    worst = max(ref, key=lambda i: abs(ours_loss[i] - ref[i]))

    achieved = flops / ours / 1e9
    print(f"{len(encoded)} samples, {tokens:,} tokens ({resp:,} response), padded {stats.padded_tokens:,}, "
          f"{stats.batches} batches; model {params / 1e6:.1f}M parameters ({head / 1e6:.1f}M LM head)")
    print(f"model FLOPs {flops / 1e12:.2f} T, of which attention's products {attn_flops / 1e12:.2f} T; "
          f"attention: {attention} in the pass, sdpa in the loop; {summary}")
    print(f"passes {', '.join(f'{t:.2f}' for t in passes)} s; GEMM peak after each "
          f"{', '.join(f'{p:.0f}' for p in peaks)} GFLOP/s")
    print("| measure | value |")
    print("|---|---:|")
    how = "best of matmul and packed oneDNN" if args.device == "cpu" else "matmul"
    print(f"| bf16 GEMM peak ({'x'.join(map(str, roof_shape))}, {how}) | {roof:.0f} GFLOP/s |")
    print(f"| shared pass (loss + embeddings), best of {args.repeat} | {ours:.2f} s, {tokens / ours:,.0f} tokens/s |")
    print(f"| shared pass model FLOP rate | {achieved:.0f} GFLOP/s = {achieved / roof:.0%} of roofline |")
    print(f"| the model's own matrix products alone, at this machine's speed for their shapes | "
          f"{floor:.2f} s = {floor / ours:.0%} of the pass |")
    print(f"| per-sample transformers loop (loss only) | {loop:.2f} s, {tokens / loop:,.0f} tokens/s |")
    print(f"| speed-up over the loop | {loop / ours:.2f}x |")
    print(f"| loss difference vs the loop: mean, max | {mean_diff:.2e}, {diff:.2e} (a sample of "
          f"{encoded[worst].response_len} response tokens) |")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    assert np.isfinite(diff)


if __name__ == "__main__":
    main()
