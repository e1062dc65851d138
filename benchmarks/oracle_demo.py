"""ORACLE experiment on the demo: does fixing what the signals find help the model?

An oracle, never a product default: the demo's generator knows the clean original of each planted
defect (artifacts/planted_originals.json), which no real dataset has. Per training seed s:

    D(0)        the demo's training split unchanged; M(0) trained on it (train.seed = s)
    signals     D(0) diagnosed under M(0) and flagged by the product's selection (default m's,
                loop.selection "stored"); every flagged sample replaced by its clean original (a
                flagged sample that is not a planted defect is its own original: it stays)
    random      as many samples as `signals` flagged (the union over axes), drawn at random from
                D(0) (numpy seed s), replaced the same way
    all-fixed   every planted defect replaced by its clean original (the upper bound)

Each dataset is a real dataset version D(1) of its own workspace (D(0), M(0) and its scores
copied from the seed's main workspace, as the product's variants do), trained from the base model
with the product's training (cpu-small preset, the same settings and seed as M(0)) and scored
with the product's held-out evaluation (the demo's held-out split). What varies with the seed: the
training seed of every model, hence M(0)'s signals and the selection, and the random draw; the
data (demo seed 0) and the held-out split do not. Quality is diagnosed in `pmi` mode, set in each
workspace's config. The oracle replaces with the truth, so it measures how well the signals select,
apart from how well a refiner writes.

    python -m benchmarks.oracle_demo [--seeds 0 1 2] [--size 400] [--root benchmarks/out/oracle]

Resumable: every finished step is read from the store and skipped; an interrupted training resumes
from its last checkpoint. Results: <root>/results.json and <root>/oracle.md.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from middo_core.data import create_demo_workspace
from middo_core.data.demo import load_planted_labels, load_planted_originals
from middo_core.files import write_text_atomic
from middo_core.loop import diagnose_step, evaluate_step, select_step, step_states, train_step
from middo_core.sample import Sample
from middo_core.store.iterations import get_iteration, get_metrics, upsert_iteration
from middo_core.store.samples import (
    dataset,
    dataset_ids,
    insert_samples,
    samples_frame,
    set_members,
)
from middo_core.variants import _copy_seed  # D(0), M(0) and its scores into a child workspace
from middo_core.workspace import Workspace, init_workspace, open_workspace

CONDITIONS = ("signals", "random", "all-fixed")  # trained in this order after D(0)
RESULT_FILE = "oracle_result.json"  # per seed, in its main workspace, rewritten as conditions finish
ORACLE = "ORACLE (clean originals known only to the demo's generator; never a product default)"


def log(msg: str) -> None:
    load = os.getloadavg()
    print(f"[{time.strftime('%H:%M:%S')} load {load[0]:.1f}] {msg}", flush=True)


def main_workspace(root: Path, seed: int, size: int, model: str) -> Workspace:
    """The seed's demo workspace: D(0), then M(0), its scores, its diagnosis and its selection."""
    if (root / "middo.duckdb").exists():
        ws = open_workspace(root)
    else:
        ws = create_demo_workspace(root, size=size)
        ws.config.base_model = model
        ws.config.train.seed = seed
        ws.config.signals.quality_mode = "pmi"  # independent of the default quality mode
        ws.config.eval.suite = ["heldout"]  # the measure here; demo_exact would double each step
        ws.config.canaries.enabled = False  # never part of a threshold or a flag: only cost here
        ws.config.loop.autostart = False
        ws.save_config()
    for step, done, fn in (("train M(0)", "trained", train_step), ("evaluate M(0)", "evaluated", evaluate_step),
                           ("diagnose D(0)", "diagnosed", diagnose_step)):
        if not step_states(ws, 0)[done]:
            t0 = time.time()
            log(f"seed {seed}: {step}")
            fn(ws, 0)
            log(f"seed {seed}: {step} done in {(time.time() - t0) / 60:.1f} min")
    if not step_states(ws, 0)["selected"]:
        select_step(ws, 0)  # loop.selection "stored" with nothing stored: the config's default m's
    return ws


def replacement_plan(ws: Workspace, seed: int) -> dict[str, list[str]]:
    """condition -> the D(0) sample ids to replace by their clean originals."""
    with ws.store.read() as con:
        counts = get_iteration(con, 0)["counts"]
        train_ids = dataset_ids(con, 0)
    flagged = sorted({sid for ids in counts["flagged_ids"].values() for sid in ids})
    rng = np.random.default_rng(seed)
    drawn = sorted(rng.choice(np.array(sorted(train_ids), dtype=object), size=len(flagged),
                              replace=False).tolist())
    return {"signals": flagged, "random": drawn, "all-fixed": sorted(load_planted_labels(ws))}


