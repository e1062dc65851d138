"""Diversity ("embedding cluster dynamics"): mean cosine similarity to the k nearest other samples.

Embedding = the post model's last hidden layer, mean-pooled over the instruction and input tokens
(computed in the loss pass, see forward.py). A low score marks a sparse sample; its neighbours
are stored (nearest first) because the refiner shows them as examples. Each iteration's
diagnosis records which embeddings it used, for the map page: artifacts/embeddings/iter_{i}.json
(the model, its fingerprint and the vector cache key) and iter_{i}_ids.json (the row order). The
vectors themselves stay in the vector cache (middo_core.store.vectors): one copy, not two.
Workspaces diagnosed before that kept a normalized copy, iter_{i}.npy, which is still read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PrivateAttr

from middo_core.files import write_text_atomic
from middo_core.knn import KnnResult, knn_search, nearest_in, normalize
from middo_core.progress import ProgressFn
from middo_core.signals.base import SIGNALS, LossPass, Signal
from middo_core.workspace import Workspace


@SIGNALS.register
class DiversitySignal(Signal):
    name: Literal["diversity"] = "diversity"
    k: int = Field(2, gt=0)  # the paper's Table 5: k = 2 is best
    backend: Literal["auto", "torch", "faiss", "faiss-ivf"] = "auto"
    block: int = Field(4096, gt=0)
    device: str = "auto"  # auto: the GPU when one is visible (exact search there), else the CPU
    columns: ClassVar[tuple[str, ...]] = ("diversity", "neighbours", "neighbour_sims")
    stage: ClassVar[str] = "diversity: nearest neighbours"
    report_field: ClassVar[str] = "knn"
    _knn: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_config(cls, cfg) -> DiversitySignal:
        return cls(k=cfg.k, backend=cfg.knn_backend)

    def inputs(self) -> dict[str, LossPass]:
        # the embeddings are a by-product of the post model's loss pass
        from middo_core.signals.complexity import STAGE_POST

        return {"post": LossPass("post", embeddings=True, stage=STAGE_POST, label="post")}

    def from_inputs(self, ids: list[str], inputs: dict[str, Any],
                    progress: ProgressFn | None = None) -> dict[str, list]:
        frame, knn = self.neighbours(ids, inputs["post"].matrix(ids), progress=progress)
        self._knn = {"backend": knn.backend, "exact": knn.exact, "recall": knn.recall, "k": self.k,
                     **knn.params}
        return {c: frame[c].tolist() for c in self.columns}

    def canary_columns(self, canary_ids: list[str], source_ids: list[str], ids: list[str],
                       inputs: dict[str, Any]) -> dict[str, list]:
        """Each canary's mean similarity to its k nearest samples of the dataset other than its
        source (it stands in the source's place; canaries are never one another's neighbours,
        and the dataset's own values stay as they are)."""
        if not canary_ids:
            return {"diversity": []}
        post = inputs["post"]
        queries = np.stack([post.embedding[i] for i in canary_ids])
        row = {sid: i for i, sid in enumerate(ids)}
        sims = nearest_in(post.matrix(ids), queries, self.k,
                          exclude=np.array([row.get(s, -1) for s in source_ids]))
        return {"diversity": sims.mean(axis=1).astype(float).tolist()}

    def describe(self, stats: dict[str, float]) -> dict[str, Any]:
        return dict(self._knn)

    def neighbours(self, ids: list[str], matrix: np.ndarray,
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


def _record_paths(ws: Workspace, iteration: int) -> tuple[Path, Path]:
    """(the record iter_{i}.json, the row order iter_{i}_ids.json) of D(iteration)'s embeddings."""
    folder = ws.artifacts / "embeddings"
    return folder / f"iter_{iteration}.json", folder / f"iter_{iteration}_ids.json"


def embeddings_recorded(ws: Workspace, iteration: int) -> bool:
    """Whether a diagnosis recorded the embeddings of D(iteration) (the map is drawn from them)."""
    return all(path.exists() for path in _record_paths(ws, iteration))


def save_embeddings(ws: Workspace, iteration: int, ids: list[str], key: str, dim: int,
                    meta: dict) -> Path:
    """Record the embeddings of D(iteration)'s diagnosis: vector cache `key`, rows in `ids` order.
    Returns the record's path (iter_{i}.json, written last: readers check it)."""
    embeddings_dir(ws)  # created if missing
    record, ids_file = _record_paths(ws, iteration)
    write_text_atomic(ids_file, json.dumps(list(ids)))
    write_text_atomic(record, json.dumps({**meta, "vectors": key, "n": len(ids), "dim": dim},
                                         indent=2))
    record.with_suffix(".npy").unlink(missing_ok=True)  # an older diagnosis's copy
    return record


def load_embeddings(ws: Workspace, iteration: int) -> tuple[list[str], np.ndarray]:
    """(ids, matrix) of the embeddings diagnosed for D(iteration); rows are L2-normalized."""
    from middo_core.store.vectors import vector_cache

    record, ids_file = _record_paths(ws, iteration)
    meta = embeddings_meta(ws, iteration)
    if meta is None or not ids_file.exists():
        raise FileNotFoundError(f"{record}: no embeddings for iteration {iteration} (run middo diagnose)")
    ids = json.loads(ids_file.read_text(encoding="utf-8"))
    if meta.get("vectors"):
        try:
            return ids, normalize(vector_cache(ws, meta["vectors"]).matrix(ids))
        except KeyError as exc:
            raise FileNotFoundError(f"{exc.args[0]}: the embeddings of iteration {iteration} are "
                                    "gone from the vector cache (run middo diagnose again)") from exc
    npy = record.with_suffix(".npy")  # a workspace diagnosed before the vector cache record
    if not npy.exists():
        raise FileNotFoundError(f"{npy}: no embeddings for iteration {iteration} (run middo diagnose)")
    matrix = np.load(npy, mmap_mode="r")
    if len(ids) != matrix.shape[0]:
        raise ValueError(f"{ids_file}: {len(ids)} ids for {matrix.shape[0]} rows in {npy.name}")
    return ids, np.asarray(matrix)


def embeddings_meta(ws: Workspace, iteration: int) -> dict | None:
    path = _record_paths(ws, iteration)[0]
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
