"""vLLM against the project's own code, side by side in one run, on this machine.

    python -m benchmarks.bench_vllm [--n 96] [--judged 32] [--refine-n 30] [--max-new-tokens 96]

Same model (the packaged SmolLM2-135M, bf16), same inputs, the machine's load printed before
each part:
(a) response-token loss of n Alpaca records (../shared/data/alpaca_en_demo.json) and of the
    demo's training split: the project's shared pass (loss and embeddings in one pass) against
    vLLM's prompt log-probs, in-process (vLLM's environment) and through the managed server;
(b) the self-judge on `judged` Alpaca records, logprobs and generate modes: the project's
    transformers judge against the vllm judge backend, in-process and through the server;
(c) refinement of `refine-n` of the demo's samples flagged on the three axes, at concurrency 16:
    the local transformers backend against `refine.backend: vllm` (the managed server).
vLLM's start-up (engine, server) is reported apart from each pass. Results go to
benchmarks/out/bench_vllm.json; docs/BENCHMARKS.md has the table and the choice it led to.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "benchmarks" / "out" / "bench_vllm.json"
MODEL = "smollm2-135m"
MAX_LEN = 1024


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"


def alpaca(n: int):
    from middo_core.sample import Sample

    path = REPO.parent / "shared" / "data" / "alpaca_en_demo.json"
    records = json.loads(path.read_text(encoding="utf-8"))[:n]
    return [Sample(instruction=r["instruction"], input=r.get("input", ""), output=r["output"])
            for r in records]


def demo():
    from middo_core.data.demo import build_demo

    return [s for s, _ in build_demo()["train"]]


def timed(fn):
    began = time.monotonic()
    value = fn()
    return value, round(time.monotonic() - began, 2)


def project_passes(sets: dict, judged: int) -> dict:
    """The project's shared pass (loss + embeddings) and transformers judge, per sample set."""
    from middo_core.models.loader import load_model
    from middo_core.signals.encode import encode_all
    from middo_core.signals.forward import run_pass
    from middo_core.signals.quality import QualitySignal

    (model, tokenizer), load_s = timed(lambda: load_model(MODEL, device="cpu"))
    out: dict = {"model_load_s": load_s}
    run_pass(model, encode_all(sets["alpaca"][:8], tokenizer, "chat", MAX_LEN))  # warm up
    for name, samples in sets.items():
        encoded = encode_all(samples, tokenizer, "chat", MAX_LEN)
        print(f"  project loss pass, {name}: {load()}", flush=True)
        stats, seconds = timed(lambda encoded=encoded: run_pass(model, encoded, want_embedding=True))
        out[f"loss_{name}"] = {"seconds": seconds, "samples": len(samples), "tokens": stats.tokens}
    for mode in ("logprobs", "generate"):
        signal = QualitySignal(mode=mode, max_len=MAX_LEN, prompt_format="chat")
        print(f"  transformers judge, {mode}: {load()}", flush=True)
        _, seconds = timed(lambda signal=signal: signal.compute(sets["alpaca"][:judged], model, tokenizer))
        out[f"judge_{mode}"] = {"seconds": seconds, "samples": judged,
                                "tokens_fed": signal.report.tokens_fed}
    return out


def inprocess_passes(sets: dict, judged: int, folder: Path) -> dict:
    """vLLM in its own environment, in-process: engine start, loss, judge (both modes)."""
    from middo_core.llm.vllm_server import vllm_env
    from middo_core.models.loader import resolve_model_path

    out: dict = {}
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PYTHONPATH=str(REPO), VLLM_CPU_KVCACHE_SPACE="2")
    for name, samples in sets.items():
        job = {"model": resolve_model_path(MODEL), "samples": [s.model_dump() for s in samples],
               "judged": judged if name == "alpaca" else 0, "max_len": MAX_LEN,
               "prompt_format": "chat"}
        (folder / f"{name}.json").write_text(json.dumps(job))
        print(f"  vLLM in-process, {name}: {load()}", flush=True)
        subprocess.run([str(vllm_env() / "bin" / "python"), str(REPO / "tests" / "llm" / "vllm_inprocess_job.py"),
                        f"{name}.json", f"{name}.out.json"], cwd=folder, env=env, check=True,
                       capture_output=True, text=True)
        result = json.loads((folder / f"{name}.out.json").read_text())
        out["engine_start_s"] = result["engine_start_s"]
        out[f"loss_{name}"] = {"seconds": result["seconds"]["loss"], "samples": len(samples)}
        if name == "alpaca":
            for mode in ("logprobs", "generate"):
                out[f"judge_{mode}"] = {"seconds": result["seconds"][mode], "samples": judged}
    return out


