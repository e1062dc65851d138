"""A newcomer's first minutes: `make demo` opens the Studio on a fresh demo workspace, and the loop
starts moving without a click; the pages fill in as each step lands; the run can be cancelled."""

from __future__ import annotations

import time

import pytest
from browser import chromium_page, shot, studio_server, wait_idle

from middo_core.data.demo import create_demo_workspace
from middo_core.store.runs import list_runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]



def fresh_demo(tmp_path, tiny_model, size: int = 60):
    ws = create_demo_workspace(tmp_path / "demo", size=size)
    ws.config.base_model = tiny_model  # the packaged model takes minutes here; the flow is the same
    ws.save_config()
    return ws


def runs(ws) -> list[tuple[str, str]]:
    with ws.store.read() as con:
        frame = list_runs(con)
    return list(zip(frame["kind"], frame["status"], strict=True))


def test_a_fresh_demo_starts_iteration_0_and_the_pages_fill_in(browser_ready, tmp_path, tiny_model):
    ws = fresh_demo(tmp_path, tiny_model)
    with studio_server(ws.root, tmp_path / "studio.log") as url, chromium_page() as page:
        page.goto(url + "/diagnose")
        wait_idle(page)
        # no click: the banner says iteration 0 is running, and the run is in the store
        banner = page.locator(".st-key-activity_banner")
        banner.get_by_text("Iteration 0 is running in the background").wait_for(timeout=30_000)
        assert [kind for kind, _ in runs(ws)] == ["first_iteration"]
        banner.get_by_text("step 1 of 3, train M(0)").wait_for(timeout=60_000)
        shot(page, "first-look-01-banner")
        # the distributions appear on the open page once the diagnosis is stored, with no reload
        page.get_by_text("Union flagged").wait_for(timeout=300_000)
        page.locator('[data-testid="stPlotlyChart"]').nth(2).wait_for(timeout=30_000)
        shot(page, "first-look-02-diagnose")
        # the map was computed with the diagnosis: the Map page draws it without a button
        page.goto(url + "/map")
        wait_idle(page)
        page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=120_000)
        assert page.get_by_role("button", name="Compute the UMAP map").count() == 0
        shot(page, "first-look-03-map")
        # the run ends after the evaluation: the banner goes and the scores are on Iterations
        deadline = time.monotonic() + 300
        while runs(ws)[0][1] in ("queued", "running"):
            assert time.monotonic() < deadline, "iteration 0 did not finish"
            time.sleep(1)
        assert runs(ws) == [("first_iteration", "done")]
        page.goto(url + "/iterations")
        wait_idle(page)
        page.get_by_text("Benchmark scores per iteration").wait_for()
        assert page.get_by_text("No scores yet").count() == 0
        assert page.locator(".st-key-activity_banner").count() == 0


def test_the_newcomer_can_cancel_it_and_nothing_starts_again(browser_ready, tmp_path, tiny_model):
    ws = fresh_demo(tmp_path, tiny_model, size=400)  # training long enough to be cancelled midway
    with studio_server(ws.root, tmp_path / "studio.log") as url, chromium_page() as page:
        page.goto(url + "/")
        wait_idle(page)
        banner = page.locator(".st-key-activity_banner")
        banner.get_by_text("step 1 of 3, train M(0)").wait_for(timeout=60_000)
        banner.get_by_role("button", name="Cancel").click()
        deadline = time.monotonic() + 60
        while runs(ws)[0][1] in ("queued", "running"):
            assert time.monotonic() < deadline, "the run was not cancelled"
            time.sleep(0.5)
        assert runs(ws) == [("first_iteration", "cancelled")]
        page.reload()  # a new session on a workspace with work in it: nothing starts by itself
        wait_idle(page)
        page.get_by_text("Data").first.wait_for()
        page.wait_for_timeout(2000)
        assert runs(ws) == [("first_iteration", "cancelled")]
        assert page.locator(".st-key-activity_banner").count() == 0
