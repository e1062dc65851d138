"""Review overlap: N curators per proposal, the majority rule with the owners' tie-break, what each
curator still owes, the build, the audit trail, and the agreement figures."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from middo_core.agreement import (
    agreement_from,
    cohen_kappa,
    curator_speed,
    fleiss_kappa,
    review_agreement,
)
from middo_core.build import build_next
from middo_core.review import (
    accept,
    apply_policy,
    audit_trail,
    bulk_decide,
    edit,
    reject,
    review_counts,
    review_queue_ids,
)
from middo_core.sample import Sample
from middo_core.store.samples import add_members, dataset, insert_samples, samples_frame


def workspace(workspace_factory, n_proposals: int = 4, overlap: int = 2, owners=("olga",)):
    ws = workspace_factory(f"overlap{overlap}", review={"overlap": overlap, "owners": list(owners)})
    samples = [Sample(instruction=f"What is {i} plus {i}?", output=str(2 * i)) for i in range(n_proposals + 2)]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        add_members(con, 0, [s.id for s in samples])
        for i in range(n_proposals):
            con.execute("""INSERT INTO proposals (id, iteration, axis, source_id, instruction, input, output, status)
                           VALUES (?, 0, 'quality', ?, ?, '', ?, 'pending')""",
                        [f"p{i}", samples[i].id, f"A better question {i}", f"Answer {i}"])
    return ws


def status(ws, pid: str) -> str:
    with ws.store.read() as con:
        return con.execute("SELECT status FROM proposals WHERE id = ?", [pid]).fetchall()[0][0]


def owed(ws, actor: str) -> list[str]:
    return review_queue_ids(ws, 0, status="pending", owed_by=actor)


def test_two_curators_each_decide_and_the_majority_holds(workspace_factory):
    ws = workspace(workspace_factory, overlap=2)
    assert owed(ws, "alice") == owed(ws, "bob") == ["p0", "p1", "p2", "p3"]
    accept(ws, "p0", actor="alice")
    assert status(ws, "p0") == "pending"  # one of two decisions: not yet an outcome
    assert "p0" not in owed(ws, "alice") and "p0" in owed(ws, "bob")
    accept(ws, "p0", actor="bob")
    assert status(ws, "p0") == "accepted"
    assert "p0" not in owed(ws, "bob") and "p0" not in owed(ws, "carol")  # resolved: owed by nobody

    reject(ws, "p1", actor="alice")
    reject(ws, "p1", actor="bob")
    assert status(ws, "p1") == "rejected"
    # a curator's new decision replaces their last and the outcome follows
    accept(ws, "p1", actor="bob")
    assert status(ws, "p1") == "pending"  # now a tie, and no owner among them


def test_a_tie_waits_for_an_owner_who_breaks_it(workspace_factory):
    ws = workspace(workspace_factory, overlap=2, owners=("olga",))
    accept(ws, "p0", actor="alice")
    reject(ws, "p0", actor="bob")
    assert status(ws, "p0") == "pending"
    assert "p0" not in owed(ws, "carol")  # two decisions are in: only an owner is owed the tie
    assert "p0" in owed(ws, "olga")
    reject(ws, "p0", actor="olga")
    assert status(ws, "p0") == "rejected"

    # an owner among the N curators breaks the tie at once
    accept(ws, "p1", actor="olga")
    reject(ws, "p1", actor="bob")
    assert status(ws, "p1") == "accepted"


def test_three_curators_majority_and_the_edit_it_carries(workspace_factory):
    ws = workspace(workspace_factory, overlap=3)
    accept(ws, "p0", actor="alice")
    edit(ws, "p0", "An edited question", "", "An edited answer", actor="bob")
    assert status(ws, "p0") == "pending"
    reject(ws, "p0", actor="carol")
    assert status(ws, "p0") == "edited"  # 2 accepts (one an edit) against 1 reject
    with ws.store.read() as con:
        text = con.execute("SELECT edited_instruction FROM proposals WHERE id = 'p0'").fetchall()[0][0]
    assert text == "An edited question"

    for who in ("alice", "bob"):
        reject(ws, "p1", actor=who)
    accept(ws, "p1", actor="carol")
    assert status(ws, "p1") == "rejected"


def test_bulk_decisions_count_each_curator_once_and_the_audit_trail_names_them(workspace_factory):
    ws = workspace(workspace_factory, overlap=2)
    assert bulk_decide(ws, 0, "accept", actor="alice") == 4
    assert bulk_decide(ws, 0, "accept", actor="alice") == 0  # alice owes nothing more
    assert review_counts(ws, 0) == {"quality": {"pending": 4}}
    assert bulk_decide(ws, 0, "accept", actor="bob") == 4
    assert review_counts(ws, 0) == {"quality": {"accepted": 4}}
    trail = audit_trail(ws, "p2")
    assert list(trail["actor"]) == ["alice", "bob"] and set(trail["action"]) == {"accepted"}
    # a reset clears every curator's decision: the proposals are owed again by both
    bulk_decide(ws, 0, "reset", status="accepted", actor="olga")
    assert owed(ws, "alice") == owed(ws, "bob") == ["p0", "p1", "p2", "p3"]


def test_a_policy_decides_alone_under_overlap(workspace_factory):
    ws = workspace(workspace_factory, overlap=2, owners=())
    accept(ws, "p0", actor="alice")
    reject(ws, "p0", actor="bob")  # a tie no owner will break
    assert apply_policy(ws, 0, "auto") == 4
    assert review_counts(ws, 0) == {"quality": {"accepted": 4}}


def test_overlap_one_keeps_the_latest_decision(workspace_factory):
    ws = workspace(workspace_factory, overlap=1)
    accept(ws, "p0", actor="alice")
    assert status(ws, "p0") == "accepted"
    reject(ws, "p0", actor="bob")
    assert status(ws, "p0") == "rejected"
    assert owed(ws, "carol") == ["p1", "p2", "p3"]


def test_build_takes_only_resolved_accepted_proposals(workspace_factory):
    ws = workspace(workspace_factory, overlap=2)
    accept(ws, "p0", actor="alice")
    accept(ws, "p0", actor="bob")  # resolved: accepted
    accept(ws, "p1", actor="alice")  # half decided: stays pending
    accept(ws, "p2", actor="alice")
    reject(ws, "p2", actor="bob")  # tied: pending
    report = build_next(ws, 0)
    assert report.removed == 1
    with ws.store.read() as con:
        texts = set(dataset(con, 1)["instruction"])
    assert "A better question 0" in texts
    assert not {"A better question 1", "A better question 2"} & texts


def test_an_older_store_opens_with_its_decisions_kept_as_curator_decisions(workspace_factory):
    from middo_core.store.schema import SCHEMA_VERSION
    from middo_core.workspace import open_workspace

    ws = workspace(workspace_factory, overlap=1)
    accept(ws, "p0", actor="alice")
    con = duckdb.connect(str(ws.store.path))
    con.execute("DROP TABLE curator_decisions")
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION - 1)])
    con.close()
    ws = open_workspace(ws.root)
    ws.config.review.overlap = 2
    accept(ws, "p1", actor="bob")
    with ws.store.read() as con:
        rows = con.execute("SELECT proposal_id, actor, decision FROM curator_decisions ORDER BY 1").fetchall()
    assert rows == [("p0", "alice", "accepted"), ("p1", "bob", "accepted")]
    assert status(ws, "p0") == "accepted" and status(ws, "p1") == "pending"


# --- agreement ---------------------------------------------------------------------------------

def test_fleiss_kappa_matches_the_worked_example():
    # Fleiss' kappa's standard worked example (Wikipedia, "Fleiss' kappa"): 10 subjects, 14 raters,
    # 5 categories; P-bar = 0.378, P_e = 0.213, kappa = 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa([[2, 0], [2, 0]]) is None  # one category throughout: undefined


def cohen_example_votes() -> pd.DataFrame:
    # Cohen's kappa's worked example (Wikipedia, "Cohen's kappa"): 50 items; both yes 20, A yes and
    # B no 5, A no and B yes 10, both no 15: p_o = 0.7, p_e = 0.5, kappa = 0.4
    pairs = [("accepted", "accepted")] * 20 + [("accepted", "rejected")] * 5 \
        + [("rejected", "accepted")] * 10 + [("rejected", "rejected")] * 15
    rows = []
    for i, (a, b) in enumerate(pairs):
        t = pd.Timestamp("2026-12-01 10:00") + pd.Timedelta(seconds=30 * i)
        rows += [(f"p{i}", "ann", a, t, "pending"), (f"p{i}", "ben", b, t + pd.Timedelta(seconds=5), "pending")]
    return pd.DataFrame(rows, columns=["proposal_id", "actor", "decision", "decided_at", "outcome"])


def test_cohen_and_fleiss_kappa_on_the_two_rater_example():
    votes = cohen_example_votes()
    assert cohen_kappa(["accept"] * 3, ["accept"] * 3) is None
    result = agreement_from(votes, votes[["actor", "decided_at"]], raters=2)
    assert result.items == 50 and result.per_category == {"accept": 55, "reject": 45}
    assert result.pairs.iloc[0]["cohen"] == pytest.approx(0.4)
    # with two raters Fleiss' kappa is Scott's pi: (0.7 - 0.505) / (1 - 0.505)
    assert result.fleiss == pytest.approx(0.195 / 0.495)
    ann = result.curators.set_index("curator").loc["ann"]
    assert (ann["accepted"], ann["rejected"]) == (25, 25)
    assert ann["median_s_between"] == 30 and ann["decisions_per_hour"] == pytest.approx(120)


def test_curator_speed_from_decision_times():
    t0 = pd.Timestamp("2026-12-01 09:00")
    times = pd.DataFrame({"actor": ["a"] * 4 + ["b"],
                          "decided_at": [t0, t0 + pd.Timedelta(seconds=10), t0 + pd.Timedelta(seconds=20),
                                         t0 + pd.Timedelta(seconds=90), t0]})
    speed = curator_speed(times).set_index("curator")
    assert speed.loc["a", "decisions"] == 4 and speed.loc["a", "median_s_between"] == 10
    assert speed.loc["a", "decisions_per_hour"] == pytest.approx(3600 / 30)
    assert pd.isna(speed.loc["b", "decisions_per_hour"])  # one decision: no speed yet


def test_agreement_of_a_workspace_with_three_curators(workspace_factory):
    ws = workspace(workspace_factory, overlap=3)
    for pid, said in {"p0": "aar", "p1": "aaa", "p2": "rrr", "p3": "rra"}.items():
        for who, choice in zip(("alice", "bob", "carol"), said, strict=True):
            (accept if choice == "a" else reject)(ws, pid, actor=who)
    result = review_agreement(ws, 0)
    assert result.raters == 3 and result.items == 4
    assert result.per_category == {"accept": 6, "reject": 6}
    # P_i = 1/3, 1, 1, 1/3 -> P-bar = 2/3; p = (1/2, 1/2) -> P_e = 1/2; kappa = 1/3
    assert result.fleiss == pytest.approx(1 / 3)
    assert len(result.pairs) == 3 and set(result.curators["curator"]) == {"alice", "bob", "carol"}
    carol = result.curators.set_index("curator").loc["carol"]
    assert carol["with_outcome"] == pytest.approx(0.5)  # she agreed with the outcome on p1 and p2

    # `middo status --json` carries the same figures, and its text names the kappa
    from typer.testing import CliRunner

    from middo_core.cli import app

    done = CliRunner().invoke(app, ["status", str(ws.root), "--json"])
    assert done.exit_code == 0, done.output
    review = json.loads(done.output[done.output.index("{"):])["review"]
    assert review["overlap"] == 3 and review["owners"] == ["olga"]
    found = review["agreement"]["0"]
    assert found["fleiss_kappa"] == pytest.approx(1 / 3) and found["proposals_rated"] == 4
    assert {c["curator"]: c["rejected"] for c in found["curators"]} == {"alice": 2, "bob": 2, "carol": 2}
    assert len(found["pairs"]) == 3
    done = CliRunner().invoke(app, ["status", str(ws.root)])
    assert "review of iteration 0: 3 curator(s), overlap 3, Fleiss' kappa 0.33 on 4 proposals" in done.output


# --- the CLI -------------------------------------------------------------------------------------

def test_middo_review_lists_what_its_actor_still_owes(workspace_factory):
    from typer.testing import CliRunner

    from middo_core.cli import app

    ws = workspace(workspace_factory, overlap=2)
    runner = CliRunner()

    def middo(*args: str):
        done = runner.invoke(app, ["review", str(ws.root), "--iteration", "0", *args])
        assert done.exit_code == 0, done.output
        return done.output

    out = middo("--accept", "p0", "--reject", "p1", "--actor", "alice")
    assert "decided by 2 curators" in out and "alice still owes 2 proposal(s)." in out
    assert "p0" not in out.split("owes")[1] and "p2" in out
    out = middo("--actor", "bob")
    assert "bob still owes 4 proposal(s)." in out
    out = middo("--bulk", "accept", "--actor", "bob")
    assert "accept: 4 proposals" in out and "bob still owes 0 proposal(s)." in out
    # p0 accepted by both; p1 tied and waiting for the owner; p2 and p3 half decided
    assert "1 accepted, 3 pending" in out
    assert "agreement: Fleiss' kappa" in out and "on 2 proposals x 2 curators (3 accept, 1 reject)" in out
    data = json.loads(middo("--actor", "olga", "--json"))
    assert data["overlap"] == 2 and data["owed"] == {"actor": "olga", "proposals": ["p1", "p2", "p3"]}


def test_an_owner_by_access_role_breaks_a_tie(workspace_factory):
    ws = workspace(workspace_factory, overlap=2, owners=())
    ws.config.access.roles = {"lead@example.org": "owner", "@example.org": "curator"}
    accept(ws, "p0", actor="ann@example.org")
    reject(ws, "p0", actor="ben@example.org")
    assert status(ws, "p0") == "pending"
    assert "p0" not in owed(ws, "cy@example.org") and "p0" in owed(ws, "lead@example.org")
    reject(ws, "p0", actor="lead@example.org")
    assert status(ws, "p0") == "rejected"
