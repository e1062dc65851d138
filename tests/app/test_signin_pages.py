"""The Studio with an identity provider configured (AppTest; the browser test signs in for real
against a loopback provider): nothing of the workspace before sign-in, each role's buttons
disabled with the reason, and the library's refusal shown when a role changes under an open page."""

from __future__ import annotations

import pytest
import yaml
from studio_helpers import APP, seed_samples, texts, write_proposals, write_signals

from middo_core import review

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "middo", "client_secret": "s3cret",
        "server_metadata_url": "http://localhost:9/.well-known/openid-configuration"}
CAL = {"is_logged_in": True, "sub": "sub-cal", "email": "cal@example.com", "name": "Cal Curator"}
ANN = {"is_logged_in": True, "sub": "sub-ann", "email": "ann@example.com", "name": "Ann Viewer"}


@pytest.fixture
def team(workspace_factory, monkeypatch):
    ws = workspace_factory("team", access={"default_role": "none", "roles": {
        "ann@example.com": "viewer", "cal@example.com": "curator"}})
    samples = seed_samples(ws, 40)
    write_signals(ws, 0, [s.id for s in samples])
    ids = write_proposals(ws, samples)
    monkeypatch.setenv("MIDDO_WORKSPACE", str(ws.root))  # the workspace the Studio serves
    return ws, ids


def open_as(user: dict | None, page: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["auth"] = AUTH
    at.user = user or {"is_logged_in": False}
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_signed_out_sees_a_sign_in_button_and_nothing_of_the_workspace(team):
    at = open_as(None, "review")
    shown = texts(at)
    assert [b.label for b in at.button] == ["Sign in"]
    assert "Sign in to open the workspace" in shown
    assert "Review proposals" not in shown and "Question" not in shown and "Iteration" not in shown
    assert not at.sidebar.selectbox


def test_a_user_with_no_role_is_told_whom_to_ask(team):
    at = open_as({"is_logged_in": True, "sub": "sub-eve", "email": "eve@elsewhere.org"}, "review")
    shown = texts(at)
    assert "You are signed in as eve@elsewhere.org, which has no role in this workspace" in shown
    assert "Review proposals" not in shown and [b.label for b in at.button] == ["Sign out"]


def test_a_viewer_reads_but_every_decision_is_disabled_with_the_reason(team):
    at = open_as(ANN, "review")
    shown = texts(at)
    assert "Review proposals for D(0)" in shown and "Signed in as **Ann Viewer**" in shown
    assert "ann@example.com is a viewer in this workspace: deciding proposals needs the curator role" in shown
    for key in ("review_accept", "review_edit", "review_reject"):
        assert at.button(key=key).disabled
    assert not [b for b in at.button if b.label.startswith("Accept all")]
    at.switch_page("app_pages/iterations.py").run()
    assert at.button(key="start_train").disabled
    assert "needs the owner role" in at.button(key="start_train").help


def test_a_curator_decides_as_themselves_and_is_refused_once_demoted(team):
    ws, ids = team
    at = open_as(CAL, "review")
    at.button(key="review_accept").click().run()
    trail = review.audit_trail(ws)
    assert list(zip(trail["proposal_id"], trail["actor"], strict=True)) == [(ids[0], "cal@example.com")]
    # the owner demotes Cal in middo.yaml while Cal's page is open with the buttons enabled
    path = ws.root / "middo.yaml"
    config = yaml.safe_load(path.read_text())
    config["access"]["roles"]["cal@example.com"] = "viewer"
    path.write_text(yaml.safe_dump(config))
    at.button(key="review_reject").click().run()
    assert "cal@example.com is a viewer in this workspace: deciding proposals needs the curator role" in texts(at)
    assert review.review_counts(ws, 0)["quality"] == {"pending": 1}  # nothing changed
    assert len(review.audit_trail(ws)) == 1
