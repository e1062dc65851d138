"""vLLM in-process on this CPU: `LocalEngine` in vLLM's own environment (.venv-vllm, made by
`make setup`) runs the project's vLLM code, the response-token loss from prompt log-probs and
the vllm judge backend in both modes, on the demo's samples and the packaged SmolLM2. Its
numbers must agree with the project's transformers passes on the same model within bf16 noise
(measured, see vllm_reference.py), and flag the same samples up to the number the project's own
bf16 pass flags differently from float32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from vllm_reference import JUDGED, MAX_LEN, MODEL, flags, within_bf16_noise

from middo_core.llm.vllm_server import vllm_env

REPO = Path(__file__).resolve().parents[2]
JOB = Path(__file__).with_name("vllm_inprocess_job.py")
needs_vllm = pytest.mark.skipif(
    not (vllm_env() / "bin" / "vllm").is_file(),
    reason=f"vLLM's environment is missing ({vllm_env()}): run `make setup`")
pytestmark = [pytest.mark.slow, needs_vllm]


@pytest.fixture(scope="module")
def inprocess(tmp_path_factory, project_reference):
    """The job's answers: one in-process engine, every pass on it."""
    from middo_core.models.loader import resolve_model_path

    folder = tmp_path_factory.mktemp("vllm-inprocess")
    samples, _ = project_reference
    job = {"model": resolve_model_path(MODEL), "samples": [s.model_dump() for s in samples],
           "judged": JUDGED, "max_len": MAX_LEN, "prompt_format": "chat"}
    (folder / "job.json").write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PYTHONPATH=str(REPO), VLLM_CPU_KVCACHE_SPACE="1")
    began = time.monotonic()
    run = subprocess.run([str(vllm_env() / "bin" / "python"), str(JOB), "job.json", "out.json"],
                         cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    log = (run.stdout + run.stderr)[-3000:]
    assert run.returncode == 0, f"the in-process vLLM job failed:\n{log}"
    out = json.loads((folder / "out.json").read_text())
    out["wall_s"] = round(time.monotonic() - began, 1)
    shown = {k: out[k] for k in ("engine_start_s", "seconds", "versions", "wall_s")}
    print(f"\nvLLM in-process: {json.dumps(shown)}", file=sys.stderr)
    return samples, out


@pytest.fixture(scope="module")
def reference(project_reference):
    return project_reference[1]


def test_inprocess_losses_agree_with_the_shared_pass_within_bf16_noise(inprocess, reference):
    _, out = inprocess
    vllm = np.array(out["loss"])
    assert vllm.shape == reference["float32"]["loss"].shape and np.isfinite(vllm).all()
    distance, noise = within_bf16_noise(vllm, reference, "loss")
    assert 0 < noise < 0.05  # the yardstick itself: bf16 moves a loss by hundredths
    assert distance <= 2 * noise
    # the complexity flags at the default m: vLLM's differ from float32's by no more samples than
    # the project's own bf16 pass does (plus one at the threshold's edge)
    flagged = flags(reference["float32"]["loss"])
    assert len(flagged) > 10
    assert len(flags(vllm) ^ flagged) <= len(flags(reference["bfloat16"]["loss"]) ^ flagged) + 1


def test_inprocess_judge_logprobs_agrees_with_transformers_within_bf16_noise(inprocess, reference):
    _, out = inprocess
    vllm = np.array(out["logprobs"])
    assert vllm.shape == (JUDGED, 6) and ((vllm >= 0) & (vllm <= 10)).all()
    # the score tokens hold most of the next token's probability: the top-20 log-probs vLLM
    # returns cover them
    assert np.mean(out["score_mass"]) > 0.5
    distance, noise = within_bf16_noise(vllm, reference, "logprobs")
    assert distance <= 2 * noise


def test_inprocess_judge_generate_reads_the_same_greedy_ratings(inprocess, reference):
    _, out = inprocess
    ours = reference["bfloat16"]["generate"]
    vllm = np.array(out["generate"])
    assert vllm.shape == (JUDGED, 6) and ((vllm >= 0) & (vllm <= 10)).all()
    # greedy replies: the same rating, except where bf16 rounding turns a near tie the other way
    # (the project's bf16 and float32 passes differ at a like rate)
    same = (vllm == ours).mean()
    drift = (ours != reference["float32"]["generate"]).mean()
    assert same >= 1 - max(2 * drift, 0.05)
