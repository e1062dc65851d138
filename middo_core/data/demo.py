"""The built-in demo workspace: a few hundred generated Alpaca samples with planted defects.

Everything is generated in code from a fixed seed, so the same size gives the same samples (and
ids) every time. Defects of the three kinds Middo targets are planted in the training split:
quality (wrong answer, irrelevant response, truncated response), complexity (convoluted, verbose,
nested instructions for simple tasks) and diversity (isolated rare topics). Their labels go to
artifacts/planted_labels.json, never to the store, so no signal can see them; the clean original
of each planted sample (the sample before its defect was planted; an isolated topic is its own)
goes beside them to artifacts/planted_originals.json, for oracle experiments that replace flagged
samples by what they should have been (benchmarks/oracle_demo.py). A clean held-out split of
verifiable items backs exact-match evaluation (artifacts/demo_eval.jsonl).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from middo_core.config import WorkspaceConfig
from middo_core.data.demo_tables import RARE_TOPICS
from middo_core.data.demo_tasks import FAMILIES, Task
from middo_core.files import write_text_atomic
from middo_core.sample import Sample
from middo_core.store.samples import add_members, insert_samples, samples_frame, set_members
from middo_core.workspace import Workspace, init_workspace

DEFAULT_SIZE = 400
MIN_SIZE, MAX_SIZE = 40, 5000
HELDOUT_FRACTION = 0.10
LABELS_FILE = "planted_labels.json"
ORIGINALS_FILE = "planted_originals.json"
EVAL_FILE = "demo_eval.jsonl"

# (axis, kind) -> share of the whole demo set
PLANTED_RATES: dict[tuple[str, str], float] = {
    ("quality", "wrong_answer"): 0.03,
    ("quality", "irrelevant"): 0.025,
    ("quality", "truncated"): 0.02,
    ("complexity", "convoluted"): 0.02,
    ("complexity", "verbose"): 0.02,
    ("complexity", "nested"): 0.02,
    ("diversity", "isolated_topic"): 0.05,
}

CONVOLUTED_OPENERS = [
    "Treating every term below in its most technical sense, and justifying each inference from "
    "first principles before committing to any determination whatsoever, resolve the following "
    "matter: ",
    "Let the request stated hereafter be regarded as a formal problem instance whose solution "
    "must be derived, not merely asserted, with the derivation's epistemic status made explicit: ",
    "Notwithstanding any simpler reading that might suggest itself, construe the following as an "
    "exercise in rigorous, multi-stage reasoning, and render the conclusion accordingly: ",
]
CONVOLUTED_RESPONSE = [
    "Proceeding axiomatically, and having discharged the preliminary definitional obligations, the "
    "determination reduces, modulo routine verification, to the following. ",
    "Let the quantity or object under consideration be denoted Q; under the stated constraints, "
    "and after the requisite reductions, Q is characterised thus. ",
]
VERBOSE_OPENERS = [
    "So I was going through my notes from earlier this week, which honestly are a bit of a mess "
    "because I wrote half of them on the train and the other half late at night, and I came across "
    "something I wanted to double-check with you, if you don't mind, since I'd rather be sure than "
    "guess, and I know these things can be easy to get wrong when you're tired. Anyway, here it is. ",
    "Before I ask, some background: my cousin and I were talking about this over dinner, and we "
    "went back and forth for quite a while without agreeing, and then someone else joined in with "
    "a third opinion, so now I really want a clear answer that I can show everyone. The question: ",
]
VERBOSE_CLOSERS = [
    " Please take your time, and thanks so much in advance, I really appreciate it.",
    " Sorry for the long message, I just wanted to give you the whole picture. Thanks a lot!",
]
NESTED_RULES = [
    " Before answering, restate the question in your own words; then, if the answer is a number, "
    "also write it out in words unless it exceeds one hundred, in which case use scientific "
    "notation; if it is not a number, spell it letter by letter, capitalising only the vowels; "
    "finally, check the result twice and say which check came first.",
    " Answer in exactly three sentences, the second of which must begin with the last word of the "
    "first, unless the answer contains a digit, in which case use two sentences, the first of "
    "which must not contain the letter 'e'; and list any assumptions in reverse alphabetical order.",
]


def create_demo_workspace(root: str | Path, size: int = DEFAULT_SIZE, seed: int = 0) -> Workspace:
    """A new workspace at `root` holding the demo set as dataset version 0 (train + heldout)."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"demo size must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    demo = build_demo(size, seed)
    root = Path(root)
    config = WorkspaceConfig(name=root.name)
    config.loop.autostart = True  # the Studio starts iteration 0 when it first opens the demo
    ws = init_workspace(root, config)
    train = [s for s, _ in demo["train"]]
    heldout = [s for s, _ in demo["heldout"]]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(train + heldout, origin="seed", iteration=0))
        set_members(con, 0, [s.id for s in train], split="train")
        add_members(con, 0, [s.id for s in heldout], split="heldout")
    _write_json(ws.artifacts / LABELS_FILE, demo["labels"])
    _write_json(ws.artifacts / ORIGINALS_FILE, demo["originals"])
    lines = [json.dumps({"id": s.id, "family": t.family, "prompt": s.prompt, "answer": t.answer},
                        ensure_ascii=False) for s, t in demo["heldout"]]
    write_text_atomic(ws.artifacts / EVAL_FILE, "\n".join(lines) + "\n")
    return ws


