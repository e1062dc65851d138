"""The Studio in a real browser: `middo studio` on loopback, driven by headless Chromium."""

from __future__ import annotations

import json
import re
import time

import pytest
from browser import chromium_page, shot, studio_server, wait_idle

from middo_core.data import import_file
from middo_core.jobs import active_jobs
from middo_core.store.canaries import current_verdicts
from middo_core.store.iterations import get_iteration
from middo_core.store.proposals import put_proposals

NASTY = ("Summarise: <script>window.__pwned = 1; alert(1)</script> "
         "<img src=\"http://127.0.0.1:9/img.png\" onerror=\"window.__pwned = 2\"> "
         "![x](http://127.0.0.1:9/pixel.png) [link](http://127.0.0.1:9/click)")

pytestmark = [pytest.mark.browser, pytest.mark.slow]



def read_one(ws, sql: str, params: list):
    with ws.store.read() as con:  # waits while the Studio holds the file
        return con.execute(sql, params).fetchall()


def assert_inert(page) -> None:
    """No script from the data ran, no image or link from it exists in the page."""
    assert page.evaluate("() => window.__pwned === undefined")
    assert page.locator('img[src*="127.0.0.1:9"]').count() == 0
    assert page.locator('a[href*="127.0.0.1:9"]').count() == 0


