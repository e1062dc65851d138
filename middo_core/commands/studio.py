"""`middo studio [DIR]`: serve the Streamlit app for one workspace: on loopback, or beyond it
only with an identity provider configured (sign-in through Streamlit's st.login, OpenID Connect)."""

from __future__ import annotations

import ipaddress
import os
import sys
import tomllib
from pathlib import Path

import typer

from middo_core.commands.common import console, fail, results

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
SIGN_IN_DOC = 'docs/RELIABILITY.md, "Serving the Studio to a team"'


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


def secrets_files(launch_dir: Path | None = None) -> list[Path]:
    """Where the Studio's secrets (its identity provider) are read, later ones overriding earlier
    ones: ~/.streamlit/secrets.toml, then .streamlit/secrets.toml in the folder `middo studio`
    runs in."""
    files = [Path.home() / ".streamlit" / "secrets.toml",
             (launch_dir or Path.cwd()).resolve() / ".streamlit" / "secrets.toml"]
    return list(dict.fromkeys(files))


def sign_in_problem(files: list[Path]) -> str | None:
    """What keeps these secrets from configuring sign-in (st.login's [auth] section), or None."""
    auth: dict = {}
    for path in files:
        if not path.is_file():
            continue
        try:
            section = tomllib.loads(path.read_text(encoding="utf-8")).get("auth")
        except (OSError, tomllib.TOMLDecodeError) as exc:
            return f"{path}: not readable TOML ({exc})"
        if isinstance(section, dict):
            auth.update(section)
    if not auth:
        return "no [auth] section in " + " or ".join(str(p) for p in files)
    missing = [key for key in ("redirect_uri", "cookie_secret") if not auth.get(key)]
    if missing:
        return f"[auth] lacks {', '.join(missing)}"
    named = [value for value in auth.values() if isinstance(value, dict)]
    if not any(all(section.get(k) for k in PROVIDER_KEYS) for section in [auth, *named]):
        return f"no provider in [auth] (or an [auth.NAME] section) with {', '.join(PROVIDER_KEYS)}"
    return None


def studio_command(directory: Path | None, port: int, host: str,
                   secrets: list[Path] | None = None) -> list[str]:
    script = app_script()
    cmd = [sys.executable, "-m", "streamlit", "run", str(script),
           "--server.port", str(port), "--server.address", host,
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    for path in secrets or []:
        cmd += ["--secrets.files", str(path)]
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
        """Open Middo Studio in the browser (served on http://HOST:PORT). Beyond loopback it
        needs an identity provider in .streamlit/secrets.toml: every page then asks to sign in."""
        if directory is not None and not directory.exists():
            fail(f"{directory}: no such folder (create it with `middo init {directory}`)")
        secrets = secrets_files()
        problem = sign_in_problem(secrets)
        if not is_loopback(host) and problem:
            fail(f"Not serving on {host} without sign-in: anyone who can reach this machine could "
                 f"read and change the workspace. Configure an identity provider ({problem}; see "
                 f"{SIGN_IN_DOC}), or serve on 127.0.0.1 and reach it through an SSH tunnel.")
        if not problem:
            console.print("Sign-in required (the identity provider in .streamlit/secrets.toml); "
                          "roles from the workspace's middo.yaml (access).", highlight=False)
        try:
            cmd = studio_command(directory, port, host, secrets)
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
