from __future__ import annotations

import numpy as np
import pandas as pd

from middo_core.selection import SignalTable, auto_m, explain, select


def frame(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pre = rng.normal(2.0, 0.5, n)
    return pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(n)],
        "loss_pre": pre,
        "loss_post": pre * 0.6 + rng.normal(0, 0.2, n),
        "diversity": rng.normal(0.7, 0.1, n),
        "quality": rng.normal(6.0, 1.0, n),
    })


def test_threshold_is_mean_plus_m_sigma_and_complexity_needs_both_losses():
    f = frame()
    sel = select(f, m_complexity=1.0, m_diversity=-1.5, m_quality=-1.5)
    tau_pre = f.loss_pre.mean() + f.loss_pre.std(ddof=0)
    tau_post = f.loss_post.mean() + f.loss_post.std(ddof=0)
    assert np.isclose(sel.thresholds["tau_loss_pre"], tau_pre)
    expected = set(f.sample_id[(f.loss_pre > tau_pre) & (f.loss_post > tau_post)])
    assert set(sel.complex_ids) == expected
    # a sample high before training but low after is not complex
    assert not expected & set(f.sample_id[f.loss_post <= tau_post])
    tau_q = f.quality.mean() - 1.5 * f.quality.std(ddof=0)
    assert set(sel.low_ids) == set(f.sample_id[f.quality < tau_q])


def test_moving_m_changes_counts_monotonically():
    f = frame()
    counts = [select(f, m_complexity=m).counts()["flagged"]["complexity"] for m in (0, 0.5, 1, 2)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_counts_overlaps_and_union_add_up():
    c = select(frame(), 0.5, -1.0, -1.0).counts()
    flagged = c["flagged"]
    assert c["union"] <= sum(flagged.values())
    assert c["union"] >= max(flagged.values())
    assert 0 < c["union_fraction"] < 1


def test_missing_values_are_never_flagged_and_no_spread_warns():
    f = frame(50)
    f.loc[0, ["loss_pre", "loss_post"]] = np.nan
    f["diversity"] = 0.5
    sel = select(f, m_complexity=-10)  # tau far below: every finite sample passes
    assert "s0" not in sel.complex_ids and len(sel.complex_ids) == 49
    assert any("spread" in w for w in sel.warnings)


def test_auto_m_reaches_target_band_with_mildest_m():
    f = frame(5000)
    sel = auto_m(f, target=0.15)
    frac = sel.counts()["union_fraction"]
    assert abs(frac - 0.15) <= 0.025
    assert sel.m["complexity"] >= 0 and sel.m["diversity"] <= 0


def test_ablation_axes_only_flag_the_kept_axes():
    sel = select(frame(), axes=("diversity", "quality"))
    assert set(sel.masks) == {"diversity", "quality"} and sel.complex_ids == []


def test_explain_names_the_reason():
    f = frame()
    table = SignalTable(f)
    sel = table.select(1.0, -1.5, -1.5)
    sid = sel.complex_ids[0]
    words = explain(f.set_index("sample_id").loc[sid], sel, table)
    assert words and "before" in words[0] and "top" in words[0]
