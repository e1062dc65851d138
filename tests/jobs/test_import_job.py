"""Import as a background job: progress and the report in the run, all or nothing, cancel."""

from __future__ import annotations

import json

from middo_core.jobs import cancel_job, job_status, start_job
from middo_core.store.samples import dataset_ids
from tests.jobs.test_jobs import _wait


def _records(n: int) -> list[dict]:
    return [{"instruction": f"Question number {i}: what is {i} plus {i}?", "input": "",
             "output": f"{i} plus {i} is {2 * i}."} for i in range(n)]


def _finished(ws, run_id):
    return _wait(lambda: (s := job_status(ws, run_id))["status"] not in ("queued", "running") and s,
                 what="the import job to finish")


def _train_ids(ws) -> list[str]:
    with ws.store.read() as con:
        return dataset_ids(con, 0)


def test_background_import_adds_the_samples_and_keeps_the_report(workspace_factory, tmp_path):
    ws = workspace_factory("ws")
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in _records(50) + _records(1)), encoding="utf-8")
    run_id = start_job(ws, "import", 0, {"path": str(data)})
    final = _finished(ws, run_id)
    assert final["status"] == "done", final["log_tail"]
    assert final["result"]["n_imported"] == 50 and final["result"]["n_duplicates"] == 1
    assert len(_train_ids(ws)) == 50
    assert final["progress"]["stage"].startswith("import")


def test_a_refused_import_fails_the_run_with_row_and_field_and_writes_nothing(workspace_factory,
                                                                              tmp_path):
    ws = workspace_factory("ws")
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in _records(5)), encoding="utf-8")
    assert _finished(ws, start_job(ws, "import", 0, {"path": str(good)}))["status"] == "done"
    bad = tmp_path / "bad.jsonl"
    rows = _records(8)
    rows[6] = {"instruction": "no answer here", "input": ""}
    bad.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    final = _finished(ws, start_job(ws, "import", 0, {"path": str(bad)}))
    assert final["status"] == "failed" and "bad.jsonl" in final["error"]
    errors = final["result"]["errors"]
    assert errors[0]["row"] == 7 and errors[0]["field"] == "output"
    assert len(_train_ids(ws)) == 5  # the earlier import is intact, nothing half-written


def test_a_cancelled_import_writes_nothing(workspace_factory, tmp_path):
    ws = workspace_factory("ws")
    data = tmp_path / "big.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for r in _records(300_000):
            fh.write(json.dumps(r) + "\n")
    run_id = start_job(ws, "import", 0, {"path": str(data)})
    _wait(lambda: (job_status(ws, run_id)["progress"] or {}).get("done"), what="import progress")
    status = cancel_job(ws, run_id, grace_s=30)
    assert status["status"] == "cancelled"
    assert _train_ids(ws) == []
