"""`middo import`, `middo export` and `middo demo` as a user runs them."""

from __future__ import annotations

import json

from data_helpers import ALPACA, store_state, write_json, write_jsonl
from typer.testing import CliRunner

from middo_core.cli import app
from middo_core.workspace import open_workspace

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_import_then_export_from_the_command_line(workspace_factory, tmp_path):
    ws = workspace_factory()
    result = run("import", ws.root, write_json(tmp_path / "a.json", ALPACA + [ALPACA[0]]))
    assert result.exit_code == 0, result.output
    assert "5 read, 4 imported, 1 exact duplicates" in result.output
    assert "rows 5 (= row 1)" in result.output
    result = run("export", ws.root, tmp_path / "lf", "--format", "llamafactory")
    assert result.exit_code == 0, result.output
    assert "Wrote 4 samples" in result.output
    assert "middo_ws_iter0" in json.loads((tmp_path / "lf" / "dataset_info.json").read_text())


def test_invalid_file_exits_non_zero_lists_errors_and_imports_nothing(workspace_factory, tmp_path):
    ws = workspace_factory()
    rows = [{"instruction": "", "output": "x"} for _ in range(30)] + [ALPACA[0]]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    result = run("import", ws.root, path)
    assert result.exit_code == 1
    assert "Nothing imported" in result.output
    assert "row 1, field 'instruction': is empty" in result.output
    assert "... and 10 more" in result.output  # the first 20, then a count
    assert "--skip-invalid" in result.output
    assert store_state(ws) == (0, {})

    result = run("import", ws.root, path, "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "1 imported, 30 invalid (skipped)" in result.output
    assert "Report: " in result.output
    assert store_state(ws)[0] == 1


def test_import_json_report_and_format_option(workspace_factory, tmp_path):
    ws = workspace_factory()
    path = write_json(tmp_path / "a.json", ALPACA)
    result = run("import", ws.root, path, "--format", "alpaca", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_imported"] == 4
    assert run("import", ws.root, path, "--format", "yaml").exit_code == 1
    assert "not a Middo workspace" in run("import", tmp_path / "nowhere", path).output


def test_demo_command_creates_a_ready_workspace(tmp_path):
    result = run("demo", tmp_path / "demo", "--size", "120")
    assert result.exit_code == 0, result.output
    assert "Created demo workspace" in result.output and "held out" in result.output
    ws = open_workspace(tmp_path / "demo")
    assert (ws.artifacts / "planted_labels.json").exists()
    assert sum(store_state(ws)[1]["0"].values()) == 120
    again = run("demo", tmp_path / "demo")
    assert again.exit_code == 1 and "already a workspace" in again.output


def test_export_only_refined_of_a_seed_only_dataset_is_empty(workspace_factory, tmp_path):
    ws = workspace_factory()
    run("import", ws.root, write_json(tmp_path / "a.json", ALPACA))
    result = run("export", ws.root, tmp_path / "only.jsonl", "-f", "jsonl", "--only-refined")
    assert result.exit_code == 0 and "Wrote 0 samples" in result.output
    assert (tmp_path / "only.jsonl").read_text() == ""
    assert run("export", ws.root, tmp_path / "x", "-f", "nope").exit_code == 1
