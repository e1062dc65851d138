"""A real-data check of the quality signal: Alpaca records with corruptions of our own.

    python -m benchmarks.quality_realset build [--root benchmarks/out/quality/alpaca]
    python -m benchmarks.quality_realset evaluate [--root ...]
    python -m benchmarks.quality_realset build --heldout [--root benchmarks/out/quality/heldout]
    python -m benchmarks.quality_realset evaluate --heldout --modes pmi-ppl pmi-rep [--root ...]

`build` draws RECORDS records from ../shared/data/alpaca_en_demo.json (seeded), corrupts a fixed
share of them (CORRUPT_SHARE, seeded) with the recipe below, imports all of them into a new
workspace with the product's importer and trains M(0) on them with the product's training
(`cpu-small` preset). The labels go to artifacts/corruption_labels.json, never to the store.
`evaluate` diagnoses D(0) with the product's default quality mode and prints the AUROC of `quality`
(low = corrupted) against the labels, overall and per kind. The set was never used to choose or
tune the quality method (benchmarks/quality_auroc.py chooses it on the demo); it is evaluated
once, with the default that choice produced.

The recipe (the kinds in turn, each given to the next drawn record whose response admits it; a curator would call each of these low quality):
- swapped: the response of the other record whose instruction shares the most words with this
  one (a plausible but wrong answer: the demo's `irrelevant` takes a response of another family)
- cut: the response cut inside a sentence, after 30-70% of its words (no final punctuation kept)
- shuffled: the response's sentences in a random order (3 sentences or more)
- looped: a generation loop: the first sentence or list item, then one later sentence repeated
  4-6 times, and no ending
- numbers: every number in the response replaced by a different one (a factual error)
- evasive: the response replaced by a non-answer that restates the request and gives nothing
  ("I can help with <the instruction>. Let me know if you need anything else."), in one of three
  wordings
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_en_demo.json"
RECORDS = 240
CORRUPT_SHARE = 0.125
SEED = 18
LABELS_FILE = "corruption_labels.json"
KINDS = ("swapped", "cut", "shuffled", "looped", "numbers", "evasive")
EVASIVE = (
    "I can help with that: {request}. Let me know if you need anything else.",
    "Sure! You asked me to {request}. That is a good question, and there is a lot to say about it.",
    "Thank you for your request to {request}. I will keep it in mind.",
)
_SENTENCE = re.compile(r"(?<=[a-z)\"'][.!?])\s+(?=[A-Z])")  # not after "1." of a list
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def sentences(text: str) -> list[str]:
    """Sentences and list items (lines), each of three words or more."""
    parts = [s.strip() for line in text.splitlines() for s in _SENTENCE.split(line)]
    return [s for s in parts if len(s.split()) >= 3]


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower())) - {"a", "an", "the", "of", "to", "in", "and",
                                                      "for", "is", "on", "with", "what", "how"}


def admits(kind: str, rec: dict) -> bool:
    out = rec["output"]
    if kind == "cut":
        return len(out.split()) >= 12
    if kind == "shuffled":
        return len(sentences(out)) >= 3
    if kind == "looped":
        return len(sentences(out)) >= 2
    if kind == "numbers":
        return bool(_NUMBER.search(out))
    if kind == "spliced":
        return len(sentences(out)) >= 2
    return True


def corrupt(kind: str, rec: dict, others: list[dict], rng: random.Random) -> str:
    out = rec["output"]
    if kind == "swapped":
        mine = words(rec["instruction"] + " " + rec["input"])
        best = max((o for o in others if o["output"] != out),
                   key=lambda o: (len(mine & words(o["instruction"] + " " + o["input"])),
                                  rng.random()))
        return best["output"]
    if kind == "cut":
        ends = [m.end() for m in re.finditer(r"\S+", out)]  # the text kept as it is, up to a word
        at = max(3, int(len(ends) * rng.uniform(0.3, 0.7)))
        while at < len(ends) - 1 and out[ends[at - 1] - 1] in ".!?:":
            at += 1  # stop inside a sentence, not at its end
        return out[: ends[at - 1]].rstrip(".,;:!?")
    if kind == "shuffled":
        parts = sentences(out)
        order = list(range(len(parts)))
        while order == sorted(order):
            rng.shuffle(order)
        return ("\n" if "\n" in out.strip() else " ").join(parts[i] for i in order)
    if kind == "looped":
        parts = sentences(out)
        again = rng.choice(parts[1:])
        return " ".join([parts[0]] + [again] * rng.randint(4, 6))
    if kind == "numbers":
        def other(m: re.Match) -> str:
            value = m.group(0)
            if "." in value:
                return f"{float(value) * rng.choice([0.5, 2, 3]) + 1:.{len(value.split('.')[1])}f}"
            n = int(value)
            return str(n + rng.choice([-3, -2, -1, 1, 2, 3, 7, 10]) if n > 3 else n + rng.randint(2, 9))
        return _NUMBER.sub(other, out)
    if kind == "boilerplate":
        return rng.choice(BOILERPLATE)
    if kind == "spliced":
        mine = sentences(out)
        donors = [o for o in others if len(sentences(o["output"])) >= 2 and o["output"] != out]
        theirs = sentences(rng.choice(donors)["output"])
        keep = max(1, len(mine) // 2)
        return " ".join(mine[:keep] + theirs[len(theirs) // 2:])
    request = (rec["instruction"].rstrip(".?!") + (f" ({rec['input']})" if rec["input"] else ""))
    request = request[0].lower() + request[1:]
    return rng.choice(EVASIVE).format(request=request)


def build_records(seed: int = SEED) -> tuple[list[dict], dict[int, str]]:
    """The records (clean and corrupted, in order) and {position: kind} of the corrupted ones."""
    rng = random.Random(seed)
    pool = json.loads(DATA.read_text(encoding="utf-8"))
    records = [dict(r) for r in rng.sample(pool, RECORDS)]
    chosen = rng.sample(range(RECORDS), round(RECORDS * CORRUPT_SHARE))
    return _corrupt_all(records, chosen, KINDS, rng)


def _corrupt_all(records: list[dict], chosen: list[int], kinds_in_turn: tuple[str, ...],
                 rng: random.Random) -> tuple[list[dict], dict[int, str]]:
    kinds: dict[int, str] = {}
    for n in range(len(chosen)):  # the kinds in turn, each on the next record that admits it
        kind = kinds_in_turn[n % len(kinds_in_turn)]
        i = next((j for j in chosen if j not in kinds and admits(kind, records[j])), None)
        if i is None:
            i, kind = next(j for j in chosen if j not in kinds), "evasive"
        others = [r for j, r in enumerate(records) if j != i]
        records[i] = {**records[i], "output": corrupt(kind, records[i], others, rng)}
        kinds[i] = kind
    return records, kinds


# --- the held-out set ------------------------------------------------------------------------
# Built after the seed-18 set above had been seen (it is a development set now), before any
# method was scored on it, and scored once, with the method frozen in a commit beforehand
# (docs/EVIDENCE.md, "Quality: repetition and restating"). A fresh draw: none of the records the
# seed-18 set used, another seed, the six kinds above plus two that no method here was designed
# on or has seen:
# - boilerplate: the response replaced by an off-topic canned disclaimer that neither restates
#   nor answers the request (one of three wordings);
# - spliced: the response's first sentences (about half) followed by the last sentences of the
#   response of another drawn record, chosen at random: an answer that drifts into another one.
HELDOUT_SEED = 2612
HELDOUT_KINDS = (*KINDS, "boilerplate", "spliced")
HELDOUT_CORRUPT = 40  # 5 per kind
BOILERPLATE = (
    "As an AI language model, I do not have personal opinions or access to real-time "
    "information. Please consult a qualified professional for advice about your situation.",
    "I'm sorry, but I am not able to provide that kind of content. Please note that this "
    "information is for general purposes only and should not be taken as professional advice.",
    "Disclaimer: the content provided here is for informational purposes only. Results may vary, "
    "and no guarantee is made about accuracy or completeness. Always do your own research.",
)


def heldout_records(seed: int = HELDOUT_SEED) -> tuple[list[dict], dict[int, str]]:
    """RECORDS records that the seed-18 set did not use (compared as whole records), corrupted
    HELDOUT_CORRUPT times with HELDOUT_KINDS in turn."""
    pool = json.loads(DATA.read_text(encoding="utf-8"))
    used = {json.dumps(r, sort_keys=True) for r in random.Random(SEED).sample(pool, RECORDS)}
    rest = [r for r in pool if json.dumps(r, sort_keys=True) not in used]
    rng = random.Random(seed)
    records = [dict(r) for r in rng.sample(rest, RECORDS)]
    chosen = rng.sample(range(RECORDS), HELDOUT_CORRUPT)
    return _corrupt_all(records, chosen, HELDOUT_KINDS, rng)


def build(root: Path, heldout: bool = False) -> None:
    from middo_core.config import WorkspaceConfig
    from middo_core.data.importer import import_file
    from middo_core.loop import train_step
    from middo_core.sample import Sample
    from middo_core.workspace import init_workspace, open_workspace

    if (root / "middo.duckdb").exists():  # built before: training resumes from its checkpoint
        t0 = time.time()
        train_step(open_workspace(root), 0)
        print(f"trained M(0) in {(time.time() - t0) / 60:.1f} min", flush=True)
        return
    records, kinds = heldout_records() if heldout else build_records()
    root.mkdir(parents=True, exist_ok=True)
    source = root.parent / f"{root.name}-records.json"
    source.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    ws = init_workspace(root, WorkspaceConfig(name=root.name))
    rep = import_file(ws, source, format="alpaca")
    labels = {}
    for i, kind in kinds.items():
        r = records[i]
        labels[Sample(instruction=r["instruction"], input=r["input"], output=r["output"]).id] = kind
    (ws.artifacts / LABELS_FILE).write_text(json.dumps(labels, indent=1), encoding="utf-8")
    print(f"imported {rep.n_imported} samples ({rep.n_duplicates} duplicates once); corrupted "
          f"{len(labels)}:",
          {k: list(kinds.values()).count(k) for k in HELDOUT_KINDS}, flush=True)
    t0 = time.time()
    train_step(ws, 0)
    print(f"trained M(0) in {(time.time() - t0) / 60:.1f} min", flush=True)


def evaluate(root: Path, modes: list[str] | None = None) -> None:
    """AUROC of `quality` (low = corrupted) per mode (default: the product's default mode), overall
    and per kind, and the samples flagged at tau = mu + m*sigma for the default m and m = -1."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from middo_core.config import SelectionConfig
    from middo_core.diagnose import diagnose
    from middo_core.store.iterations import get_iteration
    from middo_core.store.signals import load_signals
    from middo_core.workspace import open_workspace

    ws = open_workspace(root)
    ws.config.canaries.enabled = False  # in memory: the canaries are not part of this measure
    labels = json.loads((ws.artifacts / LABELS_FILE).read_text(encoding="utf-8"))
    kinds = [k for k in HELDOUT_KINDS if k in set(labels.values())]
    with ws.store.read() as con:
        model = (get_iteration(con, 0) or {}).get("model")
    # the product's default unless modes are named, whatever the workspace's middo.yaml says
    for mode in modes or [type(ws.config.signals)().quality_mode]:
        ws.config.signals.quality_mode = mode
        t0 = time.time()
        rep = diagnose(ws, 0, post_model=model, signals=("complexity", "quality"))
        with ws.store.read() as con:
            frame = load_signals(con, 0).set_index("sample_id")
        q = frame["quality"].to_numpy(dtype=float)
        y = np.array([sid in labels for sid in frame.index])
        print(f"quality mode {rep.quality.get('mode')} ({rep.quality.get('reason', '')}); "
              f"diagnosis {time.time() - t0:.0f} s; {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        print(f"all kinds: AUROC {roc_auc_score(y, -q):.3f} ({int(y.sum())} corrupted of {len(y)})")
        for kind in kinds:
            keep = np.array([labels.get(sid, kind) == kind for sid in frame.index])
            print(f"{kind}: AUROC {roc_auc_score(y[keep], -q[keep]):.3f} "
                  f"({int(y[keep].sum())} corrupted)")
        for m in (SelectionConfig().m_quality, -1.0):
            flagged = q < q.mean() + m * q.std(ddof=0)
            print(f"m = {m}: {int(flagged.sum())} flagged, {int((flagged & y).sum())} of them "
                  "corrupted", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["build", "evaluate"])
    ap.add_argument("--root", default=None, help="default: benchmarks/out/quality/alpaca, or "
                    "benchmarks/out/quality/heldout with --heldout")
    ap.add_argument("--heldout", action="store_true", help="the held-out set (HELDOUT_SEED)")
    ap.add_argument("--modes", nargs="*", help="quality modes to score (default: the default)")
    args = ap.parse_args()
    root = Path(args.root or ("benchmarks/out/quality/heldout" if args.heldout
                              else "benchmarks/out/quality/alpaca"))
    if args.step == "build":
        build(root, heldout=args.heldout)
    else:
        evaluate(root, args.modes)


if __name__ == "__main__":
    main()
