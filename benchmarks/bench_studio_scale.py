"""The Studio on a large workspace, in a real browser: every page, every interaction a curator makes.

    python -m benchmarks.bench_studio_scale --samples 100000 [--proposals 5000] [--reuse]

Builds a synthetic workspace (benchmarks/synth_workspace.py) under benchmarks/out/studio/, starts
`middo studio` on loopback and drives headless Chromium (/usr/bin/chromium): each page's load after
a warm-up visit, an m slider move, search and page turns on the Data page, opening a sample from a
histogram bar, the map (recolours, a search, a box drawn with the mouse to the list of samples
inside, a zoom to it, one of them opened and its proposal on the Review page), a bulk accept of every pending
proposal (set back to pending afterwards), and the server's resident memory with two tabs open. A page is timed twice: opened afresh (a new session:
the browser loads the app and its chart library again) and reached from another page through the
sidebar, as a curator moves around. The machine's load is printed with each part.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "app"))

from browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    chromium_missing,
    chromium_page,
    studio_process,
    wait_idle,
)

from benchmarks.synth_workspace import build_synthetic_workspace  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "studio"
PAGES = ("data", "diagnose", "map", "review", "iterations")
PATHS = {"data": ""}  # the default page is the app's root
TARGETS = {"page": 2.0, "slider": 0.3, "browse": 1.0, "open": 0.5, "bulk": 10.0, "tables": 1.0,
           "map": 3.0, "recolour": 1.0}
# The map is drawn: its title names the colouring, and its points (WebGL) or its image are there
MAP_DRAWN = """(colour) => { const gd = document.querySelector('.js-plotly-plot');
  const t = gd && gd.querySelector('.gtitle');
  return !!t && t.textContent.includes('coloured by ' + colour)
         && !!(gd.querySelector('.gl-container canvas') || gd.querySelector('image')); }"""
# A new figure replaces the chart: until the old one is gone, two are on the page
ONE_MAP = "() => document.querySelectorAll('.js-plotly-plot').length === 1"
# ... and its image decoded (a no-op for points)
MAP_DECODED = """async () => { const im = document.querySelector('.js-plotly-plot image');
  if (im && im.decode) { try { await im.decode(); } catch (e) {} } }"""


def load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    import psutil

    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def page_ready(page, name: str, t0: float | None = None, timeout: float = 300_000) -> dict[str, float]:
    """Wait for a page's content (and for the Iterations page, its two tables); seconds from t0
    (default: now) to the content, and to the end of the page's script run."""
    t0 = time.perf_counter() if t0 is None else t0
    out: dict[str, float] = {}
    if name == "data":
        page.get_by_text(re.compile(r"^Samples 1–50 of")).wait_for(timeout=timeout)
    elif name == "diagnose":
        page.get_by_text("Union flagged").wait_for(timeout=timeout)
        page.locator('[data-testid="stPlotlyChart"] .barlayer .point').first.wait_for(timeout=timeout)
    elif name == "map":
        page.wait_for_function(MAP_DRAWN, arg="flag", polling="raf", timeout=timeout)
        page.evaluate(MAP_DECODED)
    elif name == "review":
        page.get_by_text(re.compile(r"^Proposal 1 of")).wait_for(timeout=timeout)
    elif name == "iterations":
        page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stDataFrame\"]').length >= 2",
                               polling="raf", timeout=timeout)
        out["tables"] = time.perf_counter() - t0
    out["content"] = time.perf_counter() - t0
    wait_idle(page, timeout=timeout)
    out["idle"] = time.perf_counter() - t0
    return out


def bench_pages(page, url: str, repeats: int, names: tuple[str, ...] = PAGES) -> dict[str, list[dict[str, float]]]:
    """Each page opened afresh (a full load, a new session) after one warm-up visit."""
    out: dict[str, list[dict[str, float]]] = {}
    for name in names:
        t0 = time.perf_counter()
        page.goto(f"{url}/{PATHS.get(name, name)}")
        out[f"{name} (first visit)"] = [page_ready(page, name, t0)]
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            page.goto(f"{url}/{PATHS.get(name, name)}")
            runs.append(page_ready(page, name, t0))
        out[name] = runs
    return out


