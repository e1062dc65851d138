"""The demo's signals, written to a file and compared with another run's: a refactoring of the
signal code must leave them identical (or say by how much and why they moved).

    python -m benchmarks.signal_snapshot write /tmp/before.parquet        # ~2 min on 2 cores
    python -m benchmarks.signal_snapshot compare /tmp/before.parquet /tmp/after.parquet

`write` builds the demo workspace (seed 0), and diagnoses D(0) with the packaged SmolLM2 as the
base model and a copy of it in its own folder as M(0) (its own fingerprint: no cache is shared),
as the demo-diagnosis benchmark in docs/BENCHMARKS.md does. `compare` prints the largest
difference per signal column and whether the default m's flag the same samples.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from middo_core.data.demo import create_demo_workspace
from middo_core.diagnose import diagnose
from middo_core.models.loader import resolve_model_path
from middo_core.selection import SignalTable
from middo_core.store.signals import load_signals


def write(out: Path, size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        post = Path(tmp) / "m0"
        shutil.copytree(resolve_model_path("smollm2-135m"), post)
        ws = create_demo_workspace(Path(tmp) / "demo", size=size)
        started = time.monotonic()
        diagnose(ws, 0, post_model=str(post))
        with ws.store.read() as con:
            frame = load_signals(con, 0)
    numeric = frame.select_dtypes("number")
    frame[["sample_id", *numeric.columns]].sort_values("sample_id").to_parquet(out, index=False)
    print(f"{len(frame):,} samples diagnosed in {time.monotonic() - started:.1f} s -> {out}")


def compare(a: Path, b: Path) -> int:
    left, right = pd.read_parquet(a), pd.read_parquet(b)
    if list(left["sample_id"]) != list(right["sample_id"]):
        print("the two snapshots hold different samples")
        return 1
    worst = 0.0
    for column in left.columns.drop("sample_id"):
        if column not in right:
            print(f"{column}: missing from {b}")
            return 1
        diff = np.nanmax(np.abs(left[column].to_numpy(float) - right[column].to_numpy(float)), initial=0.0)
        same_missing = (left[column].isna() == right[column].isna()).all()
        print(f"{column:<24} max |diff| {diff:.3g}{'' if same_missing else '  (missing values differ)'}")
        worst = max(worst, diff if same_missing else float("inf"))
    flags = [SignalTable(frame).select(1.0, -1.5, -1.5).flagged() for frame in (left, right)]
    same_flags = flags[0] == flags[1]
    print(f"flags at the default m's: {'identical' if same_flags else 'DIFFERENT'}")
    return 0 if worst == 0.0 and same_flags else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("out", type=Path)
    w.add_argument("--size", type=int, default=400)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.command == "write":
        write(args.out, args.size)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
