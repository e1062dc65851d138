"""Refinement speed and resumability.

    python -m benchmarks.bench_refine                 # all three parts
    python -m benchmarks.bench_refine --only endpoint # 100 proposals, endpoint answering in 1 s
    python -m benchmarks.bench_refine --only resume   # SIGKILL halfway, resume, count repeats
    python -m benchmarks.bench_refine --only local --local-n 30 --max-new-tokens 96

The endpoint is a real OpenAI-compatible HTTP server on loopback (tests/llm/openai_server.py)
that sleeps `--delay` seconds per request, so the numbers measure the client: concurrency,
scheduling of the two calls per proposal, cache and store writes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from middo_core.config import WorkspaceConfig  # noqa: E402
from middo_core.data.demo import build_demo  # noqa: E402
from middo_core.refine import RefineOptions, refine  # noqa: E402
from middo_core.store.proposals import list_proposals  # noqa: E402
from middo_core.store.samples import insert_samples, samples_frame, set_members  # noqa: E402
from middo_core.workspace import init_workspace, open_workspace  # noqa: E402
from tests.llm.openai_server import LoopbackOpenAI  # noqa: E402

AXES = ("complexity", "quality", "diversity")
MARGIN_S = 0.5


def make_workspace(root: Path, n: int, k: int = 2, seed: int = 0) -> tuple[Path, dict[str, list[str]]]:
    """A workspace holding demo samples as D(1), n of them flagged (axes in turn), k neighbours each."""
    samples = [s for s, _ in build_demo(400, seed)["train"]]
    ws = init_workspace(root, WorkspaceConfig(name=root.name))
    ids = [s.id for s in samples]
    rng = random.Random(seed)
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples, iteration=1))
        set_members(con, 1, ids)
        for sid in ids:
            nbrs = rng.sample([i for i in ids if i != sid], k)
            con.execute("INSERT INTO signals (iteration, sample_id, neighbours) VALUES (1, ?, ?)",
                        [sid, json.dumps(nbrs)])
    chosen = rng.sample(ids, n)
    flagged: dict[str, list[str]] = {a: [] for a in AXES}
    for i, sid in enumerate(chosen):
        flagged[AXES[i % 3]].append(sid)
    (root / "flagged.json").write_text(json.dumps(flagged))
    return root, flagged


def child(root: str, model: str, concurrency: int) -> None:
    """Refinement in its own process, as `middo refine` runs it (the resume benchmark kills it);
    prints the run's report as JSON."""
    from middo_core.llm import OpenAIBackend

    ws = open_workspace(Path(root))
    ws.config.refine.concurrency = concurrency
    flagged = json.loads((Path(root) / "flagged.json").read_text())
    started = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    rep = refine(ws, 1, flagged, backend=OpenAIBackend(model=model, concurrency=concurrency),
                 options=RefineOptions(template_variant="full"))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    print(json.dumps({**rep.to_json(), "wall_s": time.monotonic() - started, "cpu_s": cpu}))


def run_child(root: Path, server: LoopbackOpenAI, concurrency: int = 16) -> dict:
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench"}
    out = subprocess.run(child_cmd(root, concurrency), cwd=REPO, env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def child_cmd(root: Path, concurrency: int = 16) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bench_refine", "--child", str(root),
            "--concurrency", str(concurrency)]


def bench_endpoint(n: int, delay: float, concurrency: int) -> dict:
    """The server in this process, the client in its own (as with a remote endpoint)."""
    with tempfile.TemporaryDirectory() as tmp, LoopbackOpenAI(delay_s=delay) as server:
        root, _ = make_workspace(Path(tmp) / "ws", n)
        first = run_child(root, server, concurrency)
        calls = server.count
        again = run_child(root, server, concurrency)
        return {"proposals": first["total_created"], "failed": first["total_failed"],
                "calls": calls, "seconds (refine call)": round(first["wall_s"], 2),
                "client CPU seconds": round(first["cpu_s"], 2),
                "ideal_seconds (2n/concurrency x delay)": round(2 * n / concurrency * delay, 2),
                "rerun_calls": server.count - calls, "rerun_seconds": round(again["wall_s"], 2)}


