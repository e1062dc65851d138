"""The README's tour: each page of the Studio on the demo, checked and photographed in Chromium.

In `make test` it runs on a small demo with a tiny in-process model and writes its pictures to
test-artifacts/tour/. `make tour` runs the same test on the full demo with the packaged model and
writes them to docs/images/, where the README shows them (MIDDO_TOUR_DIR, MIDDO_TOUR_MODEL and
MIDDO_TOUR_SIZE say where, with what and on how many samples)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from browser import ARTIFACTS, chromium_page, studio_server, wait_idle

from middo_core.data.demo import create_demo_workspace
from middo_core.loop import build_step, first_iteration, refine_step, select_step
from middo_core.review import apply_policy

pytestmark = [pytest.mark.browser, pytest.mark.slow]



def photograph(page, folder: Path, name: str) -> None:
    wait_idle(page)
    page.wait_for_timeout(1500)  # charts finish drawing after the script run
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=False)


def test_the_tour_of_the_five_pages_on_the_demo(browser_ready, tmp_path, tiny_model):
    folder = Path(os.environ.get("MIDDO_TOUR_DIR") or ARTIFACTS / "tour")
    model = os.environ.get("MIDDO_TOUR_MODEL") or tiny_model
    ws = create_demo_workspace(tmp_path / "demo", size=int(os.environ.get("MIDDO_TOUR_SIZE", "60")))
    ws.config.base_model = ws.config.refine.model = model
    ws.config.refine.backend = "local"  # the tour photographs the pages, not vLLM's start
    ws.config.refine.max_new_tokens = 256
    ws.config.loop.autostart = False
    ws.save_config()
    # iteration 0 up to the review: train, diagnose (and map), evaluate, select, refine
    first_iteration(ws)
    select_step(ws, 0)
    refine_step(ws, 0)

    with studio_server(ws.root, tmp_path / "studio.log") as url, chromium_page(1400, 900) as page:
        page.goto(url + "/")
        page.get_by_text(re.compile(r"Samples 1–\d+ of [\d,]+ in D\(0\)")).wait_for()
        photograph(page, folder, "1-data")

        page.goto(url + "/diagnose")
        page.get_by_text("Union flagged").wait_for(timeout=60_000)
        photograph(page, folder, "2-diagnose")

        page.goto(url + "/map")
        page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=60_000)
        photograph(page, folder, "3-map")

        page.goto(url + "/review")
        page.get_by_text(re.compile(r"\d+ of \d+ decided")).wait_for(timeout=60_000)
        photograph(page, folder, "4-review")

        apply_policy(ws, 0, "auto")  # the curator's decisions, then D(1)
        build_step(ws, 0)
        page.goto(url + "/iterations")
        # the sidebar moves to the newest version: D(1), with its row in Table 6
        page.get_by_role("button", name="Train M(1) on D(1)").wait_for(timeout=60_000)
        photograph(page, folder, "5-iterations")

    for name in ("1-data", "2-diagnose", "3-map", "4-review", "5-iterations"):
        assert (folder / f"{name}.png").stat().st_size > 20_000, f"{name}: an empty picture"
