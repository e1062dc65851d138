"""`middo studio [DIR]`: serve the Streamlit app on loopback for one workspace."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import typer

from middo_core.commands.common import console, fail, results

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def app_script() -> Path:
    """The Studio entry script (app/streamlit_app.py next to the package, or installed as `app`)."""
    here = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
    if here.is_file():
        return here
    import importlib.util

    spec = importlib.util.find_spec("app")
    if spec and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "streamlit_app.py"
            if candidate.is_file():
                return candidate
    raise FileNotFoundError("app/streamlit_app.py not found: reinstall middo-studio")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def studio_command(directory: Path | None, port: int, host: str) -> list[str]:
    script = app_script()
    cmd = [sys.executable, "-m", "streamlit", "run", str(script),
           "--server.port", str(port), "--server.address", host,
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    if directory is not None:
        cmd += ["--", "--workspace", str(directory.resolve())]
    return cmd


def register(app: typer.Typer) -> None:
    @app.command()
    def studio(
        directory: Path = typer.Argument(None, help="Workspace folder to open (optional)"),
        port: int = typer.Option(8501, "--port", help="Port to serve on"),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; keep loopback unless you know why"),
    ) -> None:
        """Open Middo Studio in the browser (served on http://HOST:PORT)."""
        if directory is not None and not directory.exists():
            fail(f"{directory}: no such folder (create it with `middo init {directory}`)")
        if not is_loopback(host):
            console.print(
                f"[bold red]WARNING:[/bold red] serving on {host}: anyone who can reach this "
                "machine can read and change the workspace. Middo Studio has no login. "
                "Use an SSH tunnel to 127.0.0.1 instead.", highlight=False)
        try:
            cmd = studio_command(directory, port, host)
        except FileNotFoundError as exc:
            fail(str(exc))
        results.print(f"Middo Studio on http://{host}:{port}  (Ctrl+C stops it)", highlight=False)
        # Run from the repository root so .streamlit/config.toml applies. The server replaces this
        # process, so stopping `middo studio` (Ctrl+C, SIGTERM from a supervisor) stops the server.
        os.environ["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
        os.chdir(Path(cmd[4]).parents[1])
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(cmd[0], cmd)
