"""Compare versions in a real browser: `middo studio` on loopback, headless Chromium, a D(1) built
from proposals a curator accepted and edited."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser import chromium_page, shot, studio_server, wait_idle
from studio_helpers import write_proposals

from middo_core.build import build_next
from middo_core.review import accept, edit

pytestmark = [pytest.mark.browser, pytest.mark.slow]



def choose(page, key: str, option: str) -> None:
    """Pick `option` in the selectbox with widget key `key`."""
    page.locator(f".st-key-{key} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def open_compare(page, url: str) -> None:
    page.goto(url + "/")
    wait_idle(page)
    page.get_by_role("tab", name="Compare versions").click()
    wait_idle(page)


def test_compare_d0_and_d1_filter_read_the_diff_and_download(browser_ready, studio_ws, tmp_path):
    ws, samples = studio_ws
    with studio_server(ws.root, tmp_path / "studio.log") as url, chromium_page() as page:
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        open_compare(page, url)
        page.get_by_text("Only D(0) exists. Build D(1) on the Iterations page to compare versions.").wait_for()

        ids = write_proposals(ws, samples)  # complexity (text full of markup), quality, diversity, complexity
        for pid in ids[:3]:
            accept(ws, pid, actor="alice")
        edit(ws, ids[3], "What is three plus three, please?", "", "Six.", actor="alice")
        build_next(ws, 0)
        open_compare(page, url)

        # the sidebar's iteration is D(1): A defaults to D(0), B to D(1), and the counts show
        page.get_by_text("D(0): 300 samples · D(1): 301 samples").wait_for()
        rewritten = page.locator('[data-testid="stMetric"]', has_text="Rewritten")
        assert rewritten.locator('[data-testid="stMetricValue"]').inner_text() == "3"
        added = page.locator('[data-testid="stMetric"]', has_text="Added")
        assert added.locator('[data-testid="stMetricValue"]').inner_text() == "1"
        page.get_by_text("Changes 1–4 of 4").wait_for()
        shot(page, "diff-01-counts")

        # only the complexity axis: the one simplified rewrite, old beside new, words marked
        choose(page, "diff_axis", "complexity")
        page.get_by_text("Changes 1–1 of 1").wait_for()
        page.get_by_text("rewritten · edited").wait_for(state="detached")  # the unfiltered list goes
        wait_idle(page)
        assert page.get_by_text("rewritten · complexity").count() == 1
        assert page.get_by_text("added · diversity").count() == 0
        page.locator(".middo-diff ins", has_text="simpler").first.wait_for()
        assert page.locator(".middo-diff del", has_text="times").count() > 0
        # the sample's markup is shown as text, inert
        assert page.get_by_text("<script>alert('x')</script>").count() > 0
        assert page.locator('img[src*="127.0.0.1:9"]').count() == 0
        page.locator(".middo-diff").first.scroll_into_view_if_needed()
        shot(page, "diff-02-complexity")

        with page.expect_download() as info:
            page.get_by_role("button", name=re.compile(r"Download 1 change \(JSONL\)")).click()
        download = info.value
        assert download.suggested_filename == "changes-D0-D1-complexity.jsonl"
        rows = [json.loads(line) for line in Path(download.path()).read_text().splitlines()]
        assert [(r["kind"], r["axis"]) for r in rows] == [("rewritten", "complexity")]
        assert rows[0]["old_id"] == samples[0].id
        assert rows[0]["new_instruction"].startswith("A simpler question 0")
    assert dialogs == []
