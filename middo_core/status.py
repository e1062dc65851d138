"""A workspace's state in one dict (for `middo status --json` and the Studio sidebar)."""

from __future__ import annotations

from typing import Any

from middo_core.store.iterations import get_metrics, list_iterations
from middo_core.store.runs import list_runs
from middo_core.store.samples import dataset_sizes
from middo_core.workspace import Workspace


def workspace_status(ws: Workspace, with_health: bool = False) -> dict[str, Any]:
    """with_health: also the newest diagnosis's signal health (reads its whole signal table, so
    only `middo status` asks for it, not the Studio's sidebar on every store change)."""
    with ws.store.read() as con:
        sizes = dataset_sizes(con)
        iterations = list_iterations(con)
        runs = list_runs(con).to_dict("records")
        n_samples = con.execute("SELECT count(*) FROM samples").fetchall()[0][0]
        metrics = get_metrics(con)
    return {
        "name": ws.config.name,
        "root": str(ws.root),
        "base_model": ws.config.base_model,
        "samples": n_samples,
        "dataset_sizes": {str(k): v for k, v in sizes.items()},
        "iterations": iterations,
        "runs": runs,
        "metrics": _metrics(metrics),
        **({"health": _health(ws, iterations)} if with_health else {}),
    }


def _health(ws: Workspace, iterations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The signal health of the newest diagnosed iteration, at its stored m's (None: no
    diagnosis with canaries yet)."""
    from middo_core.health import signal_health

    diagnosed = [r["number"] for r in iterations if r.get("counts", {}).get("diagnosis")]
    if not diagnosed:
        return None
    found = signal_health(ws, max(diagnosed))
    return found.to_dict() if found else None


def _metrics(frame) -> dict[str, Any]:
    """The newest evaluated iteration's scores ("benchmark / metric" -> value), and every score."""
    if frame.empty:
        return {"latest_iteration": None, "latest": {}, "all": []}
    latest = int(frame["iteration"].max())
    rows = frame[frame["iteration"] == latest]
    return {
        "latest_iteration": latest,
        "latest": {f"{r.benchmark} / {r.metric}": float(r.value) for r in rows.itertuples()},
        "all": [{"iteration": int(r.iteration), "benchmark": r.benchmark, "metric": r.metric,
                 "value": float(r.value), "n": None if r.n != r.n or r.n is None else int(r.n)}
                for r in frame.itertuples()],
    }
