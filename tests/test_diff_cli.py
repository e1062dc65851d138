"""`middo diff` as a user's terminal and scripts see it: the changes on stdout, an export file,
and a missing version named on one line of stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from middo_core.build import build_next
from middo_core.cli import app
from middo_core.review import accept
from middo_core.sample import Sample
from middo_core.store.proposals import put_proposals
from middo_core.store.samples import add_members, insert_samples, samples_frame

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def ws(workspace_factory):
    """D(0) of 6 samples; D(1) with one simplified rewrite and one augmentation."""
    ws = workspace_factory("cli-diff")
    samples = [Sample(instruction=f"Explain topic {i} in depth.", output=f"Topic {i} is...") for i in range(6)]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        add_members(con, 0, [s.id for s in samples])
        put_proposals(con, [
            {"id": "p-simple", "iteration": 0, "axis": "complexity", "source_id": samples[0].id,
             "instruction": "Explain topic 0 briefly.", "input": "", "output": "Topic 0 is short.",
             "status": "pending"},
            {"id": "p-new", "iteration": 0, "axis": "diversity", "source_id": samples[1].id,
             "instruction": "Compare topic 1 with topic 7.", "input": "", "output": "They differ.",
             "status": "pending"}])
    accept(ws, "p-simple")
    accept(ws, "p-new")
    build_next(ws, 0)
    return ws


def test_the_changes_are_listed_on_stdout(ws):
    result = runner.invoke(app, ["diff", str(ws.root), "0", "1"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "D(0) -> D(1): 6 -> 7 samples; 1 rewritten, 1 added, 0 removed" in out
    assert "- Explain topic 0 in depth." in out and "+ Explain topic 0 briefly." in out
    assert "+ Compare topic 1 with topic 7." in out
    only = runner.invoke(app, ["diff", str(ws.root), "0", "1", "--axis", "diversity"]).stdout
    assert "Compare topic 1 with topic 7." in only and "Explain topic 0 briefly." not in only


def test_json_and_an_export_file(ws, tmp_path):
    result = runner.invoke(app, ["diff", str(ws.root), "0", "1", "--kind", "rewritten", "--json"])
    payload = json.loads(result.stdout)
    assert payload["total"] == 1 and payload["size_b"] == 7
    [change] = payload["changes"]
    assert (change["kind"], change["axis"]) == ("rewritten", "complexity")
    assert change["new"]["instruction"] == "Explain topic 0 briefly."
    out = tmp_path / "changes.csv"
    result = runner.invoke(app, ["diff", str(ws.root), "0", "1", "--out", str(out)])
    assert result.exit_code == 0 and f"Wrote 2 changes to {out}" in result.stdout
    header, *rows = out.read_text().splitlines()
    assert header.startswith("kind,axis,old_id,new_id,old_instruction") and len(rows) == 2


def test_a_missing_version_is_one_line_on_stderr(ws):
    env = {**os.environ, "COLUMNS": "40", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "middo_core.cli", "diff", str(ws.root), "0", "5"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: D(5) does not exist in {ws.root}; versions: 0, 1"]
    bad = runner.invoke(app, ["diff", str(ws.root), "0", "1", "--kind", "moved"])
    assert bad.exit_code == 1
    assert bad.stderr.strip() == "error: unknown change kind 'moved'; choose one of rewritten, added, removed"
