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
