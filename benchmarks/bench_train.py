"""Training and evaluation on CPU: one epoch of the cpu-small preset on the demo set, held-out
loss before vs after, and the built-in evaluation suite's wall time.

    python -m benchmarks.bench_train [--size 400] [--model smollm2-135m] [--skip-suite]

The demo workspace (`middo demo`, 400 samples: 360 train, 40 held out) is created in a temporary
folder. Held-out loss: mean response-token NLL on the held-out split, base model vs M(0).
Suite: heldout, demo_exact, mmlu, gsm8k, humaneval at eval.sample_size (50) on M(0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = ["heldout", "demo_exact", "mmlu", "gsm8k", "humaneval"]


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (load-independent work)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self):
        print(f"[bench_train] {self.name} ...", file=sys.stderr, flush=True)
        self.wall, self.cpu = time.monotonic(), cpu_s()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.monotonic() - self.wall, cpu_s() - self.cpu
        print(f"[bench_train] {self.name}: {self.wall:.0f} s wall, {self.cpu:.0f} s CPU",
              file=sys.stderr, flush=True)

    def __str__(self) -> str:
        return f"{self.wall:.0f} s wall, {self.cpu:.0f} s CPU"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=400, help="demo set size (10%% held out)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--skip-suite", action="store_true")
    parser.add_argument("--suite-only", action="store_true",
                        help="only time the built-in suite, on the base model")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "bench_train.json")
    opts = parser.parse_args()

    from middo_core.data.demo import create_demo_workspace
    from middo_core.evaluate import evaluate
    from middo_core.train import train

    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="middo-bench-train-"))
    ws = create_demo_workspace(tmp / "demo", size=opts.size)
    ws.config.base_model = opts.model
    ws.config.train.preset = opts.preset
    ws.save_config()
    rows: list[tuple[str, str]] = []
    if opts.suite_only:
        with Phase("built-in suite, base model") as ph:
            suite = evaluate(ws, 0, suite=SUITE, model=opts.model)["results"]
        rows.append(("built-in suite on the base model (sample size 50)", str(ph)))
        _suite_rows(rows, suite)
        _finish(opts, rows, load_before, {"suite": _strip(suite)})
        return

    with Phase("held-out loss, base model") as ph:
        base = evaluate(ws, 0, suite=["heldout"], model=opts.model)["results"]["heldout"]
    rows.append(("held-out loss, base model", f"{base['metrics']['loss']:.4f} (n={base['n']}; {ph})"))

    with Phase("train one epoch") as ph:
        result = train(ws, 0)
    train_s = ph.wall
    rows += [
        ("train samples / steps", f"{result.samples} / {result.steps}"),
        ("train tokens (incl. prompt)", f"{result.tokens:,}"),
        ("epoch time", f"{ph} ({result.tokens / ph.wall:.0f} tokens/s wall)"),
        ("train loss first -> last step", f"{result.losses[0][1]:.3f} -> {result.losses[-1][1]:.3f}"),
    ]
    with Phase("held-out loss, M(0)") as ph:
        after = evaluate(ws, 0, suite=["heldout"])["results"]["heldout"]
    rows.append(("held-out loss, M(0)", f"{after['metrics']['loss']:.4f} ({ph})"))
    improved = after["metrics"]["loss"] < base["metrics"]["loss"]
    rows.append(("M(0) beats the base on held-out loss", "yes" if improved else "NO"))

    suite: dict = {}
    if not opts.skip_suite:
        with Phase("built-in suite") as ph:
            suite = evaluate(ws, 0, suite=SUITE)["results"]
        rows.append(("built-in suite (sample size 50)", str(ph)))
        _suite_rows(rows, suite)
    _finish(opts, rows, load_before, {
        "size": opts.size, "model": opts.model, "preset": opts.preset, "train": result.to_dict(),
        "train_wall_s": train_s, "heldout_base": base, "heldout_after": after, "suite": _strip(suite)})


def _strip(suite: dict) -> dict:
    return {k: {kk: vv for kk, vv in v.items() if kk != "examples"} for k, v in suite.items()}


def _suite_rows(rows: list, suite: dict) -> None:
    for name, res in suite.items():
        values = ", ".join(f"{k} {v:.3f}" for k, v in res["metrics"].items() if k != "tokens")
        rows.append((f"  {name} (n={res['n']})", f"{res['wall_s']:.0f} s wall; {values or res['skipped']}"))


def _finish(opts, rows: list, load_before, payload: dict) -> None:
    import torch

    load_after = os.getloadavg()
    rows.append(("machine", f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
                            f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}"))
    width = max(len(k) for k, _ in rows)
    print(f"{'measure'.ljust(width)} | result")
    for k, v in rows:
        print(f"{k.ljust(width)} | {v}")
    out = opts.out.with_name(opts.out.stem + "_suite.json") if opts.suite_only else opts.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**payload, "loadavg": [load_before, load_after], "rows": rows},
                              indent=2, default=str))


if __name__ == "__main__":
    main()