def served_passes(sets: dict, judged: int, base_url: str) -> dict:
    """The same passes through the managed server's completions API."""
    from middo_core.llm.vllm_engine import ServedEngine, response_losses
    from middo_core.models.loader import load_tokenizer
    from middo_core.signals.encode import encode_all
    from middo_core.signals.judge_backends import VLLMJudge
    from middo_core.signals.quality import QualitySignal

    tokenizer = load_tokenizer(MODEL)
    engine = ServedEngine(base_url, MODEL)
    out: dict = {}
    for name, samples in sets.items():
        encoded = encode_all(samples, tokenizer, "chat", MAX_LEN)
        print(f"  vLLM server loss, {name}: {load()}", flush=True)
        _, seconds = timed(lambda encoded=encoded: response_losses(engine, encoded))
        out[f"loss_{name}"] = {"seconds": seconds, "samples": len(samples)}
    for mode in ("logprobs", "generate"):
        signal = QualitySignal(backend="vllm", mode=mode, max_len=MAX_LEN, vllm_model=MODEL)
        print(f"  vLLM server judge, {mode}: {load()}", flush=True)
        _, seconds = timed(lambda signal=signal: VLLMJudge().rate(
            signal, sets["alpaca"][:judged], None, tokenizer, None, engine=engine))
        out[f"judge_{mode}"] = {"seconds": seconds, "samples": judged}
    return out


def refinement(n: int, max_new_tokens: int, backend_name: str, folder: Path) -> dict:
    """Refine n flagged demo samples at concurrency 16 on one backend."""
    from benchmarks.bench_refine import make_workspace
    from middo_core.llm import make_backend
    from middo_core.refine import RefineOptions, refine
    from middo_core.workspace import open_workspace

    root, flagged = make_workspace(folder / f"refine-{backend_name}", n)
    ws = open_workspace(root)
    ws.config.refine.concurrency = 16
    backend = make_backend(ws.config.refine, name=backend_name, model=MODEL)
    if backend_name == "local":
        _, setup_s = timed(backend.setup)
    else:
        _, setup_s = timed(backend.ensure_server)  # already up: the start was timed apart
    print(f"  refine on {backend_name}: {load()}", flush=True)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    options = RefineOptions(rewrite_max_tokens=max_new_tokens, response_max_tokens=max_new_tokens,
                            lenient_marker=True)
    report, seconds = timed(lambda: refine(ws, 1, flagged, backend=backend, options=options))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    tokens = report.usage["completion_tokens"]
    return {"proposals": n, "created": report.total_created, "failed": report.total_failed,
            "calls": report.usage["calls"], "generated_tokens": tokens, "setup_s": setup_s,
            "seconds": seconds, "tokens_per_s": round(tokens / seconds, 1),
            "client_cpu_s": round(cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--judged", type=int, default=32)
    ap.add_argument("--refine-n", type=int, default=30)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    args = ap.parse_args()
    from middo_core.llm.vllm_server import VLLMServer

    results: dict = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "load_at_start": load(), "args": vars(args)}
    sets = {"alpaca": alpaca(args.n), "demo": demo()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["MIDDO_VLLM_HOME"] = str(folder / "vllm")  # a server of its own, stopped at the end
        print("project passes", flush=True)
        results["project"] = project_passes(sets, args.judged)
        print("vLLM in-process", flush=True)
        results["vllm_inprocess"] = inprocess_passes(sets, args.judged, folder)
        server = VLLMServer(MODEL, start_timeout_s=900)
        print(f"vLLM server start: {load()}", flush=True)
        record, start_s = timed(server.start)
        try:
            results["vllm_server"] = {"server_start_s": start_s,
                                      **served_passes(sets, args.judged, record.base_url)}
            print("refinement", flush=True)
            results["refine_local"] = refinement(args.refine_n, args.max_new_tokens, "local", folder)
            results["refine_vllm"] = refinement(args.refine_n, args.max_new_tokens, "vllm", folder)
        finally:
            server.stop()
    results["load_at_end"] = load()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
