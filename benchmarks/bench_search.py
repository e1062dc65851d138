"""Search at scale: the Data page's search as a scan of every text against the search index
(middo_core/search_index.py), side by side on one workspace, with the load printed.

    python -m benchmarks.bench_search [--root benchmarks/out/studio/scale-1000000] [--repeat 3]

Builds the index (or brings it up to the store: `--rebuild` starts it over and times the whole
build), then times each query both ways with the store's own function the Studio calls
(`browse_page`: the count and the first page of 50), the median of `--repeat` runs, and checks
that both ways return the same count and page. The queries are the browser benchmark's
(benchmarks/bench_studio_scale.py): a topic word, one record's number, a common word, two words,
nothing found.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from middo_core.search_index import candidates, index_path, update_index
from middo_core.store.views import browse_page
from middo_core.workspace import open_workspace

REPO = Path(__file__).resolve().parents[1]


def load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=REPO / "benchmarks/out/studio/scale-1000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    ws = open_workspace(args.root)
    with ws.store.read() as con:
        n = con.execute("SELECT count(*) FROM samples").fetchone()[0]
    print(f"workspace {args.root} ({n:,} samples); load {load()}")
    t0 = time.perf_counter()
    report = update_index(ws, rebuild=args.rebuild)
    size = index_path(ws).stat().st_size / 2**20
    print(f"index: {report['added']:,} samples added in {time.perf_counter() - t0:.1f} s, "
          f"{size:.0f} MB on disk; load {load()}")
    terms = ["astronomy", f"(record {n // 3})", "therefore", "volcanoes usual", "no such text zq"]
    print("| query | matches | scan | index (candidates + page) | of which candidates | load |")
    print("|---|---:|---:|---:|---:|---|")
    for term in terms:
        def scan(term=term):
            with ws.store.read() as con:
                return browse_page(con, 0, term)

        def indexed(term=term):
            found = candidates(ws, term)
            with ws.store.read() as con:
                return browse_page(con, 0, term, candidates=found), found

        t_scan, (total, page) = timed(scan, args.repeat)
        t_index, ((total_i, page_i), found) = timed(indexed, args.repeat)
        t_cand, _ = timed(lambda term=term: candidates(ws, term), args.repeat)
        assert total == total_i and list(page["id"]) == list(page_i["id"]), term
        how = f"{t_cand * 1000:,.0f} ms" if found is not None else "scanned (too common)"
        print(f"| {term} | {total:,} | {t_scan * 1000:,.0f} ms | {t_index * 1000:,.0f} ms | {how} "
              f"| {load()} |")


if __name__ == "__main__":
    main()