TITLES = {"data": "Data", "diagnose": "Diagnose", "map": "Map", "review": "Review",
          "iterations": "Iterations"}


def bench_navigation(page, url: str, rounds: int) -> dict[str, list[dict[str, float]]]:
    """Each page reached from another through the sidebar's links, as a curator moves around the
    Studio (one session: the browser keeps its scripts and chart library between pages)."""
    page.goto(url + "/")
    page_ready(page, "data")
    out: dict[str, list[dict[str, float]]] = {name: [] for name in PAGES}
    order = [*PAGES[1:], PAGES[0]]
    for _ in range(rounds + 1):
        for name in order:
            link = page.locator('[data-testid="stSidebarNav"] a').filter(has_text=TITLES[name]).first
            t0 = time.perf_counter()
            link.click()
            page.wait_for_url(re.compile(rf"/{PATHS.get(name, name)}$"), timeout=60_000)
            ready = page_ready(page, name, t0)
            if _ or name == "data":  # the first round warms each page in this session
                out[name].append(ready)
    return out


def flagged_text(page, axis: str) -> str:
    return page.evaluate(
        """(axis) => { const col = [...document.querySelectorAll('[data-testid="stColumn"]')]
             .find(c => c.querySelector('.st-key-m_' + axis + '_0'));
           const ps = [...col.querySelectorAll('p')].filter(p => p.innerText.includes('flagged ('));
           return ps.length ? ps[ps.length - 1].innerText : ''; }""", axis)


def bench_slider(page, url: str, moves: int) -> dict[str, list[float]]:
    """m of diversity one step right or left: seconds to the new count, and to the redrawn panel."""
    page.goto(url + "/diagnose")
    page_ready(page, "diagnose")
    thumb = page.locator('.st-key-m_diversity_0 input[type="range"]')
    thumb.wait_for(state="attached", timeout=60_000)
    page.wait_for_timeout(500)
    count, panel = [], []
    for i in range(moves + 2):
        before = flagged_text(page, "diversity")
        thumb.focus()
        t0 = time.perf_counter()
        page.keyboard.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
        page.wait_for_function(
            "([axis, before]) => { const col = [...document.querySelectorAll('[data-testid=\"stColumn\"]')]"
            ".find(c => c.querySelector('.st-key-m_' + axis + '_0'));"
            "const ps = [...col.querySelectorAll('p')].filter(p => p.innerText.includes('flagged ('));"
            "return ps.length && ps[ps.length - 1].innerText !== before; }",
            arg=["diversity", before], polling="raf", timeout=60_000)
        t1 = time.perf_counter()
        wait_idle(page)
        if i >= 2:  # the first moves warm the caches
            count.append(t1 - t0)
            panel.append(time.perf_counter() - t0)
        page.wait_for_timeout(200)
    return {"count": count, "panel": panel}


def _caption(page) -> str:
    return page.evaluate(
        """() => { const c = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
             .map(e => e.innerText).find(t => /^Samples [\\d,]+–[\\d,]+ of|^No sample matches/.test(t));
           const i = [...document.querySelectorAll('[data-testid="stAlert"]')]
             .map(e => e.innerText).find(t => t.includes('No sample matches'));
           return c || i || ''; }""")


def _wait_caption_change(page, before: str, timeout: float = 120_000) -> str:
    page.wait_for_function(
        """(before) => { const c = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
             .map(e => e.innerText).find(t => /^Samples [\\d,]+–[\\d,]+ of/.test(t));
           const i = [...document.querySelectorAll('[data-testid="stAlert"]')]
             .map(e => e.innerText).find(t => t.includes('No sample matches'));
           const now = c || i || '';
           return now && now !== before; }""", arg=before, polling="raf", timeout=timeout)
    return _caption(page)


