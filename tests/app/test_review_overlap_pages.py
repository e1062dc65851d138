"""Review overlap in the Studio (AppTest): each curator's queue of what they still owe, and the
agreement figures on the Iterations page."""

from __future__ import annotations

import duckdb
from studio_helpers import open_app, texts, write_proposals

from middo_core import review


def overlap_workspace(studio_ws, overlap: int = 2):
    ws, samples = studio_ws
    ws.config.review.overlap = overlap
    ws.config.review.owners = ["olga"]
    ws.save_config()
    return ws, write_proposals(ws, samples)


def status_of(ws, proposal_id: str) -> str:
    con = duckdb.connect(str(ws.store.path), read_only=True)
    try:
        return con.execute("SELECT status FROM proposals WHERE id = ?", [proposal_id]).fetchall()[0][0]
    finally:
        con.close()


def test_each_curator_sees_what_they_still_owe(studio_ws):
    ws, ids = overlap_workspace(studio_ws)
    at = open_app(ws.root, "review")
    assert "Type your name to see the proposals you still owe" in texts(at)

    at.text_input(key="review_curator").set_value("alice").run()
    shown = texts(at)
    assert "alice, you still owe 4 proposal(s)." in shown and "Proposal 1 of 4" in shown
    assert "Each proposal is decided by 2 curators. Its outcome is the majority" in shown
    assert "owners: olga" in shown
    at.button(key="review_accept").click().run()
    assert status_of(ws, ids[0]) == "pending"  # one decision of two
    shown = texts(at)
    assert "alice, you still owe 3 proposal(s)." in shown and "Proposal 1 of 3" in shown

    at.text_input(key="review_curator").set_value("bob").run()
    assert "bob, you still owe 4 proposal(s)." in texts(at)
    at.button(key="review_reject").click().run()  # bob rejects what alice accepted: a tie
    assert status_of(ws, ids[0]) == "pending"
    at.button(key="bulk_accept").click().run()
    assert at.button(key="bulk_yes").label == "Yes, accept 3"
    at.button(key="bulk_yes").click().run()
    assert "Nothing left that you owe." in texts(at)
    assert [status_of(ws, i) for i in ids] == ["pending", "pending", "pending", "pending"]

    at.text_input(key="review_curator").set_value("alice").run()  # the tie is owed by owners only
    assert "alice, you still owe 3 proposal(s)." in texts(at)
    at.text_input(key="review_curator").set_value("olga").run()
    assert "olga, you still owe 4 proposal(s)." in texts(at)
    at.button(key="review_accept").click().run()  # the owner breaks the tie
    assert status_of(ws, ids[0]) == "accepted"


def test_iterations_page_shows_agreement_between_curators(studio_ws):
    ws, ids = overlap_workspace(studio_ws, overlap=3)
    for pid, said in zip(ids, ("aar", "aaa", "rrr", "rra"), strict=True):
        for who, choice in zip(("alice", "bob", "carol"), said, strict=True):
            (review.accept if choice == "a" else review.reject)(ws, pid, actor=who)
    at = open_app(ws.root, "iterations")
    shown = texts(at)
    assert "Agreement between curators on the proposals of D(0)" in shown
    assert "Fleiss' kappa **0.33** on 4 proposals × 3 curators each (6 accept, 6 reject decisions" in shown
    tables = {tuple(df.value.columns): df.value for df in at.dataframe}
    pairs = tables[("curator", "and", "proposals", "Cohen's kappa")]
    assert len(pairs) == 3
    curators = next(v for k, v in tables.items() if k[0] == "curator" and "decisions per hour" in k)
    assert list(curators["curator"]) == ["alice", "bob", "carol"]
    assert list(curators["accepted"]) == ["2", "2", "2"]  # formatted counts
    assert list(curators["with the outcome (%)"]) == ["100", "100", "50"]  # carol: the minority twice
