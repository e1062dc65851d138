"""Selecting on the map in a real browser: a box and a lasso drawn with the mouse on the plotly map
of points (a workspace under the image's threshold) list the samples inside, with their signals,
and one opens for review. The map drawn as one image: test_map_scale_browser.py."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from browser import chromium_missing, chromium_page, shot, studio_server, wait_idle
from studio_helpers import write_signals

from middo_core.sample import Sample
from middo_core.store.iterations import upsert_iteration
from middo_core.store.projections import put_projection
from middo_core.store.proposals import put_proposals
from middo_core.store.samples import add_members, insert_samples, samples_frame

pytestmark = [pytest.mark.browser, pytest.mark.slow]

N_REST, N_A, N_B = 260, 20, 12
A, B = (10.0, 10.0), (-10.0, 10.0)  # two tight clusters far from the rest, around (0, -5)


def map_workspace(ws):
    """Samples 'Cluster A k' and 'Cluster B k' placed in two tight clusters, both low quality
    (flagged, so drawn even when the map shows only a subset), the rest spread below them."""
    rng = np.random.default_rng(1)
    samples = ([Sample(instruction=f"Cluster A sample {k}: summarise the text", output=f"A{k}") for k in range(N_A)]
               + [Sample(instruction=f"Cluster B sample {k}: translate it", output=f"B{k}") for k in range(N_B)]
               + [Sample(instruction=f"Other sample {k}", output=f"O{k}") for k in range(N_REST)])
    ids = [s.id for s in samples]
    xy = np.concatenate([np.array(A) + rng.normal(0, 0.3, (N_A, 2)), np.array(B) + rng.normal(0, 0.3, (N_B, 2)),
                         np.array((0.0, -5.0)) + rng.normal(0, 2.0, (N_REST, 2))])
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        add_members(con, 0, ids)
        upsert_iteration(con, 0, status="built")
        put_projection(con, 0, "umap", ids, xy)
    frame = write_signals(ws, 0, ids)
    frame.loc[: N_A + N_B - 1, "quality"] = 0.5  # far below every other sample: flagged on quality
    from middo_core.store.signals import write_signals as store_signals

    with ws.store.write() as con:
        store_signals(con, 0, frame)
        put_proposals(con, [{"id": "map-prop", "iteration": 0, "axis": "quality", "source_id": ids[3],
                             "instruction": "A clearer request: summarise the text in two sentences",
                             "input": "", "output": "A better answer.", "status": "pending"}])
    return samples


def to_screen(page, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Data coordinates of the map -> page pixels (plotly's own axis conversion), kept just
    inside the plot area: a drag has to start on it."""
    return page.evaluate(
        """(pts) => { const gd = document.querySelector('.js-plotly-plot');
             const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
             const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
             const inside = (v, len) => Math.min(Math.max(v, 2), len - 2);
             return pts.map(([x, y]) => [box.left + inside(xa.l2p(x), xa._length),
                                         box.top + inside(ya.l2p(y), ya._length)]); }""",
        [list(p) for p in points])


def drag(page, path: list[tuple[float, float]]) -> None:
    screen = to_screen(page, path)
    page.mouse.move(*screen[0])
    page.mouse.down()
    for x, y in screen[1:]:
        page.mouse.move(x, y, steps=6)
    page.mouse.up()


def selected_count(page, timeout: float = 30_000) -> int:
    line = page.get_by_text(re.compile(r"^[\d,]+ samples selected")).first
    line.wait_for(timeout=timeout)
    return int(line.inner_text().split()[0].replace(",", ""))


def open_picker(page) -> None:
    page.locator(".st-key-map_open_0 input").click()
    page.keyboard.press("ArrowDown")  # an empty combobox opens on a key, not on a click


def listed_rows(page) -> tuple[list[str], list[str]]:
    """Column headers and row texts of the selected-samples table (its accessible grid)."""
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.locator('[role="columnheader"]').first.wait_for(state="attached")
    rows = grid.locator('[role="row"]').all_inner_texts()[1:]
    return grid.locator('[role="columnheader"]').all_inner_texts(), rows