def oracle_workspace(ws: Workspace, name: str, replace_ids: list[str]) -> Workspace:
    """A child workspace whose D(1) is D(0) with `replace_ids` swapped for their clean originals."""
    root = ws.root / "oracle" / name
    if (root / "middo.duckdb").exists():
        child = open_workspace(root)
    else:
        config = ws.config.model_copy(deep=True)
        config.name = f"{ws.config.name} / oracle {name}"
        child = init_workspace(root, config)
        _copy_seed(ws, child)
    with child.store.read() as con:
        built = bool(dataset_ids(con, 1))
    if built:
        return child
    originals = load_planted_originals(ws)
    with child.store.write() as con:
        members = set(dataset_ids(con, 0))
        news, parents, axes = [], [], []
        labels = load_planted_labels(ws)
        for sid in replace_ids:
            clean = Sample(**originals[sid]) if sid in originals else None
            if clean is None or clean.id == sid:
                continue  # not a planted defect (or an isolated topic): its own clean original
            members.discard(sid)
            members.add(clean.id)
            news.append(clean)
            parents.append(sid)
            axes.append(labels[sid]["axis"])
        if news:
            insert_samples(con, samples_frame(news, origin="oracle", iteration=1, parent_ids=parents, axes=axes))
        set_members(con, 1, sorted(members))
        upsert_iteration(con, 1, status="built", base_model=child.config.base_model,
                         counts={"size": len(members),
                                 "oracle": {"condition": name, "chosen": len(replace_ids), "fixed": len(news)}})
    return child


def heldout(ws: Workspace, iteration: int) -> dict[str, float]:
    with ws.store.read() as con:
        m = get_metrics(con)
    rows = m[(m["iteration"] == iteration) & (m["benchmark"] == "heldout")]
    return {r.metric: float(r.value) for r in rows.itertuples()}


@contextmanager
def claimed(path: Path):
    """True inside when this process holds the lock at `path` (another worker has it: False)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def seed_root(root: Path, seed: int) -> Path:
    return root / f"seed{seed}"


def main_done(root: Path, seed: int) -> bool:
    path = seed_root(root, seed)
    return (path / "middo.duckdb").exists() and step_states(open_workspace(path), 0)["selected"]


def child_root(root: Path, seed: int, name: str) -> Path:
    return seed_root(root, seed) / "oracle" / name


def child_done(root: Path, seed: int, name: str) -> bool:
    path = child_root(root, seed, name)
    return (path / "middo.duckdb").exists() and step_states(open_workspace(path), 1)["evaluated"]


def run_condition(root: Path, seed: int, name: str) -> None:
    ws = open_workspace(seed_root(root, seed))
    child = oracle_workspace(ws, name, replacement_plan(ws, seed)[name])
    if not step_states(child, 1)["trained"]:
        t0 = time.time()
        with child.store.read() as con:
            fixed = get_iteration(con, 1)["counts"]["oracle"]["fixed"]
        log(f"seed {seed}: train on {name} ({fixed} defects fixed)")
        train_step(child, 1)
        (child.root / "oracle_train_min.json").write_text(json.dumps((time.time() - t0) / 60))
    if not step_states(child, 1)["evaluated"]:
        evaluate_step(child, 1)
    log(f"seed {seed}: {name} held-out loss {heldout(child, 1)['loss']:.4f}")


def tasks(seeds: list[int], conditions: tuple[str, ...]) -> list[tuple[int, str]]:
    """(seed, "main" or a condition) in the order the workers take them: every seed's M(0) and
    selection first, then signals and random seed by seed (the comparison that matters), then the
    upper bound."""
    pairs = [c for c in conditions if c != "all-fixed"]
    rest = [c for c in conditions if c == "all-fixed"]
    return ([(s, "main") for s in seeds] + [(s, c) for s in seeds for c in pairs]
            + [(s, c) for c in rest for s in seeds])


def work(root: Path, seeds: list[int], conditions: tuple[str, ...], size: int, model: str) -> None:
    """Take the first task that is not done, not held by another worker and whose M(0) and
    selection exist; run it; repeat until everything is done. Start as many workers as memory
    allows (one SmolLM2-135M training holds ~5 GB): each holds a lock while it works."""
    while True:
        pending = [(s, t) for s, t in tasks(seeds, conditions)
                   if not (main_done(root, s) if t == "main" else child_done(root, s, t))]
        if not pending:
            return
        ran = False
        for seed, task in pending:
            if task != "main" and not main_done(root, seed):
                continue
            lock = seed_root(root, seed).parent / f".lock-seed{seed}-{task}"
            with claimed(lock) as mine:
                if not mine:
                    continue
                if task == "main":
                    main_workspace(seed_root(root, seed), seed, size, model)
                else:
                    run_condition(root, seed, task)
                write_result(root, seed)
                ran = True
                break
        if not ran:
            time.sleep(30)  # what is left is held by other workers or waits for an M(0)


def collect_seed(root: Path, seed: int) -> dict | None:
    """What the seed's workspaces hold, read from their stores; None before M(0) is scored."""
    path = seed_root(root, seed)
    if not (path / "middo.duckdb").exists():
        return None
    ws = open_workspace(path)
    if not step_states(ws, 0)["evaluated"]:
        return None
    out = {"seed": seed, "heldout": {"D(0)": heldout(ws, 0)}, "replaced": {}, "train_min": {}}
    if not step_states(ws, 0)["selected"]:
        return out
    labels = load_planted_labels(ws)
    with ws.store.read() as con:
        counts = get_iteration(con, 0)["counts"]
    flagged = counts["flagged_ids"]
    out.update({"m": counts["selection"]["m"], "n_train": len(dataset_ids_of(ws, 0)),
                "flagged": {a: len(v) for a, v in flagged.items()},
                "flagged_planted": {a: sum(labels.get(s, {}).get("axis") == a for s in v)
                                    for a, v in flagged.items()},
                "planted": {a: sum(v["axis"] == a for v in labels.values()) for a in flagged}})
    for name in CONDITIONS:
        if not child_done(root, seed, name):
            continue
        child = open_workspace(child_root(root, seed, name))
        with child.store.read() as con:
            out["replaced"][name] = get_iteration(con, 1)["counts"]["oracle"]
        out["heldout"][name] = heldout(child, 1)
        minutes = child.root / "oracle_train_min.json"
        if minutes.exists():
            out["train_min"][name] = json.loads(minutes.read_text())
    return out