def bench_browse(page, url: str, n: int) -> dict[str, list[tuple[str, float, str]]]:
    """Searches (a topic word: many hits; one record's number: one hit in the instruction; a word
    of the responses; nothing found) and page turns, each to its new caption."""
    page.goto(url + "/")
    page_ready(page, "data")
    box = page.locator(".st-key-browse_text input")
    out: dict[str, list[tuple[str, float, str]]] = {"search": [], "page": []}
    terms = ["astronomy", f"(record {n // 3})", "therefore", "volcanoes usual", "no such text zq"]
    for term in [*terms, ""]:
        before = _caption(page)
        box.fill(term)
        t0 = time.perf_counter()
        box.press("Enter")
        shown = _wait_caption_change(page, before)
        elapsed = time.perf_counter() - t0
        wait_idle(page)
        if term:
            out["search"].append((term, elapsed, shown))
    up = page.locator(".st-key-browse_page button").last  # the number input's "+"
    for _ in range(4):
        before = _caption(page)
        t0 = time.perf_counter()
        up.click()
        shown = _wait_caption_change(page, before)
        out["page"].append(("next page", time.perf_counter() - t0, shown))
        wait_idle(page)
    return out


def bench_open(page, url: str, opens: int) -> list[float]:
    """Click the fullest L_post bar on the Diagnose page, then open listed samples one by one:
    seconds from the pick to the sample drawn whole."""
    page.goto(url + "/diagnose")
    page_ready(page, "diagnose")
    chart = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="L_post per sample").first
    bars = chart.locator(".barlayer .trace").last.locator(".point")
    bars.first.wait_for()
    heights = [b["height"] if b else 0 for b in (bars.nth(i).bounding_box() for i in range(bars.count()))]
    bars.nth(heights.index(max(heights))).click(force=True)
    page.get_by_text(re.compile(r"^[\d,]+ samples with L_post in")).first.wait_for(timeout=120_000)
    wait_idle(page)
    times = []
    for i in range(opens + 1):
        combo = page.locator(".st-key-drilldown input[role='combobox']").first
        combo.click()
        page.keyboard.press("ArrowDown")
        option = page.get_by_role("option").nth(i)
        option.wait_for()
        sid = option.inner_text().split(" · ")[0].strip()
        t0 = time.perf_counter()
        option.click()
        page.get_by_text(re.compile(rf"^Sample {sid} ·")).wait_for(timeout=120_000)
        elapsed = time.perf_counter() - t0
        wait_idle(page)
        if i:  # the first open warms the sample's caches
            times.append(elapsed)
    return times


def map_source(ws_root: Path) -> tuple[str, str, float, float, float]:
    """A pending proposal's source on the map: (id, axis, x, y, the map's width in its units)."""
    from middo_core.workspace import open_workspace

    ws = open_workspace(ws_root)
    with ws.store.read() as con:
        source, axis = con.execute("SELECT source_id, axis FROM proposals WHERE status = 'pending' "
                                   "ORDER BY id LIMIT 1").fetchone()
        x, y = con.execute("SELECT x, y FROM projections WHERE iteration = 0 AND method = 'umap' "
                           "AND sample_id = ?", [source]).fetchone()
        lo, hi = con.execute("SELECT min(x), max(x) FROM projections WHERE iteration = 0 "
                             "AND method = 'umap'").fetchone()
    return source, axis, x, y, hi - lo


def _map_colour(page, colour: str) -> float:
    """Pick a colouring: seconds to the map drawn in it."""
    page.locator(".st-key-map_colour").click()
    option = page.get_by_role("option", name=colour.replace("_", " "), exact=True)
    option.wait_for()
    t0 = time.perf_counter()
    option.click()
    page.wait_for_function(MAP_DRAWN, arg=colour.replace("_", " "), polling="raf", timeout=120_000)
    page.evaluate(MAP_DECODED)
    elapsed = time.perf_counter() - t0
    wait_idle(page)
    return elapsed


