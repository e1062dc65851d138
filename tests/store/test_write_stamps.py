"""Write stamps: the Studio keys its per-sample caches on them, so they must change exactly when
the signals or a map of an iteration are written, and not on other writes (a review decision)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from middo_core.review import bulk_decide
from middo_core.sample import Sample
from middo_core.store.db import write_stamps
from middo_core.store.projections import put_projection
from middo_core.store.proposals import put_proposals
from middo_core.store.samples import add_members, insert_samples, samples_frame
from middo_core.store.signals import load_signals, write_signals


def test_stamps_change_with_signals_and_maps_only(workspace_factory):
    ws = workspace_factory("stamps")
    samples = [Sample(instruction=f"q {i}", output=f"a {i}") for i in range(20)]
    ids = [s.id for s in samples]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        add_members(con, 0, ids)
    with ws.store.read() as con:
        assert write_stamps(con) == {}  # nothing written yet: the Studio falls back to the store version
    frame = pd.DataFrame({"sample_id": ids, "loss_pre": np.arange(20.0), "diversity": 0.5,
                          "neighbours": '["x","y"]'})
    with ws.store.write() as con:
        write_signals(con, 0, frame)
        put_projection(con, 0, "umap", ids, np.zeros((20, 2)))
        put_proposals(con, [{"id": "p1", "iteration": 0, "axis": "quality", "source_id": ids[0],
                             "instruction": "q", "input": "", "output": "better", "status": "pending"}])
    with ws.store.read() as con:
        first = write_stamps(con)
    assert set(first) == {"signals:0", "projection:0:umap"}

    assert bulk_decide(ws, 0, "accept") == 1  # a decision writes the store, not the signals
    with ws.store.read() as con:
        assert write_stamps(con) == first

    with ws.store.write() as con:
        write_signals(con, 0, frame.assign(loss_pre=1.0))
    with ws.store.read() as con:
        after = write_stamps(con)
        light = load_signals(con, 0, neighbours=False)
    assert after["signals:0"] != first["signals:0"]
    assert after["projection:0:umap"] == first["projection:0:umap"]
    assert "neighbours" not in light and (light["loss_pre"] == 1.0).all()


def test_a_store_from_before_stamps_gets_them_when_opened(workspace_factory):
    """A store last written by a version without stamps (schema v4) is stamped by its migration,
    so the Studio's caches of it also outlive unrelated writes."""
    from middo_core.store.schema import SCHEMA_VERSION, migrate
    from middo_core.workspace import open_workspace

    ws = workspace_factory("old")
    samples = [Sample(instruction=f"q {i}", output=f"a {i}") for i in range(5)]
    ids = [s.id for s in samples]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        add_members(con, 0, ids)
        write_signals(con, 0, pd.DataFrame({"sample_id": ids, "loss_pre": 1.0}))
        put_projection(con, 0, "umap", ids, np.zeros((5, 2)))
        con.execute("DELETE FROM meta WHERE key LIKE 'written:%'")
        con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    reopened = open_workspace(ws.root)
    with reopened.store.read() as con:
        assert set(write_stamps(con)) == {"signals:0", "projection:0:umap"}
        assert migrate(con) == SCHEMA_VERSION
