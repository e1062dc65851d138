"""Refinement fixtures: a small workspace with stored neighbours."""

from __future__ import annotations

import pytest

TASKS = [
    ("Find the mode of 23, 16, 22, 19, 24, 21, 16.", "", "16"),
    ("Explain how a bill becomes a law in the United States, covering every stage.", "", "A bill..."),
    ("Translate into French.", "The cat sleeps on the mat.", "Le chat dort sur le tapis."),
    ("Write a haiku about autumn rain.", "", "Grey drops on red leaves..."),
    ("What is the derivative of x^3 * sin(x)?", "", "3x^2 sin(x) + x^3 cos(x)"),
    ("Summarise the text.", "Photosynthesis turns light into chemical energy in plants.",
     "Plants store light energy as sugar."),
    ("List three uses of copper.", "", "Wiring, plumbing, coins."),
    ("Sort these numbers: 9, 2, 7, 4.", "", "2, 4, 7, 9"),
]


@pytest.fixture
def refine_ws(workspace_factory):
    """A workspace with eight samples in D(1) and stored neighbours (k = 2) for iteration 1."""
    import json

    from middo_core.sample import Sample
    from middo_core.store.samples import insert_samples, samples_frame, set_members

    ws = workspace_factory("refine")
    samples = [Sample(instruction=i, input=x, output=o) for i, x, o in TASKS]
    ids = [s.id for s in samples]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        set_members(con, 1, ids)
        for i, sid in enumerate(ids):
            nbrs = [ids[(i + 1) % len(ids)], ids[(i + 2) % len(ids)]]
            con.execute("INSERT INTO signals (iteration, sample_id, neighbours) VALUES (1, ?, ?)",
                        [sid, json.dumps(nbrs)])
    ws.samples = samples  # type: ignore[attr-defined]  (handy in tests)
    ws.ids = ids  # type: ignore[attr-defined]
    return ws