def _samples_line(page, pattern: str, timeout: float = 120_000) -> str:
    line = page.get_by_text(re.compile(pattern)).first
    line.wait_for(timeout=timeout)
    return line.inner_text()


def bench_map(page, url: str, ws_root: Path) -> dict[str, list[float] | str]:
    """Recolours (each colouring twice: first drawn, then again), a search, a box around a pending
    proposal's source to the list of samples inside, that sample opened, and its proposal shown on
    the Review page."""
    from test_map_browser import drag

    source, axis, sx, sy, width = map_source(ws_root)
    out: dict[str, list[float] | str] = {"recolour": [], "recolour again": []}
    page.goto(url + "/map")
    page_ready(page, "map")
    for key in ("recolour", "recolour again"):
        for colour in ("quality", "origin", "loss_post", "flag"):
            out[key].append(_map_colour(page, colour))
    search = page.locator(".st-key-map_search input")
    search.fill("astronomy")
    t0 = time.perf_counter()
    search.press("Enter")
    out["search line"] = _samples_line(page, r"^[\d,]+ samples found by the search")
    out["search"] = [time.perf_counter() - t0]
    wait_idle(page)
    search.fill("")
    search.press("Enter")
    page.get_by_text(re.compile(r"^Draw a lasso or a box")).wait_for(timeout=120_000)
    wait_idle(page)
    page.locator(".js-plotly-plot").hover()
    page.locator('.modebar-btn[data-title="Box Select"]').click()
    span = width / 100
    t0 = time.perf_counter()
    drag(page, [(sx - span, sy + span), (sx + span, sy - span)])
    out["box line"] = _samples_line(page, r"^[\d,]+ samples selected")
    out["box -> count"] = [time.perf_counter() - t0]
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=120_000)
    wait_idle(page)
    out["box -> list"] = [time.perf_counter() - t0]
    zoom = page.get_by_role("button", name=re.compile("Zoom to the selection"))
    if zoom.count():  # the map is one image: zoom to the box, then a box in the zoomed view
        t0 = time.perf_counter()
        zoom.click()
        page.wait_for_function("() => { const t = document.querySelector('.js-plotly-plot .gtitle');"
                               " return !!t && t.textContent.includes('zoomed in'); }",
                               polling="raf", timeout=120_000)
        page.evaluate(MAP_DECODED)
        out["zoom"] = [time.perf_counter() - t0]
        wait_idle(page)
        page.wait_for_function(ONE_MAP, timeout=120_000)
        page.locator(".js-plotly-plot").hover()
        page.locator('.modebar-btn[data-title="Box Select"]').click()
        drag(page, [(sx - span / 2, sy + span / 2), (sx + span / 2, sy - span / 2)])
        out["zoomed box line"] = _samples_line(page, r"^[\d,]+ samples selected")
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=120_000)
        wait_idle(page)
    page.locator(".st-key-map_open_0 input").click()
    page.keyboard.type(source)  # the picker lists a few options at a time: filter to the one
    option = page.get_by_role("option", name=re.compile(f"^{source} ·"))
    page.wait_for_timeout(500)
    if not option.count():
        out["review"] = f"{source} not among the listed samples"
        return out
    t0 = time.perf_counter()
    option.click()
    page.get_by_text(re.compile(rf"^Sample {source} ·")).wait_for(timeout=120_000)
    out["open"] = [time.perf_counter() - t0]
    wait_idle(page)
    t0 = time.perf_counter()
    page.get_by_role("button", name=re.compile(f"Review its {axis} proposal")).click()
    page.get_by_role("heading", name=re.compile(r"Review proposals for D\(0\)")).wait_for(timeout=120_000)
    wait_idle(page)
    out["review"] = [time.perf_counter() - t0]
    return out


