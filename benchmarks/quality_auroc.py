"""How well each candidate quality signal finds the demo's planted quality defects (AUROC).

    python -m benchmarks.quality_auroc [--root benchmarks/out/quality/demo] [--judge]

On the demo workspace (created, and M(0) trained with the product's training, when missing), the
loss passes every candidate reads are run once through the product's cached loss pass: each
sample under M(0) (with the last token's NLL), each response after an empty user turn under M(0),
and each sample under the base model. Every candidate is a function of those numbers, written so
that higher = better quality; AUROC is against the planted quality defects (wrong_answer,
irrelevant, truncated) among all samples of D(0), as in benchmarks/evidence_demo.py. `--judge`
also runs the paper's self-judge (`logprobs`, six rating prompts per sample: slow on a CPU).
Last, the product's default quality signal is computed by the diagnosis itself and scored the
same way. This script is where the default was chosen; the real-data check is
benchmarks/quality_realset.py, run once afterwards.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

KINDS = ("wrong_answer", "irrelevant", "truncated")


def demo_workspace(root: Path):
    from middo_core.data import create_demo_workspace
    from middo_core.loop import train_step
    from middo_core.store.iterations import get_iteration
    from middo_core.workspace import open_workspace

    ws = open_workspace(root) if (root / "middo.duckdb").exists() else create_demo_workspace(root)
    with ws.store.read() as con:
        trained = (get_iteration(con, 0) or {}).get("model")
    if not trained:
        train_step(ws, 0)
    return ws


def passes(ws) -> pd.DataFrame:
    """Per sample of D(0): loss_post, end_logprob (under M(0)), loss_uncond (the response alone,
    under M(0)), loss_pre (under the base model); from the product's cached loss pass."""
    from middo_core.executors.local import LocalExecutor
    from middo_core.models.source import ModelSource
    from middo_core.signals.judge_pmi import end_logprob
    from middo_core.signals.passes import LossSettings, loss_pass, response_only
    from middo_core.store.iterations import get_iteration
    from middo_core.store.samples import dataset, row_to_sample

    with ws.store.read() as con:
        samples = {r["id"]: row_to_sample(r) for r in dataset(con, 0).to_dict("records")}
        post = (get_iteration(con, 0) or {})["model"]
    settings = LossSettings.from_config(ws.config.signals)
    source, executor = ModelSource(ws.config.signals.device), LocalExecutor()

    def run(model, batch, last_nll=False):
        def run_work(work, ids, todo, sink):
            return executor.map(ws, work, ids, todo, source, sink)
        return loss_pass(ws, settings, model, batch, source, run_work, need_last_nll=last_nll).loss

    cond = run(post, samples, last_nll=True)
    bare, ids_of = response_only(samples)
    uncond = run(post, bare)
    pre = run(ws.config.base_model, samples)
    ids = list(samples)
    return pd.DataFrame({
        "loss_post": [cond[i]["loss"] for i in ids],
        "end_logprob": [end_logprob(cond[i]["loss"], cond[i]["last_nll"], cond[i]["truncated"])
                        for i in ids],
        "loss_uncond": [uncond[ids_of[i]]["loss"] for i in ids],
        "loss_pre": [pre[i]["loss"] for i in ids],
    }, index=pd.Index(ids, name="sample_id")).astype(float)


def z(x: pd.Series) -> pd.Series:
    return (x - x.mean()) / (x.std() or 1.0)


def candidates(f: pd.DataFrame) -> dict[str, pd.Series]:
    """Higher = better quality, each."""
    ifd = f.loss_post / f.loss_uncond.clip(lower=1e-6)
    pmi = f.loss_uncond - f.loss_post
    end = f.end_logprob.fillna(0.0)
    out = {
        "pmi mode: 10 (1 - IFD) P(end)": 10 * (1 - ifd).clip(0, 1) * np.exp(end),
        "-IFD (relevance)": -ifd,
        "PMI per token (relevance)": pmi,
        "log P(end of turn) (completion)": end,
        "-loss under M(0)": -f.loss_post,
        "-loss under the base model": -f.loss_pre,
        "-(loss M(0) - loss base)": -(f.loss_post - f.loss_pre),
        "z: -loss M(0) + log P(end)": z(-f.loss_post) + z(end),
        "z: PMI + log P(end)": z(pmi) + z(end),
        "z: -loss M(0) + PMI": z(-f.loss_post) + z(pmi),
        "z: -loss M(0) + PMI + log P(end)": z(-f.loss_post) + z(pmi) + z(end),
        "z: -loss M(0) - IFD + log P(end)": z(-f.loss_post) + z(-ifd) + z(end),
        "sum: -loss M(0) + PMI + log P(end)": -f.loss_post + pmi + end,
        "z: -loss base - IFD": z(-f.loss_pre) + z(-ifd),
        "z: -loss base + log P(end)": z(-f.loss_pre) + z(end),
        "z: -loss base - IFD + log P(end)": z(-f.loss_pre) + z(-ifd) + z(end),
        "sum: -loss base + log P(end)": -f.loss_pre + end,
        "sum: -loss base - IFD + log P(end)": -f.loss_pre - ifd + end,
        "plain product: 10 (1 - IFD) P(end) exp(-loss base)":
            10 * (1 - ifd).clip(0, 1) * np.exp(end) * np.exp(-f.loss_pre),
        "pmi-ppl: 10 ((1 - IFD) P(end) exp(-loss base))^(1/3)":
            10 * np.cbrt((1 - ifd).clip(0, 1) * np.exp(end) * np.exp(-f.loss_pre)),
    }
    return out


