"""Diversity ("embedding cluster dynamics"): mean cosine similarity to the k nearest other samples.

Embedding = the post model's last hidden layer, mean-pooled over the instruction and input tokens
(computed in the loss pass, see forward.py). A low score marks a sparse sample; its neighbours
are stored (nearest first) because the refiner shows them as examples. The embeddings of each
iteration are kept as artifacts/embeddings/iter_{i}.npy with their ids and the model fingerprint,
for the map page and the refiner.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from middo_core.files import write_text_atomic
from middo_core.knn import KnnResult, knn_search, normalize
from middo_core.progress import ProgressFn
from middo_core.signals.base import SIGNALS, Signal
from middo_core.workspace import Workspace


@SIGNALS.register
class DiversitySignal(Signal):
    name: Literal["diversity"] = "diversity"
    k: int = Field(2, gt=0)  # the paper's Table 5: k = 2 is best
    backend: Literal["auto", "torch", "faiss", "faiss-ivf"] = "auto"
    block: int = Field(4096, gt=0)
    device: str = "auto"  # auto: the GPU when one is visible (exact search there), else the CPU

    def compute(self, ids: list[str], matrix: np.ndarray,
                progress: ProgressFn | None = None) -> tuple[pd.DataFrame, KnnResult]:
        """Per sample: diversity (mean similarity to its k nearest others), neighbours, their sims."""
        if len(ids) != matrix.shape[0]:
            raise ValueError(f"{len(ids)} ids for {matrix.shape[0]} embeddings")
        result = knn_search(matrix, self.k, block=self.block, backend=self.backend,
                            progress=progress, device=self.device)
        id_arr = np.asarray(ids, dtype=object)
        frame = pd.DataFrame({
            "sample_id": ids,
            "diversity": result.sims.mean(axis=1).astype(float) if result.sims.shape[1] else np.nan,
            "neighbours": [json.dumps(id_arr[row].tolist()) for row in result.idx],
            "neighbour_sims": [json.dumps([round(float(x), 6) for x in row]) for row in result.sims],
        })
        return frame, result


def embeddings_dir(ws: Workspace) -> Path:
    return ws.artifact_dir("embeddings")


def save_embeddings(ws: Workspace, iteration: int, ids: list[str], matrix: np.ndarray,
                    meta: dict) -> Path:
    """Write iter_{i}.npy (L2-normalized float32), iter_{i}_ids.json and iter_{i}.json (meta)."""
    folder = embeddings_dir(ws)
    unit = normalize(matrix)
    stem = folder / f"iter_{iteration}"
    tmp_npy = folder / f".iter_{iteration}.tmp.npy"
    np.save(tmp_npy, unit)
    write_text_atomic(folder / f"iter_{iteration}_ids.json", json.dumps(list(ids)))
    write_text_atomic(folder / f"iter_{iteration}.json",
                json.dumps({**meta, "n": len(ids), "dim": int(unit.shape[1]) if unit.ndim == 2 else 0},
                           indent=2))
    os.replace(tmp_npy, stem.with_suffix(".npy"))  # the matrix last: readers check it exists
    return stem.with_suffix(".npy")


def load_embeddings(ws: Workspace, iteration: int) -> tuple[list[str], np.ndarray]:
    """(ids, matrix) of the embeddings diagnosed for D(iteration); rows are L2-normalized."""
    folder = ws.artifacts / "embeddings"
    npy, ids_file = folder / f"iter_{iteration}.npy", folder / f"iter_{iteration}_ids.json"
    if not npy.exists() or not ids_file.exists():
        raise FileNotFoundError(f"{npy}: no embeddings for iteration {iteration} (run middo diagnose)")
    ids = json.loads(ids_file.read_text(encoding="utf-8"))
    matrix = np.load(npy, mmap_mode="r")
    if len(ids) != matrix.shape[0]:
        raise ValueError(f"{ids_file}: {len(ids)} ids for {matrix.shape[0]} rows in {npy.name}")
    return ids, np.asarray(matrix)


def embeddings_meta(ws: Workspace, iteration: int) -> dict | None:
    path = ws.artifacts / "embeddings" / f"iter_{iteration}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
