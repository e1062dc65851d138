"""A 100k-sample workspace end to end: import, signals, select, browse, export, with peak memory.

    python -m benchmarks.bench_load [--n 100000] [--small 10000] [--docs]

Targets: import in seconds; select < 100 ms once the signals are loaded; a browse page (first,
last, a search) < 1 s including opening the store, as the Studio does. Import and export run in
fresh interpreters at --small and --n records so their peak RSS can be compared (memory should
not grow much faster than the data). --docs rewrites "## Load (100k samples)" in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.bench_import import _export_job, _import_job, _in_child, synthetic_records
from benchmarks.docs import DOCS, replace_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Load (100k samples)"
M_GRID = [(1.0, -1.5, -1.5), (0.5, -1.0, -1.0), (1.5, -2.0, -2.0), (0.0, 0.0, 0.0), (2.0, -0.5, -2.5)]


def synthetic_signals(ids: list[str], seed: int = 0) -> pd.DataFrame:
    """Signal rows with realistic spreads for `ids` (the shape diagnose() writes)."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    pre = rng.gamma(4.0, 0.5, n)
    frame = pd.DataFrame({
        "sample_id": ids, "loss_pre": pre, "loss_post": pre * 0.7 + rng.normal(0, 0.2, n),
        "diversity": rng.beta(8, 2, n),
        "neighbours": [json.dumps([ids[(i + 1) % n], ids[(i + 2) % n]]) for i in range(n)],
        "neighbour_sims": [json.dumps([0.9, 0.8])] * n,
        **{f"{side}_{dim}": rng.integers(3, 10, n).astype(float)
           for side in ("instruction", "response") for dim in ("clarity", "completeness", "factuality")},
    })
    frame["quality"] = frame[[c for c in frame if c.startswith(("instruction_", "response_"))]].mean(axis=1)
    return frame


def write_synthetic_signals(ws, iteration: int = 0, seed: int = 0) -> float:
    """Write signals for every training sample of D(iteration); returns seconds."""
    from middo_core.store.samples import dataset_ids
    from middo_core.store.signals import write_signals

    with ws.store.read() as con:
        ids = dataset_ids(con, iteration)
    frame = synthetic_signals(ids, seed)
    start = time.perf_counter()
    with ws.store.write() as con:
        write_signals(con, iteration, frame)
    return time.perf_counter() - start


def time_select(ws, iteration: int = 0) -> dict[str, float]:
    """Seconds to load the signals into a SignalTable, then ms per select() over an m grid."""
    from middo_core.store.signals import load_signals

    start = time.perf_counter()
    with ws.store.read() as con:
        frame = load_signals(con, iteration)
    return time_select_frame(frame, start)


def time_select_frame(frame: pd.DataFrame, start: float | None = None) -> dict[str, float]:
    """ms per select() (and per auto m search) over signals already read."""
    from middo_core.selection import SignalTable, auto_m

    start = time.perf_counter() if start is None else start
    table = SignalTable(frame)
    load_s = time.perf_counter() - start
    t = time.perf_counter()
    auto_m(table)
    auto_ms = (time.perf_counter() - t) * 1000
    times = []
    for _ in range(3):
        for m in M_GRID:
            t = time.perf_counter()
            sel = table.select(*m)
            sel.counts()
            times.append((time.perf_counter() - t) * 1000)
    return {"load_s": load_s, "select_ms_median": statistics.median(times),
            "select_ms_max": max(times), "auto_m_ms": auto_ms, "n": len(table)}


