"""Each Studio page, driven like a user would with Streamlit's AppTest, on a real workspace."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest
from studio_helpers import APP, N, open_app, shown_table, texts, write_proposals, write_signals

from middo_core.canaries import AXIS_OF_KIND


def status_of(ws, proposal_id: str) -> str:
    con = duckdb.connect(str(ws.store.path), read_only=True)
    try:
        return con.execute("SELECT status FROM proposals WHERE id = ?", [proposal_id]).fetchall()[0][0]
    finally:
        con.close()


def test_no_workspace_says_what_to_do(tmp_path):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["workspace_path"] = ""
    at.run()
    assert not at.exception
    assert "Open or create one in the sidebar" in texts(at)
    at.sidebar.text_input(key="workspace_input").set_value(str(tmp_path / "fresh")).run()
    at.sidebar.button(key="create_workspace").click().run()
    assert not at.exception
    assert (tmp_path / "fresh" / "middo.duckdb").exists()
    assert "No workspace open" not in texts(at)


def test_data_page_browses_searches_and_imports(studio_ws, tmp_path):
    ws, _ = studio_ws
    at = open_app(ws.root, "data")
    assert f"of {N:,} in D(0)" in texts(at)
    at.text_input(key="browse_text").set_value("Question 7:").run()
    assert "Samples 1–1 of 1 in D(0)" in texts(at)
    assert not at.metric  # the statistics scan every text: only once their tab is opened
    at.session_state["data_tab"] = "Statistics"
    at.run()
    assert at.metric[0].value == f"{N:,}"  # statistics: training samples, formatted

    good = tmp_path / "more.jsonl"
    good.write_text("\n".join(json.dumps({"instruction": f"New {i}", "output": f"Out {i}"}) for i in range(5)))
    at.radio(key="import_source").set_value("A file on this machine").run()
    at.text_input(key="import_path").set_value(str(good)).run()
    next(b for b in at.button if b.label == "Import this file").click().run()
    assert not at.exception
    assert "Imported 5 samples into D(0)" in texts(at)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "ok", "output": "fine"}) + "\n" + json.dumps({"output": "no instruction"}))
    at.text_input(key="import_path").set_value(str(bad)).run()
    next(b for b in at.button if b.label == "Import this file").click().run()
    shown = texts(at)
    assert "Nothing was imported" in shown and "Traceback" not in shown
    assert not at.exception


def test_diagnose_empty_state_offers_to_run_it(studio_ws):
    ws, _ = studio_ws
    at = open_app(ws.root, "diagnose")
    assert "No diagnosis yet for iteration 0. Run it" in texts(at)


def flagged_line(at, axis_index: int) -> str:
    lines = [m.value for m in at.markdown if m.value.startswith("**") and "flagged (" in m.value]
    return lines[axis_index]


def test_diagnose_slider_moves_the_count_and_saves(studio_ws):
    pytest.importorskip("middo_core.store.signals", reason="the signal store is not in this build")
    ws, samples = studio_ws
    write_signals(ws, 0, [s.id for s in samples])
    at = open_app(ws.root, "diagnose")
    before = flagged_line(at, 1)  # diversity
    at.slider(key="m_diversity_0").set_value(-0.2).run()
    after = flagged_line(at, 1)
    assert before != after
    assert int(after.strip("*").split()[0].replace(",", "")) > int(before.strip("*").split()[0].replace(",", ""))
    assert "Union flagged" in texts(at)

    next(b for b in at.button if b.label == "Auto m").click().run()
    assert "target band" in texts(at)
    next(b for b in at.button if b.label == "Save selection").click().run()
    assert not at.exception
    con = duckdb.connect(str(ws.store.path), read_only=True)
    m_div, status = con.execute("SELECT m_diversity, status FROM iterations WHERE number = 0").fetchall()[0]
    con.close()
    assert status == "selected" and m_div == pytest.approx(at.slider(key="m_diversity_0").value)


def test_diagnose_shows_each_signals_health_and_the_precision_of_the_verdicts(studio_ws):
    from middo_core.review import mark
    from middo_core.store.canaries import write_canaries

    ws, samples = studio_ws
    ids = [s.id for s in samples]
    frame = write_signals(ws, 0, ids)
    rng = np.random.default_rng(1)
    canaries, values = [], []
    for j, src in enumerate(rng.choice(len(ids), 24, replace=False)):
        kind = "noised" if j < 12 else "truncated"
        canaries.append({"id": f"canary-{j}", "kind": kind, "axis": AXIS_OF_KIND[kind],
                         "source_id": ids[src], "seed": 0, "instruction": "q", "input": "",
                         "output": "a"})
        if kind == "noised":  # the loss sees them: far above their sources
            values += [(f"canary-{j}", c, frame[c][src] + 5) for c in ("loss_pre", "loss_post")]
        else:  # quality misses them: values unrelated to their sources
            values.append((f"canary-{j}", "quality", rng.uniform(3, 9)))
    with ws.store.write() as con:
        write_canaries(con, 0, pd.DataFrame(canaries),
                       pd.DataFrame(values, columns=["canary_id", "name", "value"]))
    at = open_app(ws.root, "diagnose")
    shown = texts(at)
    assert "good: AUROC 1.00" in shown and "this m flags 100% of them" in shown
    assert "quality: near chance on this data" in shown and "Curators' verdicts" not in shown

    flagged = frame.sort_values("diversity")["sample_id"].tolist()[:3]
    mark(ws, 0, flagged[0], "real", axis="diversity", actor="ana")
    mark(ws, 0, flagged[1], "false_alarm", axis="diversity", actor="ana")
    at = open_app(ws.root, "diagnose")
    assert "Curators' verdicts: precision 50% at this m (1 real, 1 false alarm among" in texts(at)
    mark(ws, 0, flagged[2], "real", axis="diversity", actor="bo")
    at = open_app(ws.root, "diagnose")
    assert "Curators' verdicts: precision 67% at this m (2 real, 1 false alarm among" in texts(at)


def test_review_accept_reject_edit_and_bulk(studio_ws):
    ws, samples = studio_ws
    ids = write_proposals(ws, samples)
    at = open_app(ws.root, "review")
    shown = texts(at)
    assert "0 of 4 decided" in shown and "Proposal 1 of 4" in shown
    # the proposal text with markup is shown escaped inside the diff, never as live HTML
    html_blocks = [h.proto.body for h in at.get("html") if "middo-diff" in h.proto.body]
    assert html_blocks and all("<script>" not in b and "<img" not in b for b in html_blocks)
    assert any("&lt;script&gt;" in b for b in html_blocks)

    at.button(key="review_accept").click().run()
    assert status_of(ws, ids[0]) == "accepted"
    assert "1 of 4 decided" in texts(at)
    at.button(key="review_reject").click().run()
    assert status_of(ws, ids[1]) == "rejected"

    at.button(key="review_edit").click().run()
    at.text_area[0].set_value("An edited question")
    submit = next(b for b in at.button if b.label == "Save edit")
    submit.click().run()
    assert status_of(ws, ids[2]) == "edited"

    at.button(key="bulk_accept").click().run()
    at.button(key="bulk_yes").click().run()
    assert status_of(ws, ids[3]) == "accepted"
    assert "4 of 4 decided" in texts(at)


def test_review_table_mode_saves_decisions(studio_ws):
    ws, samples = studio_ws
    write_proposals(ws, samples)
    at = open_app(ws.root, "review")
    at.segmented_control(key="review_mode").set_value("Table").run()
    assert not at.exception
    assert len(at.data_editor) == 1


def test_iterations_page_builds_the_next_version(studio_ws):
    from middo_core import review

    ws, samples = studio_ws
    write_proposals(ws, samples)
    review.bulk_decide(ws, 0, "accept", actor="test")
    from middo_core.loop import review_step

    assert review_step(ws, 0)
    at = open_app(ws.root, "iterations")
    assert "paper Table 6" in texts(at)
    at.button(key="build_next").click().run()
    assert not at.exception
    con = duckdb.connect(str(ws.store.path), read_only=True)
    size = con.execute("SELECT count(*) FROM dataset_members WHERE iteration = 1").fetchall()[0][0]
    con.close()
    assert size == N + 1  # three rewrites replace their originals; one new sample is added


def test_map_page_draws_a_stored_projection(studio_ws):
    import numpy as np

    from middo_core.store.projections import put_projection

    ws, samples = studio_ws
    with ws.store.write() as con:
        put_projection(con, 0, "umap", [s.id for s in samples], np.random.default_rng(0).normal(size=(N, 2)))
    at = open_app(ws.root, "map")
    assert "Draw a lasso" in texts(at)
    at.selectbox(key="map_colour").set_value("origin").run()
    assert not at.exception


def test_tables_show_a_dash_for_missing_values_never_none(studio_ws):
    ws, samples = studio_ws
    at = open_app(ws.root, "iterations")
    table6 = shown_table(at.dataframe[0])
    assert table6.iloc[0].tolist() == ["0", "–", "–", "–", "–", "–", f"{N:,}"]

    at = open_app(ws.root, "data")  # nothing diagnosed yet: the signal columns are dashes
    browse = shown_table(at.dataframe[0])
    assert (browse["loss_pre"] == "–").all() and (browse["quality"] == "–").all()
    assert not browse.isin(["None", "nan", "<NA>"]).any().any()
    write_signals(ws, 0, [s.id for s in samples])
    at = open_app(ws.root, "data")
    assert shown_table(at.dataframe[0])["loss_pre"].str.fullmatch(r"\d+\.\d\d").all()


def test_a_large_import_runs_in_the_background_and_shows_its_report(studio_ws, tmp_path,
                                                                     monkeypatch):
    import time

    ws, _ = studio_ws
    monkeypatch.setenv("MIDDO_BACKGROUND_IMPORT_BYTES", "0")  # every file counts as large
    at = open_app(ws.root, "data")
    data = tmp_path / "big.jsonl"
    data.write_text("\n".join(json.dumps({"instruction": f"Bg {i}", "output": f"Out {i}"})
                              for i in range(40)))
    at.radio(key="import_source").set_value("A file on this machine").run()
    at.text_input(key="import_path").set_value(str(data)).run()
    next(b for b in at.button if b.label == "Import this file").click().run()
    assert not at.exception
    from middo_core.jobs import job_status, list_jobs

    run = next(r for r in list_jobs(ws) if r["kind"] == "import")
    deadline = time.monotonic() + 120
    while job_status(ws, run["id"])["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the import job did not finish"
        time.sleep(0.2)
    at.run()
    assert not at.exception
    assert "Imported 40 samples into D(0)" in texts(at)


def test_review_lists_why_proposals_failed_and_offers_to_ask_again(studio_ws):
    from middo_core.store.proposals import put_proposals

    ws, samples = studio_ws
    write_proposals(ws, samples)
    with ws.store.write() as con:
        put_proposals(con, [{"id": f"fail-{i}", "iteration": 0, "axis": "quality",
                             "source_id": samples[20 + i].id, "instruction": "", "input": "",
                             "output": "", "status": "failed",
                             "reason": "response cut at the token limit (128 tokens): raise "
                                       "refine.max_new_tokens, or keep such answers with --keep-truncated"}
                            for i in range(3)])
    at = open_app(ws.root, "review")
    label = next(e.label for e in at.expander if "failed" in e.label)
    assert label.startswith("3 proposal(s) failed")
    table = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert table.iloc[0]["proposals"] == 3 and "token limit" in table.iloc[0]["reason"]
    assert "raise refine.max_new_tokens" in texts(at)
    assert any(b.label == "Ask again for the failed ones" for b in at.button)
    assert "4 proposals" in texts(at) or "of 4 decided" in texts(at)  # failed ones are not in the queue count
