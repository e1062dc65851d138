"""The development scan behind the `pmi-novel` quality mode (docs/EVIDENCE.md, "Quality:
repetition and restating"): candidates built from the loss passes and the novel pass, AUROC on
the demo's planted quality defects and on the seed-18 Alpaca set, per kind, with the flag counts
at m = -1.5 and -1.0.

    python -m benchmarks.quality_novel_scan [--demo benchmarks/out/quality/demo]
                                            [--alpaca benchmarks/out/quality/alpaca]

Both workspaces must exist with M(0) trained (benchmarks.quality_auroc, benchmarks.quality_realset
build); passes missing from their caches are computed (the novel pass: two passes under M(0)).
Never run it on the held-out set: that set is scored once, by quality_realset evaluate --heldout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def frame(root: Path, demo: bool) -> pd.DataFrame:
    from benchmarks.quality_auroc import passes
    from middo_core.executors.local import LocalExecutor
    from middo_core.models.source import ModelSource
    from middo_core.signals.judge_novel import novel_pass
    from middo_core.signals.passes import LossSettings
    from middo_core.store.iterations import get_iteration
    from middo_core.store.samples import dataset, row_to_sample
    from middo_core.workspace import open_workspace

    ws = open_workspace(root)
    f = passes(ws)
    with ws.store.read() as con:
        samples = {r["id"]: row_to_sample(r) for r in dataset(con, 0).to_dict("records")}
        post = (get_iteration(con, 0) or {})["model"]
    source, executor = ModelSource(ws.config.signals.device), LocalExecutor()
    res = novel_pass(ws, LossSettings.from_config(ws.config.signals), post, samples, source,
                     lambda work, ids, todo, sink: executor.map(ws, work, ids, todo, source, sink))
    novel = pd.DataFrame([res.loss[i] for i in f.index], index=f.index)
    f[[f"nv_{c}" for c in novel.columns]] = novel.to_numpy()
    if demo:
        from middo_core.data.demo import load_planted_labels

        labels = load_planted_labels(ws)
        f["kind"] = [labels.get(i, {}).get("kind") if labels.get(i, {}).get("axis") == "quality"
                     else None for i in f.index]
    else:
        labels = json.loads((ws.artifacts / "corruption_labels.json").read_text(encoding="utf-8"))
        f["kind"] = [labels.get(i) for i in f.index]
    return f


def candidates(f: pd.DataFrame) -> dict[str, pd.Series]:
    ifd = f.loss_post / f.loss_uncond.clip(lower=1e-6)
    end, ppl = np.exp(f.end_logprob.fillna(0.0)), np.exp(-f.loss_pre)
    rel = (1 - ifd).clip(0, 1)
    c_own, u_own = f.nv_cond_own.astype(float), f.nv_uncond_own.astype(float)
    rel_own = (1 - c_own / u_own.clip(lower=1e-6)).clip(0, 1).where(f.nv_own > 0, 0.0).fillna(0)
    rep, said = f.nv_repeated.astype(float), f.nv_restated.astype(float)
    own = f.nv_own.astype(float) / f.nv_n.astype(float).clip(lower=1)
    out = {"pmi-ppl": 10 * np.cbrt(rel * end * ppl), "1 - repeated": 1 - rep,
           "1 - restated": 1 - said, "relevance over own tokens": rel_own,
           "pmi-ppl x (1 - repeated)": 10 * np.cbrt(rel * end * ppl) * (1 - rep),
           "cbrt(rel_own P(end) exp(-L_pre))": 10 * np.cbrt(rel_own * end * ppl)}
    for k in (1, 2, 3, 4):
        out[f"(rel_own P(end) exp(-L_pre) (1-repeated)^{k})^1/4"] = \
            10 * (rel_own * end * ppl * (1 - rep) ** k) ** 0.25
        out[f"(rel P(end) exp(-L_pre) (1-repeated)^{k})^1/4"] = \
            10 * (rel * end * ppl * (1 - rep) ** k) ** 0.25
        out[f"(rel_own P(end) exp(-L_pre) own^{k})^1/4"] = 10 * (rel_own * end * ppl * own ** k) ** 0.25
    return out


def report(name: str, f: pd.DataFrame) -> None:
    kinds = sorted({k for k in f.kind if isinstance(k, str)})
    y = f.kind.notna()
    print(f"\n{name}: {int(y.sum())} defects of {len(f)}; columns: all, " + ", ".join(kinds))
    for cand, s in candidates(f).items():
        s = s.fillna(0)
        cells = [roc_auc_score(y, -s)]
        for kind in kinds:
            keep = f.kind.isna() | (f.kind == kind)
            cells.append(roc_auc_score(f.kind[keep] == kind, -s[keep]))
        flags = []
        for m in (-1.5, -1.0):
            hit = s < s.mean() + m * s.std(ddof=0)
            flags.append(f"{int(hit.sum())}/{int((hit & y).sum())}")
        print(f"| {cand} | " + " | ".join(f"{c:.3f}" for c in cells) + " | " + " | ".join(flags)
              + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", default="benchmarks/out/quality/demo")
    ap.add_argument("--alpaca", default="benchmarks/out/quality/alpaca")
    args = ap.parse_args()
    report("demo", frame(Path(args.demo), demo=True))
    report("seed-18 set", frame(Path(args.alpaca), demo=False))


if __name__ == "__main__":
    main()
