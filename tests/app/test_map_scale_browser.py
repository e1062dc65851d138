"""The map drawn as one image of every sample, in a real browser, on a synthetic workspace of
20,000 samples (benchmarks/synth_workspace.py; ~10 s to build here): a search marks and lists its
matches, a recolour redraws the image, and a box drawn with the mouse lists exactly the samples
inside it (resolved on the server over every coordinate), the image zooms in on the box, a lasso
drawn there lists its samples, flagged ones first, one of which opens on the Review page. The same path at a million samples: benchmarks/bench_studio_scale.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser import chromium_page, shot, studio_server, wait_idle
from test_map_browser import drag

from benchmarks.synth_workspace import build_synthetic_workspace
from middo_core.map_raster import in_box, in_lasso
from middo_core.projections import load_projection
from middo_core.store.views import count_samples

pytestmark = [pytest.mark.browser, pytest.mark.slow]

N, P = 20_000, 1_000
WORD = "astronomy"  # one of the synthetic topics: a few percent of the samples


def samples_line(page, pattern: str, timeout: float = 60_000) -> int:
    line = page.get_by_text(re.compile(pattern)).first
    line.wait_for(timeout=timeout)
    return int(line.inner_text().split()[0].replace(",", ""))


def drawn(page) -> dict:
    """The box or lasso the page holds as the selection, in the map's coordinates (plotly's record)."""
    return page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout.selections[0]")


def lasso_points(path: str) -> tuple[list[float], list[float]]:
    """plotly's 'Mx,yLx,y...Z' outline -> its xs and ys."""
    pts = [p.split(",") for p in path.replace("M", "").replace("Z", "").split("L")]
    return [float(x) for x, _ in pts], [float(y) for _, y in pts]


def test_a_box_on_the_image_of_every_sample_lists_them_and_leads_to_review(tmp_path, monkeypatch,
                                                                           browser_ready):
    ws = build_synthetic_workspace(tmp_path / "ws", N, proposals=P, progress=None)
    monkeypatch.setenv("MIDDO_MAP_POINTS", "5000")  # above it the map is one image: here 20,000
    points = load_projection(ws, 0, "umap", text_chars=0)
    with ws.store.read() as con:
        matches = count_samples(con, 0, WORD)
        # a pending proposal's source: the box is drawn around it
        source, axis = con.execute("SELECT source_id, axis FROM proposals ORDER BY id LIMIT 1").fetchone()
    at = points.index[points["sample_id"] == source][0]
    sx, sy = float(points.at[at, "x"]), float(points.at[at, "y"])
    x, y = points["x"].to_numpy(np.float32), points["y"].to_numpy(np.float32)

    with studio_server(ws.root, tmp_path / "studio.log") as url, chromium_page() as page:
        page.goto(url + "/map")
        wait_idle(page)
        page.wait_for_function("() => { const gd = document.querySelector('.js-plotly-plot');"
                               " return gd && gd.querySelector('image'); }", timeout=60_000)
        page.get_by_text(f"Every one of the {N:,} samples is drawn").wait_for()
        assert page.get_by_text(re.compile(r"^Draw a lasso or a box")).count() == 1
        shot(page, "map-scale-01-image")

        # Search: every match marked and counted, the first ones listed
        search = page.locator(".st-key-map_search input")
        search.fill(WORD)
        search.press("Enter")
        assert samples_line(page, r"^[\d,]+ samples found by the search") == matches
        page.get_by_text(f"{matches:,} found by the search").first.wait_for()  # in the map's title
        search.fill("")
        search.press("Enter")
        page.get_by_text(re.compile(r"^Draw a lasso or a box")).wait_for()

        # Recolour by a signal: a new image with the signal's steps in the legend
        before = page.evaluate("() => document.querySelector('.js-plotly-plot').layout.images[0].source")
        page.locator(".st-key-map_colour").click()
        page.get_by_role("option", name="quality", exact=True).click()
        page.get_by_text(re.compile("coloured by quality")).first.wait_for()
        wait_idle(page)
        after = page.evaluate("() => document.querySelector('.js-plotly-plot').layout.images[0].source")
        assert after != before
        shot(page, "map-scale-02-quality")

        # A box around the proposal's source: the count is that of every sample inside the box
        page.locator(".js-plotly-plot").hover()
        page.locator('.modebar-btn[data-title="Box Select"]').click()
        span = float(x.max() - x.min()) / 60
        drag(page, [(sx - span, sy + span), (sx + span, sy - span)])
        shown = samples_line(page, r"^[\d,]+ samples selected")
        box = drawn(page)
        assert shown == in_box(x, y, (box["x0"], box["x1"]), (box["y0"], box["y1"])).size > 0
        wait_idle(page)
        shot(page, "map-scale-03-box")

        # Zoom to the box: the image drawn again over it alone
        page.get_by_role("button", name=re.compile("Zoom to the selection")).click()
        page.get_by_text(re.compile("coloured by quality .* zoomed in")).first.wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_role("button", name=re.compile("Whole map")).wait_for(timeout=30_000)
        # a new figure replaces the chart: until the old one is gone, two are on the page
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length === 1")
        shot(page, "map-scale-04-zoomed")

        # A lasso around the source in the zoomed view
        page.locator(".js-plotly-plot").hover()
        page.locator('.modebar-btn[data-title="Lasso Select"]').click()
        r = span * 0.9
        drag(page, [(sx - r, sy), (sx - r / 2, sy + r), (sx + r / 2, sy + r), (sx + r, sy),
                    (sx + r / 2, sy - r), (sx - r / 2, sy - r), (sx - r, sy)])
        page.wait_for_function("() => { const s = document.querySelector('.js-plotly-plot')._fullLayout"
                               ".selections; return s.length === 1 && s[0].type === 'path'; }")
        expected = in_lasso(x, y, *lasso_points(drawn(page)["path"])).size
        page.get_by_text(re.compile(rf"^{expected:,} samples selected")).wait_for(timeout=60_000)
        assert 0 < expected <= shown  # inside the box
        wait_idle(page)

        # Open the source (listed: flagged ones come first) and go to its proposal
        page.locator(".st-key-map_open_0 input").click()
        page.keyboard.type(source)  # the picker lists a few options at a time: filter to the one
        page.get_by_role("option", name=re.compile(f"^{source} ·")).click()
        wait_idle(page)
        page.get_by_role("button", name=re.compile(f"Review its {axis} proposal")).click()
        page.get_by_role("heading", name=re.compile(r"Review proposals for D\(0\)")).wait_for(timeout=60_000)
        wait_idle(page)
        shot(page, "map-scale-05-review")
