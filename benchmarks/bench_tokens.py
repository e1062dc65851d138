"""Tokens fed to the model for a full diagnosis: this pipeline vs the paper's.

    python -m benchmarks.bench_tokens [--n 200] [--data PATH]

Token counts depend on the tokenizer and the templates only, so the judge runs on a tiny random
model with the SmolLM2 tokenizer (the counts equal SmolLM2-135M's). Both pipelines use the same
chat format and max_len 1024.
Paper: base loss pass + post loss pass + a separate embedding pass over the instruction+input
+ six judge prompts per sample, each with the rubric first and then the sample (no reuse).
Here: base pass + post pass that also yields the embeddings + the judge's shared layout
(sample prefix fed once, six short questions after it). A second line shows the next iteration,
where the base-model losses of unchanged samples come from the cache.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.bench_loss import REPO, load_samples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "alpaca_en_demo.json"))
    ap.add_argument("--changed", type=float, default=0.15, help="share of new samples next iteration")
    args = ap.parse_args()
    from middo_core.models.loader import build_tiny_model, load_model
    from middo_core.signals.encode import encode_all
    from middo_core.signals.quality import QualitySignal

    samples = load_samples(Path(args.data), args.n)
    model, tok = load_model(str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny")), "cpu")
    encoded = encode_all(samples, tok, "chat", 1024)
    loss_pass = sum(len(e.ids) for e in encoded)
    prompt_only = sum(len(tok(s.prompt, add_special_tokens=False)["input_ids"]) for s in samples)

    def judge_tokens(faithful: bool) -> int:
        q = QualitySignal(faithful=faithful, max_len=1024, prompt_format="chat")
        q.compute(samples, model, tok)
        return q.report.tokens_fed

    shared, faithful = judge_tokens(False), judge_tokens(True)
    paper = {"base loss": loss_pass, "post loss": loss_pass, "embedding pass": prompt_only,
             "judge (rubric first, 6 prompts)": faithful}
    ours = {"base loss": loss_pass, "post loss + embeddings": loss_pass, "embedding pass": 0,
            "judge (shared prefix)": shared}
    next_ours = dict(ours, **{"base loss": int(loss_pass * args.changed)})
    total_p, total_o, total_n = sum(paper.values()), sum(ours.values()), sum(next_ours.values())
    print(f"{args.n} Alpaca samples, {loss_pass / args.n:.0f} tokens per sample in the chat format")
    print("| part | paper | this pipeline |")
    print("|---|---:|---:|")
    for (kp, vp), (ko, vo) in zip(paper.items(), ours.items(), strict=True):
        print(f"| {kp} / {ko} | {vp:,} | {vo:,} |")
    print(f"| **total, first diagnosis** | **{total_p:,}** | **{total_o:,} ({total_o / total_p:.2f}x)** |")
    print(f"| next iteration ({args.changed:.0%} new samples; cached base losses) | {total_p:,} | "
          f"{total_n:,} ({total_n / total_p:.2f}x) |")
    print(f"| per-sample judge tokens | {faithful / args.n:.0f} | {shared / args.n:.0f} |")


if __name__ == "__main__":
    main()
