"""Runs inside vLLM's own environment (.venv-vllm, with the repository on PYTHONPATH): one
in-process vLLM engine (`LocalEngine`) of a model folder, then the project's vLLM code on it:
the response-token losses (`response_losses`) and the vllm judge backend in both modes.

    .venv-vllm/bin/python tests/llm/vllm_inprocess_job.py job.json out.json

job.json: {"model": folder, "samples": [Sample fields...], "judged": int, "max_len": int,
"prompt_format": str}: losses of every sample, ratings of the first `judged`.
out.json: {"loss": [...], "logprobs": [[six]...], "score_mass": [...], "generate": [[six]...],
"unparseable": int, "engine_start_s": float, "seconds": {...}, "versions": {...}}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(job_path: str, out_path: str) -> None:
    import transformers
    import vllm

    from middo_core.llm.vllm_engine import LocalEngine, response_losses
    from middo_core.sample import Sample
    from middo_core.signals.encode import encode_all
    from middo_core.signals.judge_backends import VLLMJudge
    from middo_core.signals.quality import QualitySignal

    job = json.loads(Path(job_path).read_text())
    samples = [Sample(**s) for s in job["samples"]]
    tokenizer = transformers.AutoTokenizer.from_pretrained(job["model"])
    began = time.monotonic()
    engine = LocalEngine(job["model"], max_model_len=job["max_len"] + 64)
    out: dict = {"engine_start_s": round(time.monotonic() - began, 1), "seconds": {},
                 "versions": {"vllm": vllm.__version__, "transformers": transformers.__version__}}

    began = time.monotonic()
    encoded = encode_all(samples, tokenizer, job["prompt_format"], job["max_len"])
    out["loss"] = response_losses(engine, encoded)
    out["seconds"]["loss"] = round(time.monotonic() - began, 2)

    for mode in ("logprobs", "generate") if job["judged"] else ():
        signal = QualitySignal(backend="vllm", mode=mode, max_len=job["max_len"],
                               prompt_format=job["prompt_format"], temperature=0.0)
        began = time.monotonic()
        result = VLLMJudge().rate(signal, samples[:job["judged"]], None, tokenizer, None,
                                  engine=engine)
        out["seconds"][mode] = round(time.monotonic() - began, 2)
        out[mode] = result.ratings
        if mode == "logprobs":
            out["score_mass"] = result.score_mass
        else:
            out["unparseable"] = result.unparseable
    Path(out_path).write_text(json.dumps(out))


if __name__ == "__main__":  # vLLM's engine starts its workers with spawn: the guard is required
    main(*sys.argv[1:3])
