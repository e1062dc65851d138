"""Histogram drill-down in a real browser: a click on a bar of the Diagnose page lists the samples in
that bin (their count, then a table), and one of them opens whole."""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser import chromium_missing, chromium_page, shot, studio_server, wait_idle
from studio_helpers import seed_samples, write_signals

from middo_core import summaries
from middo_core.selection import SignalTable
from middo_core.store.iterations import upsert_iteration
from middo_core.store.samples import add_members

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def tallest_bin(values: np.ndarray, bins: int) -> tuple[int, int, float, float]:
    """(index, count, lo, hi) of the fullest bar, binned as the Diagnose page bins a signal."""
    edges = summaries.shared_edges(values, bins=bins)
    counts = summaries.histogram(values, edges)
    i = int(np.argmax(counts))
    return i, int(counts[i]), float(edges[i]), float(edges[i + 1])


def chart(page, title: str):
    return page.locator('[data-testid="stPlotlyChart"]').filter(has_text=title).first


def click_bar(page, title: str, index: int) -> None:
    """Click the middle of bar `index` of the chart titled `title` (the current iteration's trace),
    once the bar has stopped moving (an opening expander lays its charts out again)."""
    bar = chart(page, title).locator(".barlayer .trace").last.locator(".point").nth(index)
    bar.wait_for()
    box, before = bar.bounding_box(), None
    while box != before:
        page.wait_for_timeout(300)
        before, box = box, bar.bounding_box()
    bar.click(force=True)  # plotly's drag layer on top of the bars takes the click, as for a user


def count_line(page, timeout: float = 30_000) -> str:
    line = page.get_by_text(re.compile(r"^[\d,]+ samples with .* in [\d.]+–[\d.]+, iteration \d+$")).first
    line.wait_for(timeout=timeout)
    return line.inner_text()


def listed(page) -> tuple[list[str], list[str]]:
    """Headers and row texts of the drill-down's table."""
    grid = page.locator(".st-key-drilldown [data-testid='stDataFrame']").first
    grid.locator('[role="columnheader"]').first.wait_for(state="attached")
    return grid.locator('[role="columnheader"]').all_inner_texts(), grid.locator('[role="row"]').all_inner_texts()[1:]


def add_iteration_1(ws, samples) -> None:
    with ws.store.write() as con:
        add_members(con, 1, [s.id for s in samples])
    write_signals(ws, 1, [s.id for s in samples], seed=1)


def choose_iteration(page, number: int) -> None:
    page.locator(".st-key-iteration").click()
    page.get_by_role("option", name=f"Iteration {number} · D({number})").click()
    page.get_by_role("heading", name=f"Diagnose D({number})").wait_for(timeout=30_000)
    wait_idle(page)


def test_a_click_on_a_bar_lists_its_samples_and_opens_one(tmp_path, workspace_factory):
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    ws = workspace_factory("drill")
    samples = seed_samples(ws)
    frame = write_signals(ws, 0, [s.id for s in samples])
    with ws.store.write() as con:
        upsert_iteration(con, 0, status="diagnosed")
    post_bin, post_n, lo, hi = tallest_bin(frame["loss_post"].to_numpy(), 50)
    div_bin, div_n, *_ = tallest_bin(frame["diversity"].to_numpy(), 50)
    assert 1 < post_n < len(samples)
    m = ws.config.selection  # the page's m's before any slider moves
    selection = SignalTable(frame).select(m.m_complexity, m.m_diversity, m.m_quality)
    flags = dict(zip(selection.ids, summaries.flag_labels(selection.ids, selection.masks, selection.ids), strict=True))
    assert {"not flagged", "diversity"} <= set(flags.values())

    with studio_server(ws.root, tmp_path / "studio.log") as url, chromium_page(1500, 1100) as page:
        page.goto(url + "/diagnose")
        wait_idle(page)
        chart(page, "L_post per sample, iteration 0").locator(".barlayer .point").first.wait_for(timeout=60_000)
        assert page.locator(".st-key-drilldown").count() == 0

        # L_post's fullest bar: the count, then a row per sample in it, each value inside the bin
        click_bar(page, "L_post per sample, iteration 0", post_bin)
        shown = re.fullmatch(r"(\d+) samples with L_post in ([\d.]+)–([\d.]+), iteration 0", count_line(page))
        assert shown and int(shown[1]) == post_n
        assert float(shown[2]) == pytest.approx(lo, abs=0.005) and float(shown[3]) == pytest.approx(hi, abs=0.005)
        wait_idle(page)
        headers, rows = listed(page)
        assert {"id", "instruction", "L_post", "flagged"} <= set(headers)
        assert rows and len(rows) <= post_n  # the grid draws the rows in view
        for row in rows:  # id, instruction, L_post (its only number with three decimals), flag
            sid = next(i for i in flags if row.startswith(i))
            assert "Question " in row and row.endswith(flags[sid])
            (value,) = re.findall(r"\d+\.\d{3}", row)
            assert lo - 5e-4 <= float(value) <= hi + 5e-4
        shot(page, "drilldown-01-listed")

        # open one: the whole sample with its signals
        in_bin = frame[(frame["loss_post"] >= lo) & (frame["loss_post"] < hi)]
        first = in_bin.sort_values(["loss_post", "sample_id"]).iloc[0]
        text = next(s for s in samples if s.id == first["sample_id"])
        page.locator(".st-key-drilldown input[role='combobox']").first.click()
        page.keyboard.press("ArrowDown")  # an empty combobox opens on a key
        options = page.get_by_role("option")
        options.first.wait_for()
        assert options.count() == post_n  # every sample of the bin is listed (one page)
        page.get_by_role("option", name=re.compile(re.escape(first["sample_id"]))).click()
        wait_idle(page)
        page.locator('[data-testid="stText"]').filter(has_text=text.output).first.wait_for()
        page.get_by_text(re.compile(rf"^Sample {first['sample_id']} · seed · .*loss_post {first['loss_post']:.3f}")).wait_for()
        shot(page, "drilldown-02-opened")

        # another chart's bar replaces the list; Close hides it
        click_bar(page, "Diversity score per sample, iteration 0", div_bin)
        page.get_by_text(re.compile(rf"^{div_n} samples with diversity in ")).wait_for(timeout=30_000)
        wait_idle(page)
        assert page.locator(".st-key-drilldown").count() == 1
        page.locator(".st-key-drilldown").get_by_role("button", name="Close").click()
        page.locator(".st-key-drilldown").wait_for(state="detached", timeout=30_000)
        shot(page, "drilldown-03-closed")

        # a quality metric's bar lists under the six metrics; another iteration clears the list
        add_iteration_1(ws, samples)
        metric_bin, metric_n, *_ = tallest_bin(frame["response_clarity"].to_numpy(), 11)
        page.get_by_text("Quality: the six metrics").click()
        click_bar(page, "response clarity, iteration 0", metric_bin)
        page.get_by_text(re.compile(rf"^{metric_n} samples with response clarity in .*, iteration 0$")).wait_for(timeout=30_000)
        page.locator(".st-key-drilldown").scroll_into_view_if_needed()
        shot(page, "drilldown-04-metric")
        choose_iteration(page, 1)
        page.locator(".st-key-drilldown").wait_for(state="detached", timeout=30_000)
        choose_iteration(page, 0)  # cleared, not hidden: back on iteration 0 there is no list
        chart(page, "L_post per sample, iteration 0").locator(".barlayer .point").first.wait_for()
        page.wait_for_timeout(1500)
        assert page.locator(".st-key-drilldown").count() == 0
