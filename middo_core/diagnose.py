"""Diagnosis of one dataset version: every sample of D(i) gets its complexity, diversity and quality.

Models: L_pre under the base model (workspace config base_model); L_post, the embeddings and the
self-judgement under the model fine-tuned on D(i) (the iteration's checkpoint, or the base model
when there is none yet: the report and the iteration record say so). Order of work:
  1. post model: one pass gives loss_post and the embeddings (and the judge runs while it is loaded)
  2. base model: loss_pre (all cache hits when the post model is the base model)
  3. kNN over the embeddings -> diversity and neighbours
  4. one transaction writes the signal rows and marks the iteration 'diagnosed'
  5. up to AUTO_MAP_LIMIT samples, the UMAP map of the embeddings (middo_core.projections): the
     distributions can be read while it is drawn, and a map that fails leaves the diagnosis done
Model-computed values come from the signal cache when present and are checkpointed into it as
batches finish, so a rerun is instant and an interrupted run resumes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from middo_core.config import SignalsConfig
from middo_core.executors.base import Executor
from middo_core.progress import Cancelled, ProgressFn, report
from middo_core.projections import AUTO_MAP_LIMIT, ensure_projection, load_projection
from middo_core.sample import Sample
from middo_core.signals.base import SIGNAL_NAMES
from middo_core.signals.complexity import ComplexitySignal, ModelSource
from middo_core.signals.diversity import DiversitySignal, embeddings_meta, save_embeddings
from middo_core.store.iterations import get_iteration, upsert_iteration
from middo_core.store.samples import dataset, row_to_sample
from middo_core.store.signals import write_signals
from middo_core.workspace import Workspace

STAGE_POST = "post model: loss and embeddings"
STAGE_PRE = "complexity: loss under the base model"
STAGE_KNN = "diversity: nearest neighbours"
STAGE_QUALITY = "quality: self-judgement"
STAGE_WRITE = "writing signals"
STAGE_MAP = "map: UMAP projection"
QUALITY_CHUNK = 64  # samples judged between cache checkpoints

log = logging.getLogger("middo.diagnose")


class DiagnoseError(RuntimeError):
    pass


@dataclass
class DiagnoseReport:
    iteration: int
    n: int
    signals: list[str]
    base_model: str
    post_model: str
    post_model_is_base: bool  # no checkpoint yet: "post model = base model: not trained yet"
    judge_model: str | None = None
    truncated: int = 0
    empty_responses: int = 0
    computed: dict[str, int] = field(default_factory=dict)  # samples run through a model, per pass
    # sequences a pass had to cover where that is not n: pmi quality covers the samples and
    # their distinct responses after an empty user turn (computed + from cache = covered)
    covered: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)  # tokens fed to a model, per pass
    forward_calls: dict[str, int] = field(default_factory=dict)
    knn: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    embeddings_path: str | None = None
    # the UMAP map drawn with the diagnosis: {"drawn": True, "points", "seconds"[, "reused"]}, or
    # {"drawn": False, "reason"} when it was not (too many samples, or the error that stopped it)
    map: dict[str, Any] = field(default_factory=dict)
    executor: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def computed_total(self) -> int:
        return sum(self.computed.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(ws: Workspace, iteration: int, post_model: str | None = None,
             signals: tuple[str, ...] = SIGNAL_NAMES, progress: ProgressFn | None = None,
             source: ModelSource | None = None, executor: Executor | None = None,
             faithful: bool | None = None, map_limit: int = AUTO_MAP_LIMIT) -> DiagnoseReport:
    """Compute and store the signals of D(iteration); see the module docstring.

    map_limit: the most samples whose UMAP map is drawn with the diagnosis (a larger D(i) gets
    its map from the Map page's button).

    faithful: the paper's judge prompt layout for this run (None: the workspace's
    signals.faithful; middo.yaml is not changed).

    executor: where the model passes run (default: in this process; `make_executor("ray", ...)`
    spreads them over a Ray cluster). Values and the stored rows are the same either way."""
    started = time.perf_counter()
    unknown = [s for s in signals if s not in SIGNAL_NAMES]
    if unknown or not signals:
        raise DiagnoseError(f"unknown signals {unknown or '(none)'}: choose from {', '.join(SIGNAL_NAMES)}")
    cfg = ws.config.signals
    if faithful is not None:
        cfg = cfg.model_copy(update={"faithful": faithful})
    base = ws.config.base_model
    with ws.store.read() as con:
        rows = dataset(con, iteration)
        rec = get_iteration(con, iteration) or {}
    if rows.empty:
        raise DiagnoseError(f"D({iteration}) has no samples: import data or build this version first")
    samples: dict[str, Sample] = {r["id"]: row_to_sample(r) for r in rows.to_dict("records")}
    ids = list(samples)
    post = post_model or rec.get("model") or base
    out = DiagnoseReport(iteration, len(ids), list(signals), base, post,
                         post_model_is_base=(post == base))
    source = source or ModelSource(cfg.device)
    if executor is None:
        from middo_core.executors.local import LocalExecutor

        executor = LocalExecutor()
    out.executor = executor.describe()
    loss_pass = ComplexitySignal(prompt_format=cfg.prompt_format, max_len=cfg.max_len,
                                 batch_tokens=cfg.batch_size * 512)
    columns: dict[str, Any] = {"sample_id": ids}
    flags: dict[str, dict] = {}

    if "complexity" in signals or "diversity" in signals:
        post_res = loss_pass.run(ws, post, samples, source, with_embeddings="diversity" in signals,
                                 progress=progress, stage=STAGE_POST, executor=executor)
        _count(out, "post", post_res)
        flags = post_res.loss
        if "complexity" in signals:
            columns["loss_post"] = [post_res.loss[i]["loss"] for i in ids]
    if "quality" in signals and cfg.quality_mode == "pmi":
        columns.update(_pmi_quality(ws, cfg, samples, cfg.judge_model or post, source, out,
                                    progress, executor, loss_pass))
    elif "quality" in signals:
        columns.update(_quality(ws, cfg, samples, cfg.judge_model or post, source, out, progress,
                                executor))
    if "complexity" in signals:
        pre_res = loss_pass.run(ws, base, samples, source, progress=progress, stage=STAGE_PRE,
                                executor=executor)
        _count(out, "base", pre_res)
        columns["loss_pre"] = [pre_res.loss[i]["loss"] for i in ids]
        flags = flags or pre_res.loss
    source.release()
    if "diversity" in signals:
        matrix = np.stack([post_res.embedding[i] for i in ids])
        div = DiversitySignal(k=cfg.k, backend=cfg.knn_backend)
        frame, knn = div.compute(ids, matrix, progress=_stage(progress, STAGE_KNN))
        out.knn = {"backend": knn.backend, "exact": knn.exact, "recall": knn.recall, "k": cfg.k,
                   **knn.params}
        for col in ("diversity", "neighbours", "neighbour_sims"):
            columns[col] = frame[col].tolist()
        previous = embeddings_meta(ws, iteration) or {}  # read before this diagnosis replaces it
        same_vectors = previous.get("vectors") == post_res.embedding_key
        path = save_embeddings(ws, iteration, ids, post_res.embedding_key, matrix.shape[1], {
            "model": post, "fingerprint": post_res.fingerprint, "prompt_format": cfg.prompt_format,
            "max_len": cfg.max_len, "pooling": "mean of the last hidden layer over instruction+input"})
        out.embeddings_path = str(path)
    if flags:
        columns["truncated"] = [bool(flags[i]["truncated"]) for i in ids]
        columns["empty_response"] = [bool(flags[i]["empty"]) for i in ids]
        out.truncated = int(sum(columns["truncated"]))
        out.empty_responses = int(sum(columns["empty_response"]))
    out.seconds = round(time.perf_counter() - started, 3)
    report(progress, STAGE_WRITE, 0, 1)
    with ws.store.write() as con:  # every row of this diagnosis, or none
        write_signals(con, iteration, pd.DataFrame(columns))
        upsert_iteration(con, iteration, status="diagnosed", k=cfg.k, base_model=base, counts={
            "diagnosis": out.to_dict(), "post_model_is_base": out.post_model_is_base,
            "diagnosed_with": post})
    report(progress, STAGE_WRITE, 1, 1)
    if "diversity" in signals:
        out.map = _draw_map(ws, iteration, ids, matrix, same_vectors, map_limit, progress)
        with ws.store.write() as con:
            upsert_iteration(con, iteration, counts={"diagnosis": out.to_dict()})
    return out


def _draw_map(ws: Workspace, iteration: int, ids: list[str], matrix: np.ndarray, same_vectors: bool,
              limit: int, progress: ProgressFn | None) -> dict[str, Any]:
    """The UMAP map of this diagnosis's embeddings, stored; what happened, for the report.

    A failure is reported and logged, never raised: the signals are stored and stand. A cancel
    (raised from `progress`) stops the run like any other stage."""
    if len(ids) > limit:
        return {"drawn": False, "reason": f"{len(ids):,} samples, more than the {limit:,} a "
                "diagnosis maps by itself: compute the map on the Map page"}
    if same_vectors and set(load_projection(ws, iteration, text_chars=0)["sample_id"]) == set(ids):
        return {"drawn": True, "points": len(ids), "seconds": 0.0, "reused": True}  # same input
    started = time.perf_counter()
    try:
        frame = ensure_projection(ws, iteration, "umap", recompute=True, progress=_stage(progress, STAGE_MAP),
                                  loader=lambda _ws, _it: (ids, matrix))
    except Exception as exc:  # noqa: BLE001 - whatever stops the map, the diagnosis is done
        if _cancelled(exc):
            raise
        log.warning("D(%d) is diagnosed, but its map was not drawn: %s", iteration, exc)
        return {"drawn": False, "reason": f"the map failed: {exc}"}
    return {"drawn": True, "points": len(frame), "seconds": round(time.perf_counter() - started, 3)}


def _cancelled(exc: BaseException | None) -> bool:
    while exc is not None:  # a library may wrap the Cancelled raised in our callback
        if isinstance(exc, Cancelled):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _count(out: DiagnoseReport, name: str, res) -> None:
    out.computed[name] = res.computed
    out.tokens[name] = res.stats.tokens
    out.forward_calls[name] = res.stats.batches


def _stage(progress: ProgressFn | None, stage: str) -> ProgressFn | None:
    """Relabel a callee's progress events with this diagnosis's stage name."""
    if progress is None:
        return None
    return lambda ev: progress(type(ev)(stage, ev.done, ev.total, ev.message))


def _pmi_quality(ws: Workspace, cfg: SignalsConfig, samples: dict[str, Sample], judge: str,
                 source: ModelSource, out: DiagnoseReport, progress: ProgressFn | None,
                 executor: Executor, loss_pass: ComplexitySignal) -> dict[str, list]:
    """quality_mode pmi: two loss passes of the judge, both in the loss cache. The conditional one
    is the complexity signal's loss under the judge (already cached when the judge is the post
    model); the other scores each response after an empty user turn (its own sample id)."""
    from middo_core.executors.work import finite
    from middo_core.signals.judge_pmi import STAGE, end_logprob, pmi_frame, unconditioned
    from middo_core.signals.quality import QualitySignal
    from middo_core.store.signals import QUALITY_COLUMNS

    out.judge_model = judge
    ids = list(samples)
    bare = {sid: unconditioned(s) for sid, s in samples.items()}
    cond = loss_pass.run(ws, judge, samples, source, progress=progress, stage=STAGE,
                         executor=executor, need_last_nll=True)
    uncond = loss_pass.run(ws, judge, {b.id: b for b in bare.values()}, source,
                           progress=progress, stage=STAGE, executor=executor)
    frame = pmi_frame(
        ids, [(cond.loss[i]["loss"], end_logprob(cond.loss[i]["loss"], cond.loss[i]["last_nll"],
                                                 cond.loss[i]["truncated"])) for i in ids],
        [uncond.loss[bare[i].id]["loss"] for i in ids])
    out.computed["quality"] = cond.computed + uncond.computed
    out.covered["quality"] = len(ids) + len({b.id for b in bare.values()})
    out.tokens["quality"] = cond.stats.tokens + uncond.stats.tokens
    out.forward_calls["quality"] = cond.stats.batches + uncond.stats.batches
    signal = QualitySignal(mode="pmi", max_len=cfg.max_len, prompt_format=cfg.prompt_format)
    out.quality = {"mode": "pmi", "faithful": cfg.faithful, "template_hash": signal.template_hash(),
                   "unparseable": 0}
    return {c: [finite(frame.at[i, c]) if c in frame else None for i in ids]
            for c in QUALITY_COLUMNS}


def _quality(ws: Workspace, cfg: SignalsConfig, samples: dict[str, Sample], judge: str,
             source: ModelSource, out: DiagnoseReport, progress: ProgressFn | None,
             executor: Executor) -> dict[str, list]:
    """The six ratings and quality per sample: cached by (judge fingerprint, templates, params)."""
    try:
        from middo_core.signals.quality import QualitySignal
    except ImportError as exc:
        raise DiagnoseError("the quality signal is not available in this installation") from exc
    from middo_core.models.loader import model_fingerprint
    from middo_core.signals.base import cache_key
    from middo_core.store.signals import QUALITY_COLUMNS, get_cached

    signal = QualitySignal(mode=cfg.quality_mode, faithful=cfg.faithful, max_len=cfg.max_len,
                           prompt_format=cfg.prompt_format, batch_size=cfg.batch_size)
    out.judge_model = judge
    params = signal.model_dump(mode="json", exclude={"name", "batch_size", "endpoint_concurrency",
                                                     "endpoint_timeout_s"})
    key = cache_key("quality", model_fingerprint(judge), signal.template_hash(), params)
    ids = list(samples)
    with ws.store.read() as con:
        values = get_cached(con, "quality", key, ids)
    todo = [i for i in ids if i not in values]
    chunk = max(QUALITY_CHUNK, cfg.batch_size)
    report(progress, STAGE_QUALITY, len(ids) - len(todo), len(ids))
    stats = executor.judge(ws, signal, judge, todo, [samples[i] for i in todo], source, key,
                           values.update, chunk, progress=progress, stage=STAGE_QUALITY,
                           done_before=len(ids) - len(todo)) if todo else None
    out.computed["quality"] = len(todo)
    out.tokens["quality"] = stats.tokens if stats else 0
    out.forward_calls["quality"] = stats.forward_calls if stats else 0
    out.quality = {"mode": cfg.quality_mode, "faithful": cfg.faithful, "template_hash":
                   signal.template_hash(), "unparseable": stats.unparseable if stats else 0}
    return {c: [values[i][c] for i in ids] for c in QUALITY_COLUMNS}