def listed_instructions(page) -> list[str]:
    """The instructions offered by 'Open a sample' (one per listed sample)."""
    open_picker(page)
    options = page.get_by_role("option")
    options.first.wait_for()
    texts = options.all_inner_texts()
    page.keyboard.press("Escape")
    return texts


def settled_list(page, prefix: str, n: int, timeout_s: float = 30.0) -> list[str]:
    """The listed instructions once the page shows the new selection (the list redraws after the
    count line, and under load a read can catch the list of the previous selection)."""
    deadline = time.monotonic() + timeout_s
    while True:
        wait_idle(page)
        names = listed_instructions(page)
        if (len(names) == n and all(prefix in x for x in names)) or time.monotonic() > deadline:
            return names
        page.wait_for_timeout(500)


def test_box_and_lasso_list_the_samples_inside_and_open_one_for_review(tmp_path, workspace_factory):
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    ws = workspace_factory("map")
    map_workspace(ws)
    with studio_server(ws.root, tmp_path / "studio.log") as url, chromium_page() as page:
        page.goto(url + "/map")
        wait_idle(page)
        page.wait_for_function("() => { const gd = document.querySelector('.js-plotly-plot');"
                               " return gd && gd._fullData && gd._fullData.length > 1; }", timeout=60_000)
        shot(page, "map-01-drawn")

        # Box: switch the map to box select from its toolbar, drag around cluster A
        plot = page.locator(".js-plotly-plot")
        plot.hover()
        page.locator('.modebar-btn[data-title="Box Select"]').click()
        drag(page, [(A[0] - 2, A[1] + 2), (A[0] + 2, A[1] - 2)])
        assert selected_count(page) == N_A
        wait_idle(page)
        names = settled_list(page, "Cluster A sample", N_A)
        assert len(names) == N_A and all("Cluster A sample" in n for n in names)
        headers, rows = listed_rows(page)
        assert {"instruction", "loss_pre", "loss_post", "diversity", "quality"} <= set(headers)
        assert rows and all("Cluster A sample" in r and "0.5" in r for r in rows)  # quality 0.5
        shot(page, "map-02-box")

        # Lasso: a polygon around cluster B (the selection replaces the box)
        plot.hover()
        page.locator('.modebar-btn[data-title="Lasso Select"]').click()
        bx, by = B
        drag(page, [(bx - 2, by), (bx - 1.5, by + 1.8), (bx + 1.5, by + 1.8), (bx + 2, by),
                    (bx + 1.5, by - 1.8), (bx - 1.5, by - 1.8), (bx - 2, by)])
        page.wait_for_function("() => [...document.querySelectorAll('p')].some(p => "
                               f"p.innerText.startsWith('{N_B} samples selected'))", timeout=30_000)
        wait_idle(page)
        names = settled_list(page, "Cluster B sample", N_B)
        assert len(names) == N_B and all("Cluster B sample" in n for n in names)
        shot(page, "map-03-lasso")

        # Box again around A, open the sample that has a proposal: text, signals, reason, review link
        plot.hover()
        page.locator('.modebar-btn[data-title="Box Select"]').click()
        drag(page, [(A[0] - 2, A[1] + 2), (A[0] + 2, A[1] - 2)])
        page.wait_for_function("() => [...document.querySelectorAll('p')].some(p => "
                               f"p.innerText.startsWith('{N_A} samples selected'))", timeout=30_000)
        wait_idle(page)
        open_picker(page)
        page.get_by_role("option", name=re.compile("Cluster A sample 3:")).click()
        wait_idle(page)
        page.get_by_text(re.compile(r"quality 0\.500")).wait_for()  # its signals
        page.get_by_text(re.compile(r"^Flagged: .*quality")).wait_for()  # why it is flagged
        whole = page.locator('[data-testid="stText"]').filter(has_text="Cluster A sample 3: summarise the text")
        whole.wait_for()
        page.locator('[data-testid="stText"]').filter(has_text="A3").wait_for()  # its output, whole
        assert whole.count() == 1
        shot(page, "map-04-opened")
        page.get_by_role("button", name=re.compile("Review its quality proposal")).click()
        page.get_by_text("A clearer request: summarise the text in two sentences").first.wait_for(timeout=30_000)
        wait_idle(page)
        assert "Review proposals for D(0)" in page.locator("h1").first.inner_text()
        shot(page, "map-05-review")