def write_result(root: Path, seed: int) -> None:
    result = collect_seed(root, seed)
    if result is not None:
        write_text_atomic(seed_root(root, seed) / RESULT_FILE, json.dumps(result, indent=2))


def dataset_ids_of(ws: Workspace, iteration: int) -> list[str]:
    with ws.store.read() as con:
        return dataset(con, iteration)["id"].tolist()


def report_md(results: list[dict], command: str) -> str:
    conds = ("D(0)",) + CONDITIONS
    seeds = [r["seed"] for r in results]
    lines = [f"{ORACLE}.", "",
             f"Reproduce: `{command}` ({os.cpu_count()} CPU cores, load average "
             f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end); seeds {seeds}.", "",
             "| dataset | seeds | replaced (of them planted defects fixed), per seed | "
             "held-out loss, mean ± std | per seed |",
             "|---|---|---|---:|---|"]
    for c in conds:
        done = [r for r in results if c in r["heldout"]]
        if not done:
            continue
        vals = [r["heldout"][c]["loss"] for r in done]
        std = f"{statistics.stdev(vals):.4f}" if len(vals) > 1 else "n/a"
        rep = "0" if c == "D(0)" else ", ".join(
            f"{r['replaced'][c]['chosen']} ({r['replaced'][c]['fixed']})" for r in done)
        lines.append(f"| {c} | {', '.join(str(r['seed']) for r in done)} | {rep} | "
                     f"{statistics.mean(vals):.4f} ± {std} | {', '.join(f'{v:.4f}' for v in vals)} |")
    lines += ["", "Selection per seed (flagged / planted defects of that axis among them / planted):", ""]
    for r in results:
        if "flagged" not in r:
            continue
        per = ", ".join(f"{a} {r['flagged'][a]}/{r['flagged_planted'][a]}/{r['planted'][a]}" for a in r["flagged"])
        lines.append(f"- seed {r['seed']} (m {r['m']}): {per}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="benchmarks/out/oracle")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--size", type=int, default=400)
    ap.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    ap.add_argument("--collect", action="store_true",
                    help="train nothing: report what the seeds' workspaces under --root hold")
    args = ap.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    threads = os.environ.get("OMP_NUM_THREADS")
    command = ((f"OMP_NUM_THREADS={threads} " if threads else "") + f"python -m benchmarks.oracle_demo --seeds {' '.join(map(str, args.seeds))} "
               f"--size {args.size} --model {args.model}")
    log(f"{ORACLE}: {command}")
    if not args.collect:
        work(root, args.seeds, tuple(args.conditions), args.size, args.model)
    for seed in args.seeds:
        write_result(root, seed)
    results = [r for r in (collect_seed(root, s) for s in args.seeds) if r is not None]
    (root / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    md = report_md(results, command)
    (root / "oracle.md").write_text(md, encoding="utf-8")
    print(md, flush=True)


if __name__ == "__main__":
    main()
