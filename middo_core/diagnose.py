"""Diagnosis of one dataset version: every sample of D(i) gets the signals asked for.

Models, by role: "base" (workspace config base_model) gives L_pre; "post" (the model fine-tuned on
D(i): the iteration's checkpoint, or the base model when there is none yet: the report and the
iteration record say so) gives L_post, the embeddings and, as "judge" unless signals.judge_model
names another, the self-judgement. Each registered signal (middo_core.signals.base) says which
shared passes it reads or computes its own rows. Order of work:
  1. per model (post, judge, base), its distinct shared passes, then the signals computed under it:
     one post pass gives loss_post and the embeddings, and the judge runs while it is loaded
  2. each signal's columns from the passes it read (diversity: kNN over the embeddings)
  3. one transaction writes the signal rows and marks the iteration 'diagnosed'
  4. when the embeddings were read, up to AUTO_MAP_LIMIT samples, the UMAP map
     (middo_core.projections): the distributions can be read while it is drawn, and a map that
     fails leaves the diagnosis done
Model-computed values come from the signal cache when present and are checkpointed into it as
batches finish, so a rerun is instant and an interrupted run resumes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from middo_core.canaries import KINDS, Canary, make_canaries, per_kind
from middo_core.executors.base import Executor
from middo_core.models.source import ModelSource
from middo_core.progress import Cancelled, ProgressFn, report
from middo_core.projections import AUTO_MAP_LIMIT, ensure_projection, load_projection
from middo_core.sample import Sample
from middo_core.signals.base import SIGNAL_NAMES, LossPass, Signal, registered
from middo_core.signals.complexity import STAGE_POST, STAGE_PRE
from middo_core.signals.diversity import embeddings_meta, save_embeddings
from middo_core.signals.passes import LossSettings, PassResult, SignalWork, loss_pass, response_only
from middo_core.store.canaries import write_canaries
from middo_core.store.iterations import get_iteration, upsert_iteration
from middo_core.store.samples import dataset, row_to_sample
from middo_core.store.signals import write_signals
from middo_core.workspace import Workspace

__all__ = ["STAGE_POST", "STAGE_PRE", "DiagnoseError", "DiagnoseReport", "diagnose"]
STAGE_WRITE = "writing signals"
STAGE_MAP = "map: UMAP projection"
ROLES = ("post", "judge", "base")  # the order models are read in

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
    # the synthetic defects scored beside the samples (middo_core.canaries): {"count", "per_kind",
    # "kinds", "seed", "share" (canaries per sample), "token_share" (their tokens per token of the
    # samples as the model reads them: the extra model work of every pass, cached or not),
    # "computed" and "tokens" (what this run computed for them)}; empty when canaries are off
    canaries: dict[str, Any] = field(default_factory=dict)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)  # other signals' describe()
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

    signals: names of registered signals (middo_core.signals.base.SIGNALS).

    map_limit: the most samples whose UMAP map is drawn with the diagnosis (a larger D(i) gets
    its map from the Map page's button).

    faithful: the paper's judge prompt layout for this run (None: the workspace's
    signals.faithful; middo.yaml is not changed).

    executor: where the model passes run (default: in this process; `make_executor("ray", ...)`
    spreads them over a Ray cluster). Values and the stored rows are the same either way."""
    started = time.perf_counter()
    known = registered()
    unknown = [s for s in signals if s not in known.names()]
    if unknown or not signals:
        raise DiagnoseError(f"unknown signals {unknown or '(none)'}: choose from {', '.join(known.names())}")
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
    models = {"base": base, "post": post, "judge": cfg.judge_model or post}
    judged = cfg.model_copy(update={"judge_model": models["judge"]})  # quality_mode auto reads it
    chosen = [known.get(name).from_config(judged) for name in signals]
    if any(s.role == "judge" or any(p.role == "judge" for p in s.inputs().values())
           for s in chosen):
        out.judge_model = models["judge"]
    canaries = _canaries(ws, iteration, samples)
    run = _Run(ws, samples, source, executor, progress, out, LossSettings.from_config(cfg),
               canaries={c.id: c.sample for c in canaries})

    passes = _plan(chosen)  # (role, response_only, novel) -> the merged pass
    results: dict[tuple[str, bool, bool], PassResult] = {}
    own: dict[str, dict[str, dict]] = {}
    stats: dict[str, dict[str, float]] = {}
    for model in dict.fromkeys(models[r] for r in ROLES):
        for where, spec in passes.items():
            if models[spec.role] == model:
                results[where] = run.loss(model, spec)
        for signal in chosen:
            if not signal.inputs() and signal.role and models[signal.role] == model:
                own[signal.name], stats[signal.name] = run.own(signal, model)
    for signal in chosen:  # signals that need no model
        if not signal.inputs() and not signal.role:
            own[signal.name], stats[signal.name] = run.own(signal, None)
    source.release()

    columns: dict[str, Any] = {"sample_id": ids}
    for signal in chosen:
        if signal.inputs():
            got = {name: results[_where(p)]
                   for name, p in signal.inputs().items()}
            columns.update(signal.from_inputs(ids, got, _stage(progress, signal.stage)))
        else:
            columns.update({c: [own[signal.name][i].get(c) for i in ids] for c in signal.columns})
        _describe(out, signal, signal.describe(stats.get(signal.name, {})))
    canary_rows = _canary_values(canaries, ids, chosen, results, own)
    flags = next((results[w].loss for w, p in passes.items()
                  if p.role in ("post", "base") and not (p.response_only or p.novel)), None)
    if canaries:
        out.canaries = {**_canary_report(ws, canaries, ids, flags), **run.canary_work}
    if flags:
        columns["truncated"] = [bool(flags[i]["truncated"]) for i in ids]
        columns["empty_response"] = [bool(flags[i]["empty"]) for i in ids]
        out.truncated = int(sum(columns["truncated"]))
        out.empty_responses = int(sum(columns["empty_response"]))
    embedded = next((results[w] for w, p in passes.items() if p.embeddings), None)
    if embedded is not None:
        matrix = embedded.matrix(ids)
        previous = embeddings_meta(ws, iteration) or {}  # read before this diagnosis replaces it
        same_vectors = previous.get("vectors") == embedded.embedding_key
        path = save_embeddings(ws, iteration, ids, embedded.embedding_key, matrix.shape[1], {
            "model": post, "fingerprint": embedded.fingerprint, "prompt_format": cfg.prompt_format,
            "max_len": cfg.max_len, "pooling": "mean of the last hidden layer over instruction+input"})
        out.embeddings_path = str(path)
    out.seconds = round(time.perf_counter() - started, 3)
    report(progress, STAGE_WRITE, 0, 1)
    signal_of = {c: s.name for s in chosen for c in s.columns}
    with ws.store.write() as con:  # every row of this diagnosis, or none
        write_signals(con, iteration, pd.DataFrame(columns), signal_of)
        write_canaries(con, iteration, _canary_frame(canaries, ws.config.canaries.seed),
                       canary_rows)
        upsert_iteration(con, iteration, status="diagnosed", k=cfg.k, base_model=base, counts={
            "diagnosis": out.to_dict(), "post_model_is_base": out.post_model_is_base,
            "diagnosed_with": post})
    report(progress, STAGE_WRITE, 1, 1)
    if embedded is not None:
        out.map = _draw_map(ws, iteration, ids, matrix, same_vectors, map_limit, progress)
        with ws.store.write() as con:
            upsert_iteration(con, iteration, counts={"diagnosis": out.to_dict()})
    return out