def wait_for_change(read, before, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = read()
        except Exception:  # the element is being redrawn
            value = before
        if value != before:
            return value
        time.sleep(0.05)
    return before


def flagged_count(page, axis: str) -> int:
    """The 'N flagged (x%)' line under the m slider of `axis`."""
    column = page.locator(f'[data-testid="stColumn"]:has(.st-key-m_{axis}_0)').first
    text = column.locator("p", has_text=re.compile(r"flagged \(")).last.inner_text()
    return int(text.split()[0].replace(",", ""))


def test_demo_workspace_from_diagnosis_to_the_next_version(browser_ready, tmp_path, tiny_model):
    from middo_core.data.demo import create_demo_workspace

    ws = create_demo_workspace(tmp_path / "demo", size=60)
    ws.config.base_model = tiny_model
    ws.config.loop.autostart = False  # this test walks the manual path: diagnose by a click
    ws.save_config()
    nasty = tmp_path / "nasty.jsonl"
    nasty.write_text(json.dumps({"instruction": NASTY, "output": "Reply " + NASTY}) + "\n")
    import_file(ws, nasty)

    events: dict[str, list] = {"dialogs": [], "requests": []}
    with studio_server(ws.root, tmp_path / "studio.log") as url, chromium_page() as page:
        page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
        page.on("request", lambda r: events["requests"].append(r.url) if ":9/" in r.url else None)

        # Diagnose: start it as a background job and watch it finish
        page.goto(url + "/diagnose")
        wait_idle(page)
        page.get_by_text("No diagnosis yet for iteration 0").wait_for()
        shot(page, "01-diagnose-empty")
        page.get_by_role("button", name="Diagnose D(0)").click()  # a background job
        page.get_by_text("Union flagged").wait_for(timeout=240_000)
        # the run goes on to draw the map, and its end reruns the page: let it end first, so that
        # the slider moved below is not reset by that rerun
        deadline = time.monotonic() + 240
        while active_jobs(ws):
            assert time.monotonic() < deadline, "the diagnosis did not finish"
            time.sleep(0.5)
        # the banner's next poll sees the run ended and reruns the page without it
        page.locator(".st-key-activity_banner").wait_for(state="detached", timeout=60_000)
        wait_idle(page)
        shot(page, "02-diagnose")
        # each axis's health beside its distribution; the one at chance on this data says so
        page.get_by_text(re.compile(r"AUROC \d\.\d\d")).nth(2).wait_for()  # drawn as the page fills
        page.get_by_text(re.compile(r"near chance on this data .* tunes noise")).first.wait_for()

        # Move the diversity m: the count under its slider changes, nothing is recomputed
        before = flagged_count(page, "diversity")
        thumb = page.locator('.st-key-m_diversity_0 input[type="range"]')
        after = before
        for _ in range(3):  # End again if a rerun redrew the slider and took its focus (End is idempotent)
            # mid-rerun the old slider and the new one can both be on the page: wait for one
            page.wait_for_function(
                "() => document.querySelectorAll('.st-key-m_diversity_0 input[type=\"range\"]').length === 1")
            thumb.focus()
            page.keyboard.press("End")
            after = wait_for_change(lambda: flagged_count(page, "diversity"), before, timeout_s=10)
            if after != before:
                break
        assert after > before
        page.get_by_role("button", name="Save selection").click()
        wait_idle(page)
        page.get_by_text("Saved selection").wait_for()
        shot(page, "03-selection-saved")

        # Proposals for two flagged samples, one of them the sample full of markup
        with ws.store.read() as con:
            flagged = get_iteration(con, 0)["counts"]["flagged_ids"]["diversity"]
        nasty_id = read_one(ws, "SELECT id FROM samples WHERE instruction = ?", [NASTY])[0][0]
        sources = [nasty_id, next(i for i in flagged if i != nasty_id)]
        with ws.store.write() as con:
            put_proposals(con, [
                {"id": f"e2e-{n}", "iteration": 0, "axis": "quality", "source_id": src,
                 "instruction": f"Rewritten prompt number {n}: {NASTY if n == 0 else 'plain'}",
                 "input": "", "output": f"A fresh answer {n}.", "status": "pending"}
                for n, src in enumerate(sources)])

        # Review: 'a' accepts the first (keyboard shortcut), the Reject button the second
        page.goto(url + "/review")
        wait_idle(page)
        page.get_by_text("0 of 2 decided").wait_for()
        page.get_by_role("button", name="Accept (a)").wait_for()
        page.get_by_text("<script>window.__pwned").first.wait_for()
        wait_idle(page)
        shot(page, "04-review")
        # the markup in the proposal and its source is shown as text, inert
        assert page.get_by_text("<script>window.__pwned").count() > 0
        assert_inert(page)
        page.locator("h1").first.click()  # focus the page, not a text field
        page.keyboard.press("a")
        page.get_by_text("1 of 2 decided").wait_for()
        wait_idle(page)
        assert read_one(ws, "SELECT status FROM proposals WHERE id = 'e2e-0'", [])[0][0] == "accepted"
        page.get_by_text("Proposal 1 of 1").wait_for()  # the accepted one left the pending queue
        # the second proposal is on screen: the Reject button now belongs to it, not the first
        page.get_by_text("Rewritten prompt number 1: plain").first.wait_for()
        wait_idle(page)
        # a verdict on the flag itself, apart from the proposal
        page.locator('[class*="st-key-verdict_e2e-1"] button', has_text="Real problem").click()
        def verdicts():
            with ws.store.read() as con:
                return current_verdicts(con, 0)[["sample_id", "axis", "verdict"]].values.tolist()

        assert wait_for_change(verdicts, []) == [[sources[1], "quality", "real"]]
        # the rerun after the verdict has drawn it from the store (its control's key names it):
        # a click sent before that run ends could be lost in it
        page.locator('[class*="st-key-verdict_e2e-1_Real"]').wait_for()
        wait_idle(page)

        def status_of_e2e_1() -> str:
            return read_one(ws, "SELECT status FROM proposals WHERE id = 'e2e-1'", [])[0][0]

        # Under two loaded test workers Streamlit has dropped this click, right after the
        # verdict's rerun, in one full-suite run of three: click again while the store still says
        # pending (a late first click then meets the page's check of the status it showed)
        for _ in range(3):
            page.get_by_role("button", name="Reject (r)").click()
            if wait_for_change(status_of_e2e_1, "pending", timeout_s=10) == "rejected":
                break
        assert status_of_e2e_1() == "rejected"
        shot(page, "05-review-rejected")
        page.get_by_text("2 of 2 decided").wait_for()

        # Build D(1) and find the accepted rewrite in it, once the diagnosis has drawn its map: a
        # build while a run still writes the workspace is refused
        deadline = time.monotonic() + 240
        while read_one(ws, "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')", [])[0][0]:
            assert time.monotonic() < deadline, "the diagnosis run did not end"
            time.sleep(0.5)
        page.goto(url + "/iterations")
        wait_idle(page)
        page.get_by_role("button", name="Build D(1)").click()
        page.get_by_text("D(1) is built").wait_for()
        shot(page, "06-iterations")
        rows = read_one(ws, """SELECT s.instruction FROM dataset_members m JOIN samples s ON s.id = m.sample_id
                               WHERE m.iteration = 1 AND s.proposal_id = 'e2e-0'""", [])
        assert rows and rows[0][0].startswith("Rewritten prompt number 0")

        page.goto(url + "/")
        wait_idle(page)
        page.get_by_text(re.compile(r"Samples 1–\d+ of [\d,]+ in D\(1\)")).wait_for()
        page.get_by_label("Search instruction, input and output").fill("Rewritten prompt number 0")
        page.keyboard.press("Enter")
        page.get_by_text("Samples 1–1 of 1 in D(1)").wait_for()
        shot(page, "07-data-d1")

        assert_inert(page)
    assert events["dialogs"] == [] and events["requests"] == []