def bench_bulk(page, url: str, ws_root: Path, pending: int) -> float:
    """Accept every pending proposal from the Review page: seconds from the confirmation to the
    page showing them all decided. The proposals are set back to pending afterwards."""
    page.goto(url + "/review")
    page_ready(page, "review")
    page.locator(".st-key-bulk_accept button").click()
    yes = page.locator(".st-key-bulk_yes button")
    yes.wait_for(timeout=120_000)
    t0 = time.perf_counter()
    yes.click()
    page.get_by_text(f"{pending:,} of {pending:,} decided").wait_for(timeout=600_000)
    elapsed = time.perf_counter() - t0
    wait_idle(page, timeout=600_000)
    reset_proposals(ws_root)
    return elapsed


def reset_proposals(ws_root: Path) -> int:
    from middo_core import review
    from middo_core.workspace import open_workspace

    ws = open_workspace(ws_root)
    return review.bulk_decide(ws, 0, "reset", status="accepted", actor="benchmark")


def two_tabs_rss(url: str, pid: int) -> dict[str, float]:
    """The server's resident memory idle, then with a tab on the Map and one on the Diagnose page."""
    from playwright.sync_api import sync_playwright

    out = {"after the run": rss_mb(pid)}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tabs = [browser.new_page(viewport={"width": 1500, "height": 1000}) for _ in range(2)]
            for tab, name in zip(tabs, ("map", "diagnose"), strict=True):
                tab.goto(f"{url}/{PATHS.get(name, name)}")
                page_ready(tab, name)
            out["two tabs open"] = rss_mb(pid)
        finally:
            browser.close()
    return out


class Rows(list):
    """The result table's rows, each printed as it comes (a run stopped half-way keeps its figures)."""

    def append(self, row: str) -> None:
        print(row, flush=True)
        super().append(row)