def time_browse(ws, iteration: int = 0) -> dict[str, float]:
    """Seconds per Studio read, each opening the store as the Studio does."""
    from middo_core.store.views import browse_samples, count_samples, dataset_statistics

    def timed(fn) -> float:
        best = []
        for _ in range(3):
            t = time.perf_counter()
            with ws.store.read() as con:
                fn(con)
            best.append(time.perf_counter() - t)
        return statistics.median(best)

    with ws.store.read() as con:
        total = count_samples(con, iteration)
    last = max(0, (total - 1) // 50 * 50)
    return {
        "first page": timed(lambda c: (count_samples(c, iteration), browse_samples(c, iteration, limit=50))),
        "last page": timed(lambda c: browse_samples(c, iteration, limit=50, offset=last)),
        "search page": timed(lambda c: (count_samples(c, iteration, text="river story"),
                                        browse_samples(c, iteration, text="river story", limit=50))),
        "statistics": timed(lambda c: dataset_statistics(c, iteration)),
    }


def run(n: int, small: int) -> list[dict]:
    from middo_core.workspace import open_workspace

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in (small, n):
            path = folder / f"data_{size}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in synthetic_records(size)), encoding="utf-8")
            seconds, cpu, imported, rss = _in_child(_import_job, str(folder / f"ws_{size}"), str(path))
            rows.append({"step": "import (jsonl)", "n": size, "value": seconds, "unit": "s",
                         "rss": rss, "target": "seconds"})
            seconds, cpu, written, rss = _in_child(_export_job, str(folder / f"ws_{size}"),
                                                   str(folder / f"out_{size}.jsonl"), "jsonl")
            rows.append({"step": "export (jsonl)", "n": size, "value": seconds, "unit": "s",
                         "rss": rss, "target": "seconds"})
        ws = open_workspace(folder / f"ws_{n}")
        rows.append({"step": "write signals", "n": n, "value": write_synthetic_signals(ws),
                     "unit": "s", "rss": None, "target": "seconds"})
        sel = time_select(ws)
        rows.append({"step": "load signals + statistics", "n": n, "value": sel["load_s"], "unit": "s",
                     "rss": None, "target": "once per selection screen"})
        rows.append({"step": "select (median of 15)", "n": n, "value": sel["select_ms_median"],
                     "unit": "ms", "rss": None, "target": "< 100 ms"})
        rows.append({"step": "select (slowest of 15)", "n": n, "value": sel["select_ms_max"],
                     "unit": "ms", "rss": None, "target": "< 100 ms"})
        for name, seconds in time_browse(ws).items():
            rows.append({"step": f"browse: {name}", "n": n, "value": seconds, "unit": "s",
                         "rss": None, "target": "< 1 s"})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| step | samples | time | peak RSS (MB) | target |", "|---|---:|---:|---:|---|"]
    for r in rows:
        value = f"{r['value']:.1f} ms" if r["unit"] == "ms" else f"{r['value']:.2f} s"
        rss = f"{r['rss']:.0f}" if r["rss"] is not None else ""
        lines.append(f"| {r['step']} | {r['n']:,} | {value} | {rss} | {r['target']} |")
    return "\n".join(lines)


def memory_note(rows: list[dict], n: int, small: int) -> str:
    notes = []
    for step in ("import (jsonl)", "export (jsonl)"):
        a = next(r["rss"] for r in rows if r["step"] == step and r["n"] == small)
        b = next(r["rss"] for r in rows if r["step"] == step and r["n"] == n)
        notes.append(f"{step.split()[0]} {a:.0f} -> {b:.0f} MB ({b / a:.1f}x for {n // small}x the samples, "
                     f"{(b - a) * 1024 / (n - small):.1f} KB per extra sample)")
    return "; ".join(notes)


def write_docs(rows: list[dict], n: int, small: int) -> None:
    body = (f"{SECTION}\n\n"
            f"Reproduce: `python -m benchmarks.bench_load --n {n} --small {small} --docs` "
            f"({platform.python_implementation()} {platform.python_version()}, {mp.cpu_count()} CPU "
            f"cores, load average {os.getloadavg()[0]:.1f} at the end, {time.strftime('%Y-%m-%d')}).\n"
            "Synthetic Alpaca records (benchmarks/bench_import.py) and synthetic signal rows written "
            "through `store.signals.write_signals`; import and export each in a fresh interpreter "
            "(peak RSS includes Python, pandas, pyarrow and DuckDB); select and browse in one "
            "process, each browse read opening the store as the Studio does.\n\n"
            + table(rows) + "\n\n"
            f"Memory, {small:,} vs {n:,} samples: {memory_note(rows, n, small)}, on top of a "
            "fixed ~200 MB of libraries. Python holds one batch at a time: the import stages the "
            "records to Parquet and moves them into the store in one transaction (all or "
            "nothing), whose rows DuckDB keeps in memory up to a 512 MB cap and spills to disk "
            "beyond it (600,000 records: 0.8 GB peak with the cap, 1.8 GB without), plus the "
            "duplicate report's set of ids (~100 bytes per record); the export has DuckDB copy "
            "the version to a temporary Parquet file read back in batches, and what grows is "
            "DuckDB's buffer pool. select() works on arrays loaded once per selection screen, so "
            "moving an m costs milliseconds.\n")
    replace_section(SECTION, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--docs", action="store_true", help=f"update {SECTION!r} in docs/BENCHMARKS.md")
    parser.add_argument("--select-only", type=int, default=0, metavar="N",
                        help="only time select() and auto m on N synthetic signal rows in memory")
    args = parser.parse_args()
    if args.select_only:
        ids = [f"s{i:08d}" for i in range(args.select_only)]
        sel = time_select_frame(synthetic_signals(ids))
        print(f"{sel['n']:,} samples: SignalTable built in {sel['load_s']:.2f} s; select median "
              f"{sel['select_ms_median']:.1f} ms, slowest {sel['select_ms_max']:.1f} ms; "
              f"auto m {sel['auto_m_ms']:.0f} ms (load average {os.getloadavg()[0]:.1f})")
        return
    rows = run(args.n, args.small)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(table(rows))
    print(memory_note(rows, args.n, args.small))
    if args.docs:
        write_docs(rows, args.n, args.small)
        print(f"updated {DOCS}")


if __name__ == "__main__":
    main()
