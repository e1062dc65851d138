"""One process sharing a workspace with others, for the concurrency test.

    python concurrent_actor.py review|studio WORKSPACE OUT.json STOP_FILE

review: a curator deciding pending proposals one by one through the review API.
studio: the Studio's reads (browse pages, search, statistics, review counts) plus an import of
        a few records now and then, each read checked for a consistent snapshot.
Every call goes through the library as the CLI and the Studio make it; any exception is recorded
and makes the process exit 1.
"""

from __future__ import annotations

import json
import random
import sys
import time
import traceback
from pathlib import Path


def ready(out: dict) -> None:
    """Tell the test this process has imported what it uses and is about to start its work."""
    Path(out["ready"]).touch()


def review(ws, out: dict, stop: Path) -> None:
    from middo_core.review import accept, reject, review_queue

    rng = random.Random(0)
    ready(out)
    while not stop.exists():
        pending = review_queue(ws, 0, status="pending")
        out["reads"] += 1
        if len(pending):
            pid = str(pending["id"].iloc[rng.randrange(len(pending))])
            action = rng.choice(["accepted", "rejected"])
            (accept if action == "accepted" else reject)(ws, pid, actor="curator-process")
            out["decisions"].append([pid, action, time.time()])
        time.sleep(0.02)


def studio(ws, out: dict, stop: Path) -> None:
    from middo_core.data import import_file
    from middo_core.store.review import review_counts
    from middo_core.store.views import (
        browse_samples,
        count_samples,
        dataset_statistics,
        proposal_count,
    )

    last_proposals = 0
    batch = 0
    folder = Path(out["folder"])
    ready(out)
    while not stop.exists():
        with ws.store.read() as con:  # one connection: one consistent snapshot
            total = count_samples(con, 0)
            page = browse_samples(con, 0, limit=50, offset=(out["reads"] * 50) % max(total, 1))
            found = count_samples(con, 0, text="step 1")
            stats = dataset_statistics(con, 0)
            proposals = proposal_count(con, 0)
            by_status = review_counts(con, 0)
        decided = sum(n for counts in by_status.values() for n in counts.values())
        if decided != proposals:
            out["inconsistent"].append(f"review counts {decided} != proposals {proposals}")
        if proposals < last_proposals:
            out["inconsistent"].append(f"proposals went from {last_proposals} to {proposals}")
        if stats["splits"].get("train") != total or len(page) != min(50, total) or found < 1:
            out["inconsistent"].append(f"browse/statistics disagree: {total}, {stats['splits']}, {len(page)}")
        last_proposals = proposals
        out["reads"] += 1
        out["read_times"].append(time.time())
        if out["reads"] % 5 == 0:
            batch += 1
            path = folder / f"studio-upload-{batch}.json"
            path.write_text(json.dumps([{"instruction": f"Uploaded {batch}.{k}", "output": "ok"}
                                        for k in range(5)]))
            rep = import_file(ws, path, iteration=1)
            out["imported"] += rep.n_imported
        time.sleep(0.02)


def main() -> int:
    role, root, out_path, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    from middo_core.workspace import open_workspace

    out = {"role": role, "reads": 0, "decisions": [], "imported": 0, "inconsistent": [],
           "read_times": [], "errors": [], "folder": str(out_path.parent),
           "ready": str(out_path.with_suffix(".ready"))}
    code = 0
    try:
        ws = open_workspace(root)
        (review if role == "review" else studio)(ws, out, stop)
    except Exception:  # noqa: BLE001 - the test reads it
        out["errors"].append(traceback.format_exc())
        code = 1
    out_path.write_text(json.dumps(out))
    return code


if __name__ == "__main__":
    sys.exit(main())