def build_demo(size: int = DEFAULT_SIZE, seed: int = 0) -> dict[str, Any]:
    """The demo set in memory: train [(sample, task)], heldout [(sample, task)], labels, and
    originals: {planted sample id: its clean original as {"instruction", "input", "output"}}."""
    rng = random.Random(seed)
    n_isolated = min(round(size * PLANTED_RATES[("diversity", "isolated_topic")]), len(RARE_TOPICS))
    tasks = _unique_tasks(rng, size - n_isolated)
    n_heldout = round(size * HELDOUT_FRACTION)
    verifiable = [i for i, t in enumerate(tasks) if t.answer is not None]
    heldout_idx = sorted(rng.sample(verifiable, min(n_heldout, len(verifiable))))
    held = set(heldout_idx)
    train_idx = [i for i in range(len(tasks)) if i not in held]
    rng.shuffle(train_idx)

    planted: dict[int, tuple[str, str]] = {}  # task index -> (axis, kind)
    for (axis, kind), rate in PLANTED_RATES.items():
        if axis == "diversity":
            continue
        want = max(1, round(size * rate))
        pool = [i for i in train_idx if i not in planted
                and (kind != "wrong_answer" or tasks[i].wrong_output is not None)]
        for i in pool[:want]:
            planted[i] = (axis, kind)

    train: list[tuple[Sample, Task]] = []
    labels: dict[str, dict[str, str]] = {}
    originals: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    for i in sorted(train_idx):
        task = tasks[i]
        sample = _plant(rng, task, planted[i][1], tasks) if i in planted else _sample(task)
        if sample.id in seen:
            continue
        seen.add(sample.id)
        train.append((sample, task))
        if i in planted:
            labels[sample.id] = {"axis": planted[i][0], "kind": planted[i][1]}
            originals[sample.id] = _fields(_sample(task))  # draws nothing: the samples stay as they were
    for instruction, output in rng.sample(RARE_TOPICS, n_isolated):
        task = Task("rare", instruction, output)
        sample = _sample(task)
        train.append((sample, task))
        labels[sample.id] = {"axis": "diversity", "kind": "isolated_topic"}
        originals[sample.id] = _fields(sample)  # a rare topic is not a broken sample: it is its own
    heldout = [(_sample(tasks[i]), tasks[i]) for i in heldout_idx]
    return {"train": train, "heldout": heldout, "labels": dict(sorted(labels.items())),
            "originals": dict(sorted(originals.items()))}


def load_planted_labels(ws: Workspace) -> dict[str, dict[str, str]]:
    """{sample_id: {"axis", "kind"}} of a demo workspace ({} for other workspaces)."""
    path = ws.artifacts / LABELS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def load_planted_originals(ws: Workspace) -> dict[str, dict[str, str]]:
    """{planted sample id: {"instruction", "input", "output"} of its clean original} of a demo
    workspace ({} for other workspaces and demos created before this record existed)."""
    path = ws.artifacts / ORIGINALS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def load_demo_eval(ws: Workspace) -> list[dict[str, Any]]:
    """The held-out exact-match items: {"id", "family", "prompt", "answer"}."""
    path = ws.artifacts / EVAL_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _unique_tasks(rng: random.Random, n: int) -> list[Task]:
    makers = [f for f, _ in FAMILIES]
    weights = [w for _, w in FAMILIES]
    tasks: list[Task] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(50 * n):
        if len(tasks) == n:
            break
        task = rng.choices(makers, weights)[0](rng)
        key = (task.instruction, task.input)  # one answer per prompt, however it is phrased
        if key not in seen:
            seen.add(key)
            tasks.append(task)
    if len(tasks) < n:
        raise ValueError(f"the demo generator cannot produce {n} distinct samples")
    return tasks


def _sample(task: Task) -> Sample:
    return Sample(instruction=task.instruction, input=task.input, output=task.output)


def _fields(sample: Sample) -> dict[str, str]:
    return {"instruction": sample.instruction, "input": sample.input, "output": sample.output}


def _plant(rng: random.Random, task: Task, kind: str, tasks: list[Task]) -> Sample:
    instruction, output = task.instruction, task.output
    if kind == "wrong_answer":
        output = task.wrong_output or output
    elif kind == "irrelevant":
        donors = [t for t in tasks if t.family != task.family]
        output = rng.choice(donors).output
    elif kind == "truncated":
        body = output.split("\n\nAnswer:")[0]
        words = body.split(" ")
        output = " ".join(words[: max(2, len(words) // 2)]).rstrip(".,:;")
        if len(words) < 4:  # a one-line answer: cut inside the text instead
            output = body[: max(3, len(body) // 2)]
    elif kind == "convoluted":
        instruction = rng.choice(CONVOLUTED_OPENERS) + instruction[0].lower() + instruction[1:]
        output = rng.choice(CONVOLUTED_RESPONSE) + output
    elif kind == "verbose":
        instruction = rng.choice(VERBOSE_OPENERS) + instruction + rng.choice(VERBOSE_CLOSERS)
    elif kind == "nested":
        instruction = instruction + rng.choice(NESTED_RULES)
    return Sample(instruction=instruction, input=task.input, output=output)


def _write_json(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


