"""Helpers for the Studio tests: a small real workspace, an AppTest opened on it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from middo_core.sample import Sample
from middo_core.store.iterations import upsert_iteration
from middo_core.store.proposals import put_proposals
from middo_core.store.samples import add_members, insert_samples, samples_frame

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
NASTY = "<script>alert('x')</script> <img src=x onerror=alert(1)> ![x](http://127.0.0.1:9/pixel.png)"
N = 300


def seed_samples(ws, n: int = N) -> list[Sample]:
    samples = [Sample(instruction=f"Question {i}: what is {i} times {i}?" + (f" {NASTY}" if i == 0 else ""),
                      output=f"It is {i * i}." + (f" {NASTY}" if i == 0 else "")) for i in range(n)]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        add_members(con, 0, [s.id for s in samples])
        upsert_iteration(con, 0, status="built")
    return samples


def write_signals(ws, iteration: int, ids: list[str], seed: int = 0) -> pd.DataFrame:
    """Per-sample signals with realistic spreads, written through the signal store."""
    from middo_core.store.signals import write_signals as store_signals

    rng = np.random.default_rng(seed)
    n = len(ids)
    pre = rng.gamma(4.0, 0.5, n)
    frame = pd.DataFrame({
        "sample_id": ids, "loss_pre": pre,
        "loss_post": pre * 0.7 + rng.normal(0, 0.2, n), "diversity": rng.beta(8, 2, n),
        "neighbours": [json.dumps([ids[(i + 1) % n], ids[(i + 2) % n]]) for i in range(n)],
        "neighbour_sims": json.dumps([0.9, 0.8]),
        **{f"{side}_{dim}": rng.integers(3, 10, n).astype(float)
           for side in ("instruction", "response") for dim in ("clarity", "completeness", "factuality")},
    })
    frame["quality"] = frame[[c for c in frame if c.startswith(("instruction_", "response_"))]].mean(axis=1)
    with ws.store.write() as con:
        store_signals(con, iteration, frame)
    return frame


def write_proposals(ws, samples: list[Sample], iteration: int = 0) -> list[str]:
    rows = []
    for i, axis in enumerate(("complexity", "quality", "diversity", "complexity")):
        src = samples[i]
        rows.append({"id": f"prop-{i}", "iteration": iteration, "axis": axis, "source_id": src.id,
                     "neighbour_ids": [samples[10].id, samples[11].id] if axis == "diversity" else [],
                     "instruction": f"A simpler question {i}: what is {i} plus {i}?"
                                    + (f" {NASTY}" if i == 0 else ""),
                     "input": "", "output": f"The answer is {2 * i}.", "status": "pending"})
    with ws.store.write() as con:
        put_proposals(con, rows)
    return [r["id"] for r in rows]


def open_app(root: Path, page: str | None = None, timeout: float = 60):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.session_state["workspace_path"] = str(root)
    at.session_state["workspace_ok"] = True
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at) -> str:
    """Every piece of text the page shows, joined (for assertions a user would make by reading)."""
    parts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "text", "metric"):
        for el in getattr(at, kind):
            parts.append(str(getattr(el, "value", "")) + " " + str(getattr(el, "label", "")))
    for el in at.get("progress"):
        parts.append(el.proto.text)
    return "\n".join(parts)


def shown_table(element):
    """A dataframe element as the user reads it: the display strings when it carries a Styler."""
    import pyarrow as pa

    styler = element.proto.arrow_data.styler
    if styler.display_values:
        return pa.ipc.open_stream(styler.display_values).read_all().to_pandas()
    return element.value.astype(str)


def wait_final(ws, run_id: str, timeout: float = 120.0) -> dict:
    """A background run's status once it has ended (done, failed or cancelled)."""
    from middo_core.jobs import job_status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = job_status(ws, run_id)
        if status["status"] not in ("queued", "running"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {run_id} still running after {timeout} s")
