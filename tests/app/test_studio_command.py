"""`middo studio`: the command line it runs, and the loud warning off loopback."""

from __future__ import annotations

import sys

from typer.testing import CliRunner

from middo_core.cli import app
from middo_core.commands.studio import is_loopback, studio_command


def test_the_command_serves_the_app_on_the_given_host_and_port(tmp_path):
    cmd = studio_command(tmp_path, 8765, "127.0.0.1")
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert cmd[4].endswith("app/streamlit_app.py")
    assert cmd[cmd.index("--server.port") + 1] == "8765"
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[-2:] == ["--workspace", str(tmp_path.resolve())]


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


def test_a_missing_folder_is_refused_with_a_sentence(tmp_path):
    result = CliRunner().invoke(app, ["studio", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "no such folder" in " ".join(result.output.split())


PROVIDER = """[auth]
redirect_uri = "http://studio.example:8501/oauth2callback"
cookie_secret = "a long random string"

[auth.company]
client_id = "middo"
client_secret = "s3cret"
server_metadata_url = "https://login.example/.well-known/openid-configuration"
"""


def _at_home(tmp_path, monkeypatch):
    """Run in an empty folder with an empty home: no secrets anywhere."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def test_serving_beyond_loopback_is_refused_without_an_identity_provider(tmp_path, monkeypatch):
    _at_home(tmp_path, monkeypatch)
    result = CliRunner().invoke(app, ["studio", str(tmp_path), "--host", "0.0.0.0"])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "Not serving on 0.0.0.0 without sign-in" in said and "no [auth] section" in said
    assert "Serving the Studio to a team" in said


def test_an_incomplete_provider_is_named_and_a_complete_one_is_passed_to_streamlit(tmp_path, monkeypatch):
    from middo_core.commands.studio import secrets_files, sign_in_problem

    _at_home(tmp_path, monkeypatch)
    secrets = tmp_path / ".streamlit" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text(PROVIDER.replace('client_secret = "s3cret"\n', ""))
    files = secrets_files()
    assert files[-1] == secrets.resolve()
    assert "client_secret" in sign_in_problem(files)
    result = CliRunner().invoke(app, ["studio", str(tmp_path), "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "client_secret" in result.output
    secrets.write_text(PROVIDER)
    assert sign_in_problem(files) is None
    cmd = studio_command(tmp_path, 8765, "0.0.0.0", files)
    assert cmd[cmd.index("--secrets.files", cmd.index("--secrets.files") + 1) + 1] == str(secrets.resolve())
