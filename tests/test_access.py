"""Roles: every action that changes a workspace, called through the library as each role; each
refusal names who, their role and the role needed, and leaves nothing stored; what is allowed
records the signed-in identity in the audit trail."""

from __future__ import annotations

import pytest

from middo_core import review
from middo_core.access import AccessDenied, Identity, role
from middo_core.build import build_next
from middo_core.jobs import cancel_job, start_job
from middo_core.selection import choose, save_selection
from middo_core.store.audit import audit_log
from middo_core.store.iterations import get_iteration
from tests.app.studio_helpers import seed_samples, wait_final, write_proposals, write_signals

ANN = Identity("sub-ann", "ann@example.com", "Ann Viewer")
CAL = Identity("sub-cal", "cal@example.com", "Cal Curator")
OLA = Identity("sub-ola", "ola@example.com", "Ola Owner")
STRANGER = Identity("sub-who", "who@elsewhere.org")
ACCESS = {"default_role": "none",
          "roles": {"ann@example.com": "viewer", "sub-cal": "curator", "OLA@example.com": "owner"}}
RUN_KINDS = ("diagnose", "refine", "train", "evaluate", "loop")


@pytest.fixture
def team_ws(workspace_factory):
    ws = workspace_factory("team", access=ACCESS)
    samples = seed_samples(ws, 40)
    write_signals(ws, 0, [s.id for s in samples])
    return ws, write_proposals(ws, samples)


def _refused(call, who: Identity, role_held: str, needed: str) -> None:
    with pytest.raises(AccessDenied) as caught:
        call(who)
    message = str(caught.value)
    assert who.actor in message and f"the {needed} role" in message
    assert (f"is a {role_held}" if role_held != "none" else "has no role") in message
    assert isinstance(caught.value, PermissionError)


def test_roles_come_from_the_config_by_email_subject_or_domain(workspace_factory):
    ws = workspace_factory("roles", access={"default_role": "viewer", "roles": {
        "ann@example.com": "owner", "sub-cal": "curator", "@corp.example": "curator"}})
    assert role(ws, Identity("x", "Ann@Example.com")) == "owner"  # e-mail, without case
    assert role(ws, Identity("sub-cal")) == "curator"  # subject
    assert role(ws, Identity("y", "zed@corp.example")) == "curator"  # the e-mail's domain
    assert role(ws, STRANGER) == "viewer"  # the stated default
    assert role(ws, "alice") == "owner"  # a typed name: the person at the machine


def test_deciding_and_verdicts_need_a_curator(team_ws):
    ws, ids = team_ws
    actions = {
        "accept": lambda who: review.accept(ws, ids[0], actor=who),
        "reject": lambda who: review.reject(ws, ids[1], actor=who),
        "edit": lambda who: review.edit(ws, ids[3], "Edited?", "", "Edited.", actor=who),
        "bulk": lambda who: review.bulk_decide(ws, 0, "reject", axis="diversity", actor=who),
        "verdict": lambda who: review.mark(ws, 0, ids[0], "real", actor=who),
    }
    for call in actions.values():
        _refused(call, ANN, "viewer", "curator")
        _refused(call, STRANGER, "none", "curator")
    assert review.review_counts(ws, 0) == {a: {"pending": n} for a, n in
                                           (("complexity", 2), ("quality", 1), ("diversity", 1))}
    assert review.verdicts(ws, 0).empty and review.audit_trail(ws).empty
    for call in actions.values():
        call(CAL)
    review.accept(ws, ids[1], actor=OLA)  # an owner may do what a curator may
    trail = review.audit_trail(ws)
    assert sorted(set(zip(trail["proposal_id"], trail["actor"], strict=True))) == sorted(
        [(ids[0], "cal@example.com"), (ids[1], "cal@example.com"), (ids[3], "cal@example.com"),
         (ids[2], "cal@example.com"), (ids[1], "ola@example.com")])
    marked = review.verdicts(ws, 0)
    assert list(marked["actor"]) == ["cal@example.com"] and list(marked["verdict"]) == ["real"]


def test_selection_build_and_runs_need_the_owner(team_ws):
    ws, ids = team_ws
    selection = choose(ws, 0)
    review.bulk_decide(ws, 0, "accept", actor=CAL)
    for who, held in ((ANN, "viewer"), (CAL, "curator")):
        _refused(lambda w: save_selection(ws, 0, selection, actor=w), who, held, "owner")
        _refused(lambda w: build_next(ws, 0, actor=w), who, held, "owner")
        for kind in RUN_KINDS:
            _refused(lambda w, k=kind: start_job(ws, k, 0, {}, actor=w), who, held, "owner")
    with ws.store.read() as con:
        assert (get_iteration(con, 0) or {}).get("m_complexity") is None
        assert get_iteration(con, 1) is None
        assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 0
        assert audit_log(con).empty

    save_selection(ws, 0, selection, actor=OLA)
    report = build_next(ws, 0, actor=OLA)
    run_id = start_job(ws, "evaluate", 1, {}, actor=OLA)
    _refused(lambda w: cancel_job(ws, run_id, actor=w), CAL, "curator", "owner")
    cancel_job(ws, run_id, grace_s=1.0, actor=OLA)
    wait_final(ws, run_id)
    with ws.store.read() as con:
        log = audit_log(con)
    assert [tuple(r) for r in log[["actor", "action", "iteration"]].itertuples(index=False)] == [
        ("ola@example.com", "select", 0), ("ola@example.com", "build", 1),
        ("ola@example.com", "run:evaluate", 1), ("ola@example.com", "cancel:evaluate", 1)]
    assert list(log["detail"])[2:] == [run_id, run_id] and f"{report.size_after:,}" in log["detail"][1]


def test_the_cli_and_loopback_act_as_the_owner_under_their_typed_name(team_ws):
    ws, ids = team_ws
    review.accept(ws, ids[0], actor="alice")
    save_selection(ws, 0, choose(ws, 0), actor="alice")
    assert list(review.audit_trail(ws)["actor"]) == ["alice"]
    with ws.store.read() as con:
        assert list(audit_log(con)["actor"]) == ["alice"]
