"""kNN speed and memory: exact blocked search vs the bare matrix product; 1M rows with faiss IVF.

    python -m benchmarks.bench_knn [--n 100000] [--big 1000000] [--dim 576] [--device cuda]

Each case runs in a fresh interpreter so its peak RSS (resource.getrusage) is its own; the
embeddings are random but clustered (cluster centres plus low-rank spread plus a little noise,
like real sentence embeddings). Targets: exact kNN <= 1.5x the bare product time, < 2 GB peak;
1M rows complete with the approximate index at recall@2 >= 0.95. With --device cuda the bare
product and the exact search run on the GPU, and the 1M case is the exact GPU search.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def clustered(n: int, dim: int, centers: int = 512, rank: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, dim)).astype(np.float32)
    basis = rng.normal(size=(centers, rank, dim)).astype(np.float32) * 0.35
    lab = rng.integers(0, centers, n)
    out = np.empty((n, dim), np.float32)
    for j in range(centers):
        rows = np.flatnonzero(lab == j)
        coef = rng.normal(size=(rows.size, rank)).astype(np.float32)
        out[rows] = c[j] + coef @ basis[j]
    for s in range(0, n, 65536):
        out[s:s + 65536] += 0.05 * rng.normal(size=out[s:s + 65536].shape).astype(np.float32)
    return out


def data_file(n: int, dim: int) -> str:
    """Generated once per size and shared by the cases (generation is not part of any case)."""
    from middo_core.knn import normalize

    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"middo_bench_knn_{n}x{dim}.npy")
    if not os.path.exists(path):
        np.save(path + ".tmp.npy", normalize(clustered(n, dim)))
        os.replace(path + ".tmp.npy", path)
    return path


def bare_product(unit: np.ndarray, block: int, device: str = "cpu") -> None:
    """The matrix product a full similarity matrix needs, in the same tiles, results discarded."""
    import torch

    from middo_core.knn.exact import GPU_BLOCK, GPU_TILE_BYTES, TILE_BYTES

    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = False
        block = max(block, GPU_BLOCK)
    base = torch.from_numpy(unit).to(device)
    n = unit.shape[0]
    tile = min(n, (GPU_TILE_BYTES if on_gpu else TILE_BYTES) // (4 * block))
    with torch.inference_mode():
        for qs in range(0, n, block):
            q = base[qs:qs + block]
            for ts in range(0, n, tile):
                q @ base[ts:ts + tile].T
    if on_gpu:
        torch.cuda.synchronize()


def case(name: str, n: int, dim: int, device: str = "cpu") -> dict:
    from middo_core.knn import knn_search

    unit = np.load(data_file(n, dim))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    out: dict = {"case": name, "n": n, "dim": dim, "input_mb": unit.nbytes / 2**20}
    if device != "cpu":
        out["case"] = f"{name} ({device})"
    if name == "bare-product":
        bare_product(unit, 4096, device)
    else:
        res = knn_search(unit, 2, backend=name, device=device)
        out.update(backend=res.backend, exact=res.exact, recall=res.recall, params=res.params)
        if res.exact and n <= 200_000:  # spot check against brute force on a few rows
            rows = np.arange(0, n, max(1, n // 200))
            sims = unit[rows] @ unit.T
            sims[np.arange(rows.size), rows] = -np.inf
            top = np.sort(sims, axis=1)[:, -2:][:, ::-1]
            out["max_sim_error"] = float(np.abs(top - res.sims[rows]).max())
    out["seconds"] = time.perf_counter() - started
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_before_mb"] = rss0
    return out


def run_case(name: str, n: int, dim: int, device: str = "cpu") -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_knn", "--case", name, "--n", str(n),
           "--dim", str(dim), "--device", device]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=576)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU search")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(case(args.case, args.n, args.dim, args.device)))
        return
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, device {args.device}")
    data_file(args.n, args.dim)
    gpu = args.device != "cpu"
    cases = ("bare-product", "torch") if gpu else ("bare-product", "torch", "faiss")
    rows = [run_case(c, args.n, args.dim, args.device) for c in cases]
    if args.big:
        data_file(args.big, args.dim)
        if gpu:
            rows.append(run_case("bare-product", args.big, args.dim, args.device))
        rows.append(run_case("torch" if gpu else "faiss-ivf", args.big, args.dim, args.device))
    bare = {r["n"]: r["seconds"] for r in rows if r["case"].startswith("bare-product")}
    print("| case | rows | seconds | x bare product | peak RSS (MB) | input (MB) | recall@2 | notes |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ratio = f"{r['seconds'] / bare[r['n']]:.2f}" if r["n"] in bare else "-"
        recall = "exact" if r.get("exact", True) else f"{r['recall']:.3f}"
        notes = " ".join(filter(None, [
            json.dumps(r["params"]) if r.get("params") else "",
            f"max sim error {r['max_sim_error']:.1e}" if "max_sim_error" in r else ""]))
        print(f"| {r['case']} | {r['n']:,} | {r['seconds']:.1f} | {ratio} | {r['peak_rss_mb']:.0f} | "
              f"{r['input_mb']:.0f} | {recall} | {notes} |")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
