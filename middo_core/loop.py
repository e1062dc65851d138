"""The Middo loop, top to bottom. Start reading the project here.

Dataset version i moves through these steps (its iteration record's status):

    built      D(i) exists (D(0) is the imported seed data)
    trained    M(i) = the base model fine-tuned on D(i) for one epoch, always from the base
    evaluated  M(i) scored on the benchmarks
    diagnosed  every sample of D(i) gets its signals: loss under the base model and under M(i),
               diversity from M(i)'s embeddings, quality from M(i)'s self-judgement
    selected   tau = mu + m*sigma per signal flags hard, sparse and low-quality samples
    refined    an LLM writes a proposal per flagged (sample, axis)
    reviewed   a curator (or a policy, headless) accepts, edits or rejects each proposal
    -> build   D(i+1) = D(i) - accepted hard/low + their rewrites + new samples near sparse ones

The paper's "iteration k" is the step from D(k-1) to D(k): its Table 6 row k holds the counts
selected on D(k-1) and the size of D(k); its Table 1 column k holds the scores of M(k).

Every step is idempotent and checks the store before it runs, so `run_loop` after a crash (or
after a manual review) picks up where it stopped without repeating a paid LLM call or a
finished training.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace

from middo_core.access import Actor
from middo_core.build import BuildReport, build_next
from middo_core.files import write_text_atomic
from middo_core.progress import ProgressFn, report
from middo_core.review import apply_policy, review_counts
from middo_core.selection import Selection, choose, save_selection
from middo_core.store.iterations import STATUSES, get_iteration, get_metrics, upsert_iteration
from middo_core.store.samples import has_members
from middo_core.workspace import Workspace

STEPS = STATUSES[1:]  # the lifecycle as the store records it, after "created"
ACTIONS = {"built": "build", "trained": "train", "evaluated": "evaluate", "diagnosed": "diagnose",
           "selected": "select", "refined": "refine", "reviewed": "review"}


class LoopError(RuntimeError):
    pass


# --- where an iteration stands ------------------------------------------------------------------

def step_states(ws: Workspace, iteration: int) -> dict[str, bool]:
    """Which steps of dataset version `iteration` are done, read from the store (not trusted flags)."""
    with ws.store.read() as con:
        rec = get_iteration(con, iteration) or {"counts": {}, "model": None, "m_complexity": None}
        built = has_members(con, iteration)
        metrics = get_metrics(con)
    counts = rec["counts"]
    trained = bool(rec.get("model"))
    diagnosed = trained and counts.get("diagnosed_with") == rec.get("model")
    done = {
        "built": built,
        "trained": trained,
        "evaluated": trained and bool((metrics["iteration"] == iteration).any()),
        "diagnosed": diagnosed,
        "selected": diagnosed and "selection" in counts,
        "refined": diagnosed and "refine" in counts,
        "reviewed": diagnosed and counts.get("reviewed", False),
    }
    return done


def next_action(ws: Workspace, iteration: int) -> str:
    """The first step not yet done for this version ('build' means: build the next version)."""
    states = step_states(ws, iteration)
    for step in STEPS:
        if not states[step]:
            return ACTIONS[step]
    return "build"


# --- the steps -----------------------------------------------------------------------------------

def train_step(ws: Workspace, iteration: int, progress: ProgressFn | None = None) -> None:
    from middo_core.train import train

    train(ws, iteration, progress=progress)


def evaluate_step(ws: Workspace, iteration: int, progress: ProgressFn | None = None) -> None:
    from middo_core.train import evaluate

    evaluate(ws, iteration, progress=progress)


def diagnose_step(ws: Workspace, iteration: int, progress: ProgressFn | None = None) -> None:
    from middo_core.diagnose import diagnose

    with ws.store.read() as con:
        model = (get_iteration(con, iteration) or {}).get("model")
    if not model:
        raise LoopError(f"M({iteration}) is not trained: train before diagnosing D({iteration})")
    signals = tuple(ws.config.loop.axes)
    diagnose(ws, iteration, post_model=model, signals=signals, progress=progress)
    with ws.store.write() as con:
        upsert_iteration(con, iteration, counts={"diagnosed_with": model})


def select_step(ws: Workspace, iteration: int, m: tuple[float, float, float] | None = None,
                actor: Actor = "cli") -> Selection:
    """Flag samples with the given m's, the stored ones, the config's, or auto m; store the result."""
    selection = choose(ws, iteration, m)
    save_selection(ws, iteration, selection, actor)
    return selection


def refine_step(ws: Workspace, iteration: int, progress: ProgressFn | None = None) -> None:
    from middo_core.refine import refine

    with ws.store.read() as con:
        rec = get_iteration(con, iteration) or {"counts": {}}
    flagged = rec["counts"].get("flagged_ids")
    if flagged is None:
        raise LoopError(f"no selection for D({iteration}): select before refining")
    refine(ws, iteration, flagged, progress=progress)  # marks the step done once complete


def review_step(ws: Workspace, iteration: int) -> bool:
    """Apply the headless policy if the loop is automatic. True when nothing is left pending."""
    loop = ws.config.loop
    if loop.review == "auto":
        apply_policy(ws, iteration, loop.review_policy)
    pending = sum(c.get("pending", 0) for c in review_counts(ws, iteration).values())
    if pending:
        return False
    with ws.store.write() as con:
        upsert_iteration(con, iteration, status="reviewed", counts={"reviewed": True})
    return True


def build_step(ws: Workspace, iteration: int, actor: Actor = "cli") -> BuildReport:
    return build_next(ws, iteration, actor)


# --- the whole loop ------------------------------------------------------------------------------

@dataclass
class LoopReport:
    iterations_done: int = 0
    stopped_at: str | None = None  # "review": a curator has proposals to decide; "refine": unfinished
    stopped_iteration: int | None = None
    steps_run: list[str] = field(default_factory=list)


def run_loop(ws: Workspace, iterations: int | None = None, progress: ProgressFn | None = None,
             actor: Actor = "cli") -> LoopReport:
    """Run (or resume) the loop until M(iterations) is trained and evaluated; the selections and
    builds it stores are recorded under `actor`."""
    total = ws.config.loop.iterations if iterations is None else iterations
    out = LoopReport()
    if not step_states(ws, 0)["built"]:
        raise LoopError("D(0) is empty: import seed data first (middo import DIR FILE)")
    for i in range(total + 1):
        states = step_states(ws, i)
        report(progress, "loop", i, total + 1, f"dataset version {i}")
        if not states["trained"]:
            train_step(ws, i, progress)
            out.steps_run.append(f"train {i}")
        if not step_states(ws, i)["evaluated"]:
            evaluate_step(ws, i, progress)
            out.steps_run.append(f"evaluate {i}")
        if i == total:
            break
        with ws.store.read() as con:
            next_built = has_members(con, i + 1)
        if next_built:
            continue  # D(i+1) exists: everything before it is done
        if not step_states(ws, i)["diagnosed"]:
            diagnose_step(ws, i, progress)
            out.steps_run.append(f"diagnose {i}")
        if not step_states(ws, i)["selected"]:
            select_step(ws, i, actor=actor)
            out.steps_run.append(f"select {i}")
        if not step_states(ws, i)["refined"]:
            refine_step(ws, i, progress)
            out.steps_run.append(f"refine {i}")
            if not step_states(ws, i)["refined"]:  # e.g. the budget cap stopped it
                out.stopped_at, out.stopped_iteration = "refine", i
                return out
        if not step_states(ws, i)["reviewed"] and not review_step(ws, i):
            out.stopped_at, out.stopped_iteration = "review", i
            return out
        build_step(ws, i, actor)
        out.steps_run.append(f"build {i + 1}")
        out.iterations_done = i + 1
    out.iterations_done = total
    return out


# --- what the last loop was asked to do, so that `middo loop --resume` goes on with it ----------

LOOP_RECORD = "loop.json"  # under artifacts/


def record_loop(ws: Workspace, settings: dict, started_at: float | None = None) -> dict:
    """Remember the settings a loop starts with (iterations, review); a resume reuses them."""
    record = {"started_at": started_at or time.time(), "settings": settings, "finished": False}
    write_text_atomic(ws.artifacts / LOOP_RECORD, json.dumps(record))
    return record


def last_loop(ws: Workspace) -> dict | None:
    """The record of the last loop started here, or None."""
    try:
        record = json.loads((ws.artifacts / LOOP_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("settings"), dict) else None


def finish_loop(ws: Workspace, record: dict) -> None:
    """Mark the loop done: every iteration it was asked for is trained and evaluated."""
    write_text_atomic(ws.artifacts / LOOP_RECORD, json.dumps({**record, "finished": True}))


# --- iteration 0 on a fresh workspace (what the Studio starts by itself on the demo) -------------

FIRST_STEPS = ("train", "diagnose", "evaluate")  # the diagnosis before the scores: it is what a
# newcomer looks at first, and its map comes with it


def first_iteration(ws: Workspace, progress: ProgressFn | None = None) -> list[str]:
    """Train M(0), diagnose D(0) (the map with it), evaluate M(0): each step skipped when done.

    Progress events carry their step: "step 2 of 3, diagnose D(0) · <the step's own stage>"."""
    steps = {"train": (train_step, "trained"), "diagnose": (diagnose_step, "diagnosed"),
             "evaluate": (evaluate_step, "evaluated")}
    run = []
    for k, name in enumerate(FIRST_STEPS, start=1):
        fn, done = steps[name]
        if step_states(ws, 0)[done]:
            continue
        label = f"step {k} of {len(FIRST_STEPS)}, {name} {'M' if name != 'diagnose' else 'D'}(0)"

        def within(event, label=label):
            if progress is not None:
                progress(replace(event, stage=f"{label} · {event.stage}"))

        report(within, "starting", 0, 1)
        fn(ws, 0, within)
        run.append(name)
    return run


def autostart_due(ws: Workspace) -> bool:
    """True for a workspace that asks for it (loop.autostart) and has nothing done or running:
    D(0) imported, M(0) not trained, no background run ever started."""
    from middo_core.store.runs import list_runs

    if not ws.config.loop.autostart:
        return False
    states = step_states(ws, 0)
    with ws.store.read() as con:
        ran = not list_runs(con).empty
    return states["built"] and not states["trained"] and not ran


def autostart(ws: Workspace, actor: Actor = "cli") -> str | None:
    """Start iteration 0 in the background when `autostart_due`; its run id, or None.

    A lock file makes two Studio sessions opening the workspace at once start one run."""
    import fcntl

    from middo_core.jobs import start_job
    from middo_core.jobs.lock import RunLocked

    lock = ws.artifacts / ".autostart.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if not autostart_due(ws):
            return None
        try:
            return start_job(ws, "first_iteration", 0, {}, actor=actor)
        except RunLocked:
            return None  # a `middo loop` (or another run) is already at work on it


# --- background job functions (kinds "loop", "diagnose", "first_iteration"; see jobs/kinds.py) ----

def loop_job(ws: Workspace, run_id: str, iteration: int | None, args: dict, progress: ProgressFn) -> dict:
    """The loop as a background run (the Studio's button): recorded as `middo loop` records it, so
    that `middo loop --resume` goes on with the same settings after a stop."""
    settings = {"iterations": args.get("iterations") or ws.config.loop.iterations,
                "review": ws.config.loop.review}
    record = record_loop(ws, settings)
    # who started the run (start_job checked their role): the selections and builds are theirs
    out = run_loop(ws, settings["iterations"], progress=progress, actor=args.get("_actor", "cli"))
    if out.stopped_at is None:
        finish_loop(ws, record)
    return out.__dict__


def diagnose_job(ws: Workspace, run_id: str, iteration: int | None, args: dict,
                 progress: ProgressFn) -> dict:
    from middo_core.diagnose import diagnose

    signals = tuple(args.get("signals") or ws.config.loop.axes)
    out = diagnose(ws, iteration or 0, post_model=args.get("post_model"), signals=signals,
                   progress=progress, faithful=args.get("faithful"))
    return out.to_dict()


def first_iteration_job(ws: Workspace, run_id: str, iteration: int | None, args: dict,
                        progress: ProgressFn) -> dict:
    return {"steps_run": first_iteration(ws, progress)}