def auroc(labels: dict, score: pd.Series, kind: str | None = None) -> float:
    """AUROC of low `score` against the planted quality defects (of one kind, or all)."""
    keep = [sid for sid in score.index if np.isfinite(score[sid]) and (
        kind is None or labels.get(sid, {}).get("kind", kind) == kind
        or labels.get(sid, {}).get("axis") != "quality")]
    y = np.array([labels.get(sid, {}).get("axis") == "quality" for sid in keep])
    return float(roc_auc_score(y, -score[keep].to_numpy(dtype=float)))


def row(name: str, labels: dict, score: pd.Series) -> str:
    cells = [auroc(labels, score)] + [auroc(labels, score, k) for k in KINDS]
    return f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |"


def product_default(ws) -> tuple[pd.Series, dict]:
    """The quality column the diagnosis writes with the workspace's settings."""
    from middo_core.diagnose import diagnose
    from middo_core.store.iterations import get_iteration
    from middo_core.store.signals import load_signals

    with ws.store.read() as con:
        post = (get_iteration(con, 0) or {})["model"]
    ws.config.canaries.enabled = False  # in memory: the canaries are not part of this measure
    rep = diagnose(ws, 0, post_model=post, signals=("quality",))
    with ws.store.read() as con:
        frame = load_signals(con, 0).set_index("sample_id")
    return frame["quality"].astype(float), rep.quality


def main() -> None:
    from middo_core.data.demo import load_planted_labels

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="benchmarks/out/quality/demo")
    ap.add_argument("--judge", action="store_true", help="also the paper's self-judge (slow)")
    args = ap.parse_args()
    started = time.time()
    ws = demo_workspace(Path(args.root))
    labels = load_planted_labels(ws)
    frame = passes(ws)
    planted = {k: sum(1 for sid in frame.index if labels.get(sid, {}).get("kind") == k)
               for k in KINDS}
    lines = [f"| candidate (higher = better) | all ({sum(planted.values())}) | "
             + " | ".join(f"{k} ({n})" for k, n in planted.items()) + " |",
             "|---|---:|---:|---:|---:|"]
    lines += [row(name, labels, score) for name, score in candidates(frame).items()]
    if args.judge:
        ws.config.signals.quality_mode = "logprobs"  # in memory only: middo.yaml is not changed
        judge, _ = product_default(ws)
        lines.append(row("the paper's self-judge (logprobs)", labels, judge))
    # the product's default, whatever this workspace's middo.yaml says (in memory only)
    ws.config.signals.quality_mode = type(ws.config.signals)().quality_mode
    default, described = product_default(ws)
    lines.append(row(f"product default ({described.get('mode')})", labels, default))
    print("\n".join(lines))
    print(f"\nresolved: {described.get('mode')}: {described.get('reason', '')}")
    scores = {**candidates(frame), "product default": default}
    for name in ("pmi mode: 10 (1 - IFD) P(end)",
                 "plain product: 10 (1 - IFD) P(end) exp(-loss base)", "product default"):
        q = scores[name]
        for m in (-1.5, -1.0):  # flagged at tau = mu + m sigma, as the selection computes it
            flagged = q[q < q.mean() + m * q.std(ddof=0)].index
            hits = sum(labels.get(sid, {}).get("axis") == "quality" for sid in flagged)
            print(f"{name}, m = {m}: {len(flagged)} flagged, {hits} of them planted quality defects")
    print(f"{len(frame)} samples; {time.time() - started:.0f} s; {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
