"""The managed vLLM server as a background job kind ("serve"): the Studio's "Start the server".

The run starts (or finds) the server of the refiner's model and ends when it is healthy; the
server outlives the run. While it starts, the run's progress shows the seconds waited and the
server's last log line; the run's folder links the server's log (`server.log`). A server that
dies while starting fails the run with the reason read from its log, and a cancelled run stops
the server it was starting.
"""

from __future__ import annotations

from typing import Any

from middo_core.progress import ProgressFn, report
from middo_core.workspace import Workspace

STAGE = "starting the vLLM server"


def serve_job(ws: Workspace, run_id: str, iteration: int | None, args: dict[str, Any],
              progress: ProgressFn) -> dict[str, Any]:
    """args (optional): model (default: refine.model)."""
    from middo_core.jobs.runfiles import run_dir
    from middo_core.llm.vllm_server import VLLMServer

    cfg = ws.config.refine
    model = args.get("model") or cfg.model
    server = VLLMServer(model, start_timeout_s=cfg.vllm_start_timeout_s,
                        kv_cache_gib=cfg.vllm_kv_cache_gib, extra_args=tuple(cfg.vllm_args))
    link = run_dir(ws, run_id) / "server.log"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(server.log_path)

    def waited(seconds: float, last_line: str) -> None:
        report(progress, STAGE, int(seconds), 0, f"{model}: {last_line}" if last_line else model)

    report(progress, STAGE, 0, 0, model)
    record = server.start(on_wait=waited)
    return {"model": model, "base_url": record.base_url, "pid": record.pid, "port": record.port,
            "started": record.started, "log": record.log}
