"""Agreement between curators under review overlap, and each curator's counts and speed.

Agreement is on accept (an edit counts as an accept) against reject, the two outcomes the rule
in middo_core/overlap.py counts. Fleiss' kappa takes the first N decisions (N = review.overlap, at
least 2) of every proposal that has that many; Cohen's kappa is given for each pair of curators
on the proposals both decided. A policy's decisions are left out: a policy is not a curator.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from middo_core.overlap import ACCEPTING, POLICY, overlap
from middo_core.store import decisions as d
from middo_core.workspace import Workspace

CATEGORIES = ("accept", "reject")


def fleiss_kappa(table: np.ndarray) -> float | None:
    """Fleiss' kappa of an items x categories table of counts, every row summing to the same
    number of raters (Fleiss 1971). None where it is undefined (one category throughout).
    statsmodels has it, but is not a dependency of the project for this one formula."""
    table = np.asarray(table, dtype=float)
    n_items = table.shape[0]
    raters = table.sum(axis=1)
    if n_items == 0 or raters[0] < 2 or not np.all(raters == raters[0]):
        return None
    n = raters[0]
    p_item = ((table ** 2).sum(axis=1) - n) / (n * (n - 1))
    p_cat = table.sum(axis=0) / (n_items * n)
    p_bar, p_e = p_item.mean(), float((p_cat ** 2).sum())
    return None if p_e >= 1.0 else float((p_bar - p_e) / (1 - p_e))


def cohen_kappa(a, b) -> float | None:
    """Cohen's kappa of two raters' labels (CATEGORIES) on the same items (scikit-learn); None
    where undefined."""
    from sklearn.metrics import cohen_kappa_score

    if len(a) == 0:
        return None
    # as 0/1 codes: scikit-learn's checks on 50,000 string labels took ~0.9 s, on codes ~0.05 s
    a, b = ((np.asarray(x, dtype=object) == CATEGORIES[1]).astype(np.int8) for x in (a, b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined kappa: a warning and nan
        k = float(cohen_kappa_score(a, b, labels=[0, 1]))
    return None if np.isnan(k) else k


@dataclass
class Agreement:
    raters: int                    # decisions per proposal counted (review.overlap, at least 2)
    items: int                     # proposals with that many decisions
    per_category: dict[str, int]   # decisions per category among them
    fleiss: float | None
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)     # curator_a, curator_b, items, cohen
    curators: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per curator


def _category(decision: pd.Series) -> pd.Series:
    return decision.isin(ACCEPTING).map({True: "accept", False: "reject"})


def curator_speed(times: pd.DataFrame) -> pd.DataFrame:
    """actor -> decisions, decisions_per_hour, median_s_between, from each decision's time in the
    audit trail (a bulk action counts each proposal it decided, all at one instant)."""
    rows = []
    for actor, group in times.groupby("actor", sort=True):
        at = pd.to_datetime(group["decided_at"]).sort_values()
        gaps = at.diff().dropna().dt.total_seconds()
        mean = gaps.mean() if len(gaps) else None
        rows.append({"curator": actor, "decisions": len(at),
                     "decisions_per_hour": 3600.0 / mean if mean else None,
                     "median_s_between": float(gaps.median()) if len(gaps) else None})
    return pd.DataFrame(rows, columns=["curator", "decisions", "decisions_per_hour", "median_s_between"])


def agreement_from(votes: pd.DataFrame, times: pd.DataFrame, raters: int) -> Agreement:
    """The figures from an iteration's standing decisions (store.decisions.iteration_votes) and the
    times of its decisions (store.decisions.decision_times)."""
    votes = votes[~votes["actor"].str.startswith(POLICY)].copy()
    votes["category"] = _category(votes["decision"])
    first = votes.groupby("proposal_id", sort=False).head(raters)
    sizes = first.groupby("proposal_id")["actor"].transform("size")
    rated = first[sizes == raters]
    table = rated.groupby(["proposal_id", "category"]).size().unstack(fill_value=0) \
        .reindex(columns=CATEGORIES, fill_value=0)
    per_category = {c: int(table[c].sum()) for c in CATEGORIES}

    pairs = []
    by_actor = {a: g.set_index("proposal_id")["category"] for a, g in votes.groupby("actor")}
    for a, b in combinations(sorted(by_actor), 2):
        both = by_actor[a].index.intersection(by_actor[b].index)
        if len(both):
            pairs.append({"curator_a": a, "curator_b": b, "items": len(both),
                          "cohen": cohen_kappa(by_actor[a][both].to_numpy(object),
                                               by_actor[b][both].to_numpy(object))})

    resolved = votes[votes["outcome"].isin(("accepted", "edited", "rejected"))]
    with_outcome = (_category(resolved["outcome"]) == resolved["category"]).groupby(resolved["actor"]).mean()
    counts = votes.groupby(["actor", "decision"]).size().unstack(fill_value=0) \
        .reindex(columns=["accepted", "edited", "rejected"], fill_value=0)
    speed = curator_speed(times[~times["actor"].str.startswith(POLICY)]).set_index("curator")
    curators = pd.DataFrame({
        "curator": counts.index, "accepted": counts["accepted"].to_numpy(),
        "edited": counts["edited"].to_numpy(), "rejected": counts["rejected"].to_numpy(),
        "with_outcome": [with_outcome.get(a) for a in counts.index],
        "decisions_per_hour": [speed["decisions_per_hour"].get(a) for a in counts.index],
        "median_s_between": [speed["median_s_between"].get(a) for a in counts.index],
    })
    return Agreement(raters=raters, items=len(table), per_category=per_category,
                     fleiss=fleiss_kappa(table.to_numpy()) if len(table) else None,
                     pairs=pd.DataFrame(pairs, columns=["curator_a", "curator_b", "items", "cohen"]),
                     curators=curators)


def review_agreement(ws: Workspace, iteration: int) -> Agreement:
    """Agreement between the curators of one iteration's proposals, and each curator's figures."""
    with ws.store.read() as con:
        votes = d.iteration_votes(con, iteration)
        times = d.decision_times(con, iteration)
    return agreement_from(votes, times, max(2, overlap(ws)))
