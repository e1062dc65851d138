"""Building the next dataset version of a large workspace: every pending proposal accepted, then
D(i+1) built, on a copy of the store (the source workspace is left as it is).

    python -m benchmarks.bench_build_scale [--root benchmarks/out/studio/scale-1000000]

Prints the time of the bulk accept and of the build, the new version's size, the process's peak
resident memory and the machine's load before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from middo_core.build import build_next
from middo_core.review import bulk_decide
from middo_core.workspace import open_workspace

REPO = Path(__file__).resolve().parents[1]


def load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=REPO / "benchmarks/out/studio/scale-1000000")
    ap.add_argument("--iteration", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="build-scale-") as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        for name in ("middo.duckdb", "middo.yaml"):
            shutil.copy2(args.root / name, root / name)
        ws = open_workspace(root)
        with ws.store.read() as con:
            n, pending = con.execute("""
                SELECT (SELECT count(*) FROM dataset_members WHERE iteration = ? AND split = 'train'),
                       (SELECT count(*) FROM proposals WHERE iteration = ? AND status = 'pending')
            """, [args.iteration, args.iteration]).fetchone()
        print(f"D({args.iteration}): {n:,} samples, {pending:,} pending proposals; load {load()}")
        t0 = time.perf_counter()
        decided = bulk_decide(ws, args.iteration, "accept")
        print(f"bulk accept: {decided:,} in {time.perf_counter() - t0:.1f} s; load {load()}")
        t0 = time.perf_counter()
        report = build_next(ws, args.iteration)
        took = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"build of D({args.iteration + 1}): {took:.1f} s, {report.size_after:,} samples "
              f"({report.size_before:,} before); peak RSS {peak:,.0f} MB; load {load()}")


if __name__ == "__main__":
    main()
