"""A workspace's state in one dict (for `middo status --json` and the Studio sidebar)."""

from __future__ import annotations

from typing import Any

from middo_core.store.iterations import get_metrics, list_iterations
from middo_core.store.runs import list_runs
from middo_core.store.samples import dataset_sizes
from middo_core.workspace import Workspace


def workspace_status(ws: Workspace, with_health: bool = False,
                     with_review: bool = False) -> dict[str, Any]:
    """with_health: also the newest diagnosis's signal health (reads its whole signal table, so
    only `middo status` asks for it, not the Studio's sidebar on every store change).
    with_review: also the review overlap and, per iteration with curators' decisions, their
    agreement and each curator's figures."""
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
        **({"review": _review(ws)} if with_review else {}),
    }


def _review(ws: Workspace) -> dict[str, Any]:
    """review.overlap and review.owners, and for each iteration with decisions: the curators'
    agreement (Fleiss' kappa over the first `raters` decisions of each proposal, Cohen's kappa per
    pair) and each curator's counts and speed (middo_core/agreement.py)."""
    from middo_core.agreement import review_agreement

    def plain(value: Any) -> Any:  # numpy and NaN to JSON's numbers and null
        if value is None or value != value:
            return None
        return value.item() if hasattr(value, "item") else value

    with ws.store.read() as con:
        reviewed = [r[0] for r in con.execute(
            "SELECT DISTINCT iteration FROM proposals ORDER BY iteration").fetchall()]
    per_iteration = {}
    for number in reviewed:
        found = review_agreement(ws, number)
        if found.curators.empty:
            continue
        per_iteration[str(number)] = {
            "raters": found.raters, "proposals_rated": found.items,
            "per_category": found.per_category, "fleiss_kappa": found.fleiss,
            "pairs": [{k: plain(v) for k, v in row.items()} for row in found.pairs.to_dict("records")],
            "curators": [{k: plain(v) for k, v in row.items()}
                         for row in found.curators.to_dict("records")],
        }
    return {"overlap": ws.config.review.overlap, "owners": list(ws.config.review.owners),
            "agreement": per_iteration}


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
