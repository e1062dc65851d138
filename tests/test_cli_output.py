"""What `middo` prints, as a user's terminal and scripts see it: results on stdout, errors on
stderr as whole lines, whatever the terminal's width and however long the workspace's path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from middo_core.data import import_file
from middo_core.store.iterations import put_metrics, upsert_iteration

REPO = Path(__file__).resolve().parents[1]
WIDTHS = ("40", "300")


def middo(*args: object, columns: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": columns, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "middo_core.cli", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def deep(tmp_path) -> Path:
    """A folder deep enough, with names long enough, to pass any terminal's width."""
    path = tmp_path.joinpath(*["a-folder-with-a-rather-long-name-for-a-workspace"] * 5)
    path.mkdir(parents=True)
    return path


@pytest.mark.parametrize("columns", WIDTHS)
def test_an_error_is_one_whole_line_on_stderr_naming_the_path(deep, tmp_path, columns):
    missing = deep / "not-here"
    data = tmp_path / "a.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi."}) + "\n")
    proc = middo("import", missing, data, columns=columns)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == f"error: {missing}: not a Middo workspace (run `middo init {missing}` first)"


@pytest.mark.parametrize("columns", WIDTHS)
def test_a_usage_error_is_plain_text(columns):
    proc = middo("import", columns=columns)
    assert proc.returncode == 2
    assert "Missing argument 'directory'." in proc.stderr
    assert "╭" not in proc.stderr and proc.stdout == ""


def test_tables_go_to_stdout_with_dashes_for_missing_values(workspace_factory, tmp_path):
    ws = workspace_factory("tables")
    data = tmp_path / "a.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Question {i}?", "output": f"Answer {i}."}) + "\n"
                            for i in range(12)))
    import_file(ws, data)
    with ws.store.write() as con:
        upsert_iteration(con, 0, status="selected",
                         counts={"selection": {"flagged": {"complexity": 3, "diversity": 1}, "union": 4}})
        put_metrics(con, 0, [("builtin_qa", "accuracy", 0.25, 12)])
        put_metrics(con, 1, [("builtin_qa", "accuracy", 0.5, 12)])
    out = tmp_path / "t.txt"
    with open(out, "w") as handle:
        proc = subprocess.run([sys.executable, "-m", "middo_core.cli", "tables", str(ws.root)], cwd=REPO,
                              stdout=handle, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "builtin_qa / accuracy" in text and "0.25" in text and "0.5" in text
    assert "NaN" not in text and "None" not in text
    counts_row = next(line for line in text.splitlines() if line.split()[:1] == ["1"])
    # iteration 1 flagged 3 for complexity, 1 for diversity and nothing on quality: a dash
    assert counts_row.split()[:5] == ["1", "3", "1", "–", "4"]


def test_status_json_holds_the_latest_scores(workspace_factory):
    ws = workspace_factory("status")
    with ws.store.write() as con:
        put_metrics(con, 0, [("builtin_qa", "accuracy", 0.25, 12), ("heldout", "loss", 2.5, 40)])
        put_metrics(con, 1, [("builtin_qa", "accuracy", 0.5, 12), ("heldout", "loss", 2.1, 40)])
    proc = middo("status", ws.root, "--json", columns="80")
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout)
    assert state["metrics"]["latest_iteration"] == 1
    assert state["metrics"]["latest"] == {"builtin_qa / accuracy": 0.5, "heldout / loss": 2.1}
    assert len(state["metrics"]["all"]) == 4
    plain = middo("status", ws.root, columns="40")
    assert "M(1) scores: builtin_qa / accuracy 0.5, heldout / loss 2.1" in plain.stdout