def _canaries(ws: Workspace, iteration: int, samples: dict[str, Sample]) -> list[Canary]:
    """This diagnosis's canaries (none when the workspace turns them off)."""
    cfg = ws.config.canaries
    if not cfg.enabled:
        return []
    kinds = cfg.kinds or list(KINDS)
    count = per_kind(len(samples), len(kinds), cfg.min_per_kind, cfg.max_per_kind, cfg.per_kind)
    return make_canaries(samples, count, seed=cfg.seed * 1_000_003 + iteration, kinds=kinds)


def _canary_values(canaries: list[Canary], ids: list[str], chosen: list[Signal],
                   results: dict[tuple[str, bool, bool], PassResult],
                   own: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """The canaries' numeric signal values, long: canary_id, name, value."""
    canary_ids, source_ids = [c.id for c in canaries], [c.source_id for c in canaries]
    columns: dict[str, list] = {}
    for signal in chosen:
        if signal.inputs():
            got = {name: results[_where(p)] for name, p in signal.inputs().items()}
            columns.update(signal.canary_columns(canary_ids, source_ids, ids, got))
        else:
            columns.update({c: [own[signal.name][i].get(c) for i in canary_ids]
                            for c in signal.columns})
    numeric = {name: values for name, values in columns.items()
               if all(v is None or isinstance(v, (int, float, np.number)) for v in values)}
    frame = pd.DataFrame({"canary_id": canary_ids, **numeric})
    return frame.melt(id_vars="canary_id", var_name="name", value_name="value")


def _canary_frame(canaries: list[Canary], seed: int) -> pd.DataFrame:
    return pd.DataFrame([{"id": c.id, "kind": c.kind, "axis": c.axis, "source_id": c.source_id,
                          "seed": seed, "instruction": c.sample.instruction,
                          "input": c.sample.input, "output": c.sample.output} for c in canaries],
                        columns=["id", "kind", "axis", "source_id", "seed", "instruction", "input",
                                 "output"])


def _canary_report(ws: Workspace, canaries: list[Canary], ids: list[str],
                   flags: dict[str, dict] | None) -> dict[str, Any]:
    """How many canaries, and their share of the model work (tokens in the post model's pass)."""
    kinds = sorted({c.kind for c in canaries})
    out: dict[str, Any] = {"count": len(canaries), "kinds": kinds, "seed": ws.config.canaries.seed,
                           "per_kind": {k: sum(c.kind == k for c in canaries) for k in kinds},
                           "share": round(len(canaries) / max(len(ids), 1), 4)}
    if flags:
        spent = sum(flags[c.id].get("tokens", 0) for c in canaries if c.id in flags)
        base = sum(flags[i].get("tokens", 0) for i in ids if i in flags)
        out["token_share"] = round(spent / base, 4) if base else None
    return out


def _where(spec: LossPass) -> tuple[str, bool, bool]:
    """The key of a shared pass: (role, response_only, novel)."""
    return spec.role, spec.response_only, spec.novel


def _plan(chosen: list[Signal]) -> dict[tuple[str, bool, bool], LossPass]:
    """The distinct shared passes the signals read, keyed by (role, response_only, novel): a request
    for embeddings or last_nll widens the pass another signal asked for (the first names it).
    Two roles naming one model are two passes, the second served from the cache."""
    passes: dict[tuple[str, bool, bool], LossPass] = {}
    for signal in chosen:
        for spec in signal.inputs().values():
            where = _where(spec)
            have = passes.get(where)
            passes[where] = spec if have is None else replace(
                have, embeddings=have.embeddings or spec.embeddings,
                last_nll=have.last_nll or spec.last_nll)
    return passes


@dataclass
class _Run:
    """Runs the passes of one diagnosis through its executor and counts them in its report.

    The canaries go through every pass after the samples, as work of their own: the samples'
    values are the same with or without them, and their cost is counted apart (out.canaries)."""

    ws: Workspace
    samples: dict[str, Sample]
    source: ModelSource
    executor: Executor
    progress: ProgressFn | None
    out: DiagnoseReport
    settings: LossSettings
    canaries: dict[str, Sample] = field(default_factory=dict)
    canary_work: dict[str, int] = field(default_factory=lambda: {"computed": 0, "tokens": 0})

    def loss(self, model: str, spec: LossPass) -> PassResult:
        res = self._loss(model, spec, self.samples, spec.stage)
        label = spec.label or spec.role
        self._count(label, res.computed, res.stats.get("tokens", 0), res.stats.get("batches", 0))
        if self.canaries:
            more = self._loss(model, spec, self.canaries, f"{spec.stage} · canaries")
            res.loss.update(more.loss)
            res.embedding.update(more.embedding)
            res.ids_of.update(more.ids_of)
            self._count_canaries(more.computed, more.stats.get("tokens", 0))
        return res

    def _loss(self, model: str, spec: LossPass, samples: dict[str, Sample], stage: str) -> PassResult:
        samples, ids_of = response_only(samples) if spec.response_only else (samples, {})

        def run_work(work, ids, batch, sink):
            return self.executor.map(self.ws, work, ids, batch, self.source, sink,
                                     progress=self.progress, stage=stage)

        if spec.novel:
            from middo_core.signals.judge_novel import novel_pass

            return novel_pass(self.ws, self.settings, model, samples, self.source, run_work)

        res = loss_pass(self.ws, self.settings, model, samples, self.source, run_work,
                        with_embeddings=spec.embeddings, need_last_nll=spec.last_nll)
        res.ids_of = ids_of
        return res

    def own(self, signal: Signal, model: str | None) -> tuple[dict[str, dict], dict[str, float]]:
        """A signal's own rows: from the cache, the rest computed under `model`."""
        stage = signal.stage or signal.name
        values, stats, computed = self._own(signal, model, self.samples, stage)
        self._count(signal.name, computed, stats.get("tokens", 0), stats.get("forward_calls", 0))
        if self.canaries:
            more, extra, computed = self._own(signal, model, self.canaries, f"{stage} · canaries")
            values.update(more)
            self._count_canaries(computed, extra.get("tokens", 0))
        return values, stats

    def _own(self, signal: Signal, model: str | None, samples: dict[str, Sample], stage: str
             ) -> tuple[dict[str, dict], dict[str, float], int]:
        from middo_core.models.loader import model_fingerprint
        from middo_core.store.signals import get_cached

        ids = list(samples)
        key = signal.key(model_fingerprint(model) if model else "")
        with self.ws.store.read() as con:
            values = get_cached(con, signal.name, key, ids)
        todo = [i for i in ids if i not in values]
        report(self.progress, stage, len(ids) - len(todo), len(ids))
        stats: dict[str, float] = {}
        if todo:
            work = SignalWork(signal, model, key)
            stats = self.executor.map(
                self.ws, work, todo, [samples[i] for i in todo], self.source,
                lambda rows: values.update(rows.cache_rows()), progress=self.progress,
                stage=stage, done_before=len(ids) - len(todo))
        return values, stats, len(todo)

    def _count(self, label: str, computed: int, tokens: float, calls: float) -> None:
        out = self.out
        out.computed[label] = out.computed.get(label, 0) + int(computed)
        out.tokens[label] = out.tokens.get(label, 0) + int(tokens)
        out.forward_calls[label] = out.forward_calls.get(label, 0) + int(calls)

    def _count_canaries(self, computed: int, tokens: float) -> None:
        self.canary_work["computed"] += int(computed)
        self.canary_work["tokens"] += int(tokens)


def _describe(out: DiagnoseReport, signal: Signal, info: dict[str, Any]) -> None:
    covered = info.pop("covered", None)
    if covered is not None:
        out.covered[signal.name] = covered
    if signal.report_field:
        setattr(out, signal.report_field, info)
    elif info:
        out.details[signal.name] = info


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


def _stage(progress: ProgressFn | None, stage: str) -> ProgressFn | None:
    """Relabel a callee's progress events with this diagnosis's stage name."""
    if progress is None:
        return None
    return lambda ev: progress(type(ev)(stage, ev.done, ev.total, ev.message))
