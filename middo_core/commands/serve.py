"""`middo serve start|status|stop`: the product-managed vLLM server of a refiner model."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from middo_core.commands.common import console, emit_json, fail, results, workspace

ACTIONS = ("start", "status", "stop")


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        action: str = typer.Argument(..., help="start | status | stop"),
        directory: Path | None = typer.Argument(
            None, help="Workspace folder: its refine.model and refine.vllm_* settings"),
        model: str | None = typer.Option(None, help="Model to serve (default: refine.model, "
                                         "else smollm2-135m)"),
        timeout: float | None = typer.Option(None, help="Seconds to wait for health on start "
                                             "(default: refine.vllm_start_timeout_s)"),
        stop_all: bool = typer.Option(False, "--all", help="stop: every managed server"),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
    ) -> None:
        """Start (or reuse), show, or stop the vLLM server that `refine.backend: vllm` talks to.

        The server runs from vLLM's own environment (`make setup` builds it) on loopback; it outlives
        the command, so later runs reuse it. Its record and log sit in MIDDO_VLLM_HOME (default:
        the model cache's vllm/ folder), one folder per model."""
        from middo_core.config import RefineConfig
        from middo_core.llm.vllm_server import VLLMServer, VLLMServerError, managed_servers

        if action not in ACTIONS:
            fail(f"unknown action {action!r} (choose from {', '.join(ACTIONS)})")
        cfg = workspace(directory).config.refine if directory is not None else RefineConfig()
        name = model or cfg.model
        server = VLLMServer(name, start_timeout_s=timeout or cfg.vllm_start_timeout_s,
                            kv_cache_gib=cfg.vllm_kv_cache_gib, extra_args=tuple(cfg.vllm_args))
        if action == "start":
            began = time.monotonic()
            if not as_json:
                console.print(f"starting or reusing the vLLM server of {name} "
                              f"(log: {server.log_path})")
            try:
                rec = server.start()
            except VLLMServerError as exc:
                if as_json:
                    emit_json({"model": name, "state": "failed", "error": exc.reason,
                               "log_tail": exc.log_tail})
                    raise typer.Exit(1) from None
                for line in exc.log_tail[-8:]:
                    console.print(f"  | {line}", markup=False)
                fail(exc.reason)
            report = {**rec.to_json(), "state": "up", "waited_s": round(time.monotonic() - began, 1)}
            if as_json:
                emit_json(report)
            else:
                results.print(f"{name}: up at {rec.base_url} (pid {rec.pid}, started {rec.started}, "
                              f"waited {report['waited_s']} s)")
            return
        if action == "status":
            chosen = [server] if model or directory is not None else managed_servers()
            states = [s.status() for s in chosen]
            if as_json:
                emit_json(states)
                return
            if not states:
                results.print("no managed vLLM servers")
            for s in states:
                where = f" at {s['base_url']} (pid {s['pid']}, started {s['started']})" if "pid" in s else ""
                results.print(f"{s['model']}: {s['state']}{where}")
            return
        targets = managed_servers() if stop_all else [server]
        stopped = {s.model: s.stop() for s in targets}
        if as_json:
            emit_json(stopped)
            return
        for name_, was_running in stopped.items():
            results.print(f"{name_}: {'stopped' if was_running else 'was not running'}")