def bench_resume(n: int, delay: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, LoopbackOpenAI(delay_s=delay) as server:
        root, flagged = make_workspace(Path(tmp) / "ws", n)
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench"}
        cmd = child_cmd(root)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
        while len(server.answer_times) < n and proc.poll() is None:  # half of the 2n calls
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        kill_time = time.time()
        proc.wait()
        first_run_requests = server.count
        with open_workspace(root).store.read() as con:
            stored_at_kill = len(list_proposals(con, 1))
        started = time.monotonic()
        subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
        resume_s = time.monotonic() - started
        with open_workspace(root).store.read() as con:
            frame = list_proposals(con, 1)
        counts = Counter(key for _, key in server.request_times)
        first_answer = {}
        for t, key in server.answer_times:
            first_answer.setdefault(key, t)
        repeated = [k for k, c in counts.items() if c > 1]
        # an answer that left the server just before the kill may still have been in transit
        gaps = sorted(round(kill_time - first_answer[k], 3) for k in repeated if k in first_answer)
        repeated_delivered = [k for k in repeated
                              if kill_time - first_answer.get(k, float("inf")) > MARGIN_S]
        return {"proposals": len(frame), "distinct_ids": frame["id"].nunique(),
                "stored_at_kill": stored_at_kill, "requests_before_kill": first_run_requests,
                "answers_before_kill": sum(1 for t, _ in server.answer_times if t < kill_time),
                "total_requests": server.count,
                f"repeated, answered > {MARGIN_S} s before kill": len(repeated_delivered),
                "repeated, in flight at kill": len(repeated) - len(repeated_delivered),
                "answer-to-kill gaps of repeated (s)": gaps,
                "resume_seconds": round(resume_s, 2)}


def bench_local(n: int, max_new_tokens: int | None, batch_size: int, variant: str) -> dict:
    from middo_core.llm import LocalBackend

    with tempfile.TemporaryDirectory() as tmp:
        root, flagged = make_workspace(Path(tmp) / "ws", n)
        ws = open_workspace(root)
        ws.config.refine.concurrency = 64  # the local scheduler batches; let it see the queue
        llm = LocalBackend(model="smollm2-135m", batch_size=batch_size)
        t0 = time.monotonic()
        llm.setup()
        load_s = time.monotonic() - t0
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        opts = RefineOptions(template_variant=variant, rewrite_max_tokens=max_new_tokens,  # type: ignore[arg-type]
                             response_max_tokens=max_new_tokens)
        rep = refine(ws, 1, flagged, backend=llm, options=opts)
        elapsed = time.monotonic() - started
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        with ws.store.read() as con:
            frame = list_proposals(con, 1)
        example = frame[frame["status"] == "pending"].head(1).to_dict("records")
        return {"proposals": n, "created": rep.total_created, "failed": rep.total_failed,
                "failure_reasons": rep.failure_reasons, "calls": rep.usage["calls"],
                "generated_tokens": rep.usage["completion_tokens"],
                "max_tokens_per_call": llm.max_tokens_cap if max_new_tokens is None else max_new_tokens,
                "model_load_s": round(load_s, 1), "seconds": round(elapsed, 1),
                "cpu_seconds": round(cpu_s, 1),
                "s_per_proposal": round(elapsed / n, 2),
                "tokens_per_s": round(rep.usage["completion_tokens"] / elapsed, 1),
                "example": {k: example[0][k] for k in ("axis", "instruction", "output")} if example else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["endpoint", "resume", "local"])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--local-n", type=int, default=30)
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="tokens per call (default: refine.max_new_tokens, capped by the local backend)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--variant", default="compact")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1 gives CPU seconds that hold on a busy machine)")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child, "bench", args.concurrency)
        return
    results = {}
    print(f"load average (1 min) at the start: {os.getloadavg()[0]:.1f}")
    if args.only in (None, "endpoint"):
        results["endpoint"] = bench_endpoint(args.n, args.delay, args.concurrency)
    if args.only in (None, "resume"):
        results["resume"] = bench_resume(args.n, args.delay)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.only in (None, "local"):
        results["local"] = bench_local(args.local_n, args.max_new_tokens, args.batch_size, args.variant)
    print(f"cores: {os.cpu_count()}, load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    for part, values in results.items():
        print(f"\n{part}")
        for key, value in values.items():
            print(f"  {key:32s} {value}")


if __name__ == "__main__":
    main()
