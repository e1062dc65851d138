"""Ablations and the random control as first-class runs: child workspaces beside the main one.

A variant starts from the same seed data and reuses the main run's init model M(0), its scores and
its diagnosis of D(0) (they do not depend on the variant), then runs its own loop:
- without one axis (the paper's Table 3: w/o loss, w/o neighbour, w/o score);
- a random control: as many samples flagged per axis as the main run, drawn at random.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from middo_core.signals.diversity import embeddings_meta
from middo_core.store.iterations import get_iteration, get_metrics, put_metrics, upsert_iteration
from middo_core.store.samples import SAMPLE_COLUMNS, dataset, insert_samples, set_members
from middo_core.store.vectors import share_vectors
from middo_core.workspace import Workspace, init_workspace, open_workspace

ABLATIONS = {"loss": "complexity", "neighbour": "diversity", "score": "quality"}
VARIANTS_DIR = "ablations"


class VariantError(ValueError):
    pass


def variant_root(ws: Workspace, name: str) -> Path:
    return ws.root / VARIANTS_DIR / name


def list_variants(ws: Workspace) -> list[Workspace]:
    folder = ws.root / VARIANTS_DIR
    if not folder.is_dir():
        return []
    return [open_workspace(p) for p in sorted(folder.iterdir()) if (p / "middo.duckdb").exists()]


def create_variant(ws: Workspace, without: str | None = None, random_control: bool = False) -> Workspace:
    """Create (or reopen) the child workspace `w/o-<axis>` or `random-control`."""
    if random_control == (without is not None):
        raise VariantError("choose exactly one: an axis to leave out, or the random control")
    if without is not None and without not in ABLATIONS:
        raise VariantError(f"unknown ablation {without!r}: choose one of {', '.join(ABLATIONS)}")
    name = "random-control" if random_control else f"wo-{without}"
    root = variant_root(ws, name)
    if (root / "middo.duckdb").exists():
        return open_workspace(root)
    config = ws.config.model_copy(deep=True)
    config.name = f"{ws.config.name} / {name}"
    if random_control:
        config.loop.control, config.loop.reference = "random", str(ws.root.resolve())
    else:
        config.loop.axes = [a for a in config.loop.axes if a != ABLATIONS[without]]
    child = init_workspace(root, config)
    _copy_seed(ws, child)
    return child


def _copy_seed(parent: Workspace, child: Workspace) -> None:
    """D(0) with its held-out split, plus M(0), its scores and its diagnosis when they exist."""
    from middo_core.store.signals import load_signals, write_signals

    with parent.store.read() as con:
        train = dataset(con, 0, "train")
        heldout = dataset(con, 0, "heldout")
        rec = get_iteration(con, 0) or {}
        metrics = get_metrics(con)
        signals = load_signals(con, 0)
    with child.store.write() as con:
        insert_samples(con, train[SAMPLE_COLUMNS])
        insert_samples(con, heldout[SAMPLE_COLUMNS])
        set_members(con, 0, train["id"].tolist())
        set_members(con, 0, heldout["id"].tolist(), split="heldout")
        upsert_iteration(con, 0, status="built", base_model=child.config.base_model)
        if rec.get("model"):
            counts = {k: v for k, v in rec["counts"].items() if k in ("diagnosed_with",)}
            upsert_iteration(con, 0, status="evaluated", model=rec["model"], counts=counts)
            rows = metrics[metrics["iteration"] == 0]
            put_metrics(con, 0, [(r.benchmark, r.metric, r.value, r.n) for r in rows.itertuples()])
        if not signals.empty and rec.get("model"):
            write_signals(con, 0, signals)
    for f in parent.artifacts.glob("*.json*"):  # demo labels and evaluation items, import reports
        if f.is_file():
            shutil.copy2(f, child.artifacts / f.name)
    emb = parent.artifacts / "embeddings"
    if emb.is_dir():
        target = child.artifact_dir("embeddings")
        for f in emb.glob("iter_0*"):
            shutil.copy2(f, target / f.name)
        key = (embeddings_meta(parent, 0) or {}).get("vectors")
        if key:  # the vectors the record names, as hard links where the disk allows
            share_vectors(parent, child, key)
