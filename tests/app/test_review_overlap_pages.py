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
    assert "alice, you still owe 3 proposal(s)." in shown
    assert "Proposal 1 of 3 · quality · pending" in shown  # the next one she owes, not the one she decided
    assert "0 of 2 curators have decided this proposal." in shown

    at.text_input(key="review_curator").set_value("bob").run()
    assert "bob, you still owe 4 proposal(s)." in texts(at)
    assert "1 of 2 curators have decided this proposal." in texts(at)  # but not what alice decided
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
    assert "A tie: 1 accept and 1 reject. As an owner, your decision breaks it." in texts(at)
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


AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "middo", "client_secret": "s3cret",
        "server_metadata_url": "http://localhost:9/.well-known/openid-configuration"}


def test_signed_in_curators_decide_as_themselves_and_an_owner_breaks_the_tie(workspace_factory, monkeypatch):
    from streamlit.testing.v1 import AppTest
    from studio_helpers import APP, seed_samples

    ws = workspace_factory("team", review={"overlap": 2}, access={"roles": {
        "cal@example.com": "curator", "dee@example.com": "curator", "oz@example.com": "owner"}})
    ids = write_proposals(ws, seed_samples(ws, 20))
    monkeypatch.setenv("MIDDO_WORKSPACE", str(ws.root))

    def open_as(email: str):
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.secrets["auth"] = AUTH
        at.user = {"is_logged_in": True, "sub": f"sub-{email}", "email": email}
        at.run()
        at.switch_page("app_pages/review.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    at = open_as("cal@example.com")
    assert "Curator" not in [t.label for t in at.text_input]  # signed in: no name to type
    assert "cal@example.com, you still owe 4 proposal(s)." in texts(at)
    assert "owners: oz@example.com" in texts(at)
    at.button(key="review_accept").click().run()
    at = open_as("dee@example.com")
    at.button(key="review_reject").click().run()
    assert status_of(ws, ids[0]) == "pending"
    assert "dee@example.com, you still owe 3 proposal(s)." in texts(at)
    at = open_as("oz@example.com")
    assert "oz@example.com, you still owe 4 proposal(s)." in texts(at)
    at.button(key="review_accept").click().run()
    assert status_of(ws, ids[0]) == "accepted"
    with ws.store.read() as con:
        trail = con.execute("SELECT actor, action FROM review_log WHERE proposal_id = ? ORDER BY decided_at",
                            [ids[0]]).fetchall()
    assert trail == [("cal@example.com", "accepted"), ("dee@example.com", "rejected"),
                     ("oz@example.com", "accepted")]