def fmt(values: list[float], target: float) -> str:
    ms = [v * 1000 for v in values]
    verdict = "ok" if statistics.median(values) < target else "MISSES"
    return f"{statistics.median(ms):,.0f} ms | {max(ms):,.0f} ms | {len(ms)} | < {target * 1000:,.0f} ms | {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--proposals", type=int, default=None, help="default: 5%% of the samples")
    parser.add_argument("--reuse", action="store_true", help="use the workspace built before")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--moves", type=int, default=8)
    parser.add_argument("--only", default="pages,navigate,slider,browse,open,map,bulk,memory")
    parser.add_argument("--pages", default=",".join(PAGES), help="the pages the 'pages' part opens")
    args = parser.parse_args()
    reason = chromium_missing()
    if reason:
        sys.exit(f"cannot run: {reason}")
    proposals = args.proposals if args.proposals is not None else args.samples // 20
    root = OUT / f"scale-{args.samples}"
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.reuse or not (root / "middo.duckdb").exists():
        t = time.perf_counter()
        print(f"load before the build: {load()}")
        build_synthetic_workspace(root, args.samples, proposals)
        print(f"workspace built in {time.perf_counter() - t:.1f} s (load {load()})")
    else:
        reset_proposals(root)
    parts = set(args.only.split(","))
    rows = Rows()
    with studio_process(root, OUT / f"scale-{args.samples}.log") as (url, proc):
        started_rss = rss_mb(proc.pid)
        with chromium_page() as page:
            if "pages" in parts:
                print(f"pages: load {load()}", flush=True)
                names = tuple(p for p in PAGES if p in args.pages.split(","))
                pages = bench_pages(page, url, args.repeats, names)
                for name in names:
                    first = pages[f"{name} (first visit)"][0]
                    rows.append(f"| {name} page, first visit after the server starts | "
                                f"{first['idle'] * 1000:,.0f} ms | | 1 | | |")
                    target = TARGETS["map" if name == "map" else "page"]
                    rows.append(f"| {name} page load (warm server) | "
                                + fmt([r["idle"] for r in pages[name]], target) + " |")
                    if name == "iterations":
                        rows.append("| Iterations: both tables drawn | "
                                    + fmt([r["tables"] for r in pages[name]], TARGETS["tables"]) + " |")
                print(f"  done, load {load()}", flush=True)
            if "navigate" in parts:
                print(f"navigate: load {load()}", flush=True)
                moves = bench_navigation(page, url, args.repeats)
                for name in PAGES:
                    target = TARGETS["map" if name == "map" else "page"]
                    rows.append(f"| {name} page reached from the sidebar | "
                                + fmt([r["idle"] for r in moves[name]], target) + " |")
                rows.append("| Iterations: both tables drawn, from the sidebar | "
                            + fmt([r["tables"] for r in moves["iterations"]], TARGETS["tables"]) + " |")
            if "slider" in parts:
                print(f"slider: load {load()}", flush=True)
                slider = bench_slider(page, url, args.moves)
                rows.append("| m slider move -> new flagged count | " + fmt(slider["count"], TARGETS["slider"]) + " |")
                rows.append("| m slider move -> panel redrawn (counts, histograms) | "
                            + fmt(slider["panel"], TARGETS["slider"]) + " |")
            if "browse" in parts:
                print(f"browse: load {load()}", flush=True)
                browse = bench_browse(page, url, args.samples)
                for term, sec, shown in browse["search"]:
                    rows.append(f"| search \"{term}\" -> {shown} | " + fmt([sec], TARGETS["browse"]) + " |")
                rows.append("| page turn | " + fmt([s for _, s, _ in browse["page"]], TARGETS["browse"]) + " |")
            if "open" in parts:
                print(f"open: load {load()}", flush=True)
                rows.append("| open a sample from a histogram bar's list | "
                            + fmt(bench_open(page, url, 4), TARGETS["open"]) + " |")
            if "map" in parts:
                print(f"map: load {load()}", flush=True)
                mapped = bench_map(page, url, root)
                rows.append("| map recolour -> drawn (quality, origin, loss_post, flag; first time) | "
                            + fmt(mapped["recolour"], TARGETS["recolour"]) + " |")
                rows.append("| map recolour -> drawn (the same, again) | "
                            + fmt(mapped["recolour again"], TARGETS["recolour"]) + " |")
                rows.append(f"| map search -> {mapped['search line']} | " + fmt(mapped["search"], TARGETS["browse"]) + " |")
                rows.append(f"| map box -> {mapped['box line']} | " + fmt(mapped["box -> count"], TARGETS["browse"]) + " |")
                rows.append("| map box -> the list drawn | " + fmt(mapped["box -> list"], TARGETS["browse"]) + " |")
                if "zoom" in mapped:
                    rows.append("| map: zoom to the selection -> drawn | " + fmt(mapped["zoom"], TARGETS["recolour"])
                                + f" |\n| (a box in the zoomed view: {mapped['zoomed box line']}) | | | | | |")
                if isinstance(mapped["review"], str):
                    rows.append(f"| map: open the proposal's source | {mapped['review']} | | | | |")
                else:
                    rows.append("| map: open a listed sample | " + fmt(mapped["open"], TARGETS["open"]) + " |")
                    rows.append("| map: its proposal -> the Review page | " + fmt(mapped["review"], TARGETS["page"]) + " |")
                print(f"  done, load {load()}", flush=True)
            if "bulk" in parts and proposals:
                print(f"bulk: load {load()}", flush=True)
                rows.append(f"| bulk accept of {proposals:,} pending proposals | "
                            + fmt([bench_bulk(page, url, root, proposals)], TARGETS["bulk"]) + " |")
        if "memory" in parts:
            memory = two_tabs_rss(url, proc.pid)
            rows.append(f"| server RSS: started {started_rss:,.0f} MB, after the run "
                        f"{memory['after the run']:,.0f} MB, two tabs open {memory['two tabs open']:,.0f} MB"
                        " | | | | < 4,096 MB | " + ("ok" if memory["two tabs open"] < 4096 else "MISSES") + " |")
    print(f"\n{args.samples:,} samples, {proposals:,} pending proposals; load at the end: {load()}")
    print("| measurement | median | max | runs | target | |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
