"""Studio responsiveness in a real browser: m slider round trip at 100k samples, map at 200k points.

    python -m benchmarks.bench_studio [--samples 100000] [--points 200000] [--moves 12]

Builds two synthetic workspaces under benchmarks/out/ (benchmarks/synth_workspace.py),
starts `middo studio` on loopback and drives headless Chromium (needs /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "app"))

from browser import chromium_missing, chromium_page, studio_server, wait_idle  # noqa: E402

from benchmarks.synth_workspace import build_synthetic_workspace  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "studio"


def flagged_text(page, axis: str) -> str:
    return page.evaluate(
        """(axis) => { const col = [...document.querySelectorAll('[data-testid="stColumn"]')]
             .find(c => c.querySelector('.st-key-m_' + axis + '_0'));
           const ps = [...col.querySelectorAll('p')].filter(p => p.innerText.includes('flagged ('));
           return ps.length ? ps[ps.length - 1].innerText : ''; }""", axis)


def bench_slider(url: str, moves: int) -> list[float]:
    times = []
    with chromium_page() as page:
        page.goto(url + "/diagnose")
        wait_idle(page, timeout=180_000)
        page.get_by_text("Union flagged").wait_for(timeout=180_000)
        thumb = page.locator('.st-key-m_diversity_0 input[type="range"]')
        thumb.wait_for(state="attached", timeout=60_000)
        page.wait_for_timeout(1000)
        for i in range(moves + 2):
            before = flagged_text(page, "diversity")
            thumb.focus()
            t0 = time.perf_counter()
            page.keyboard.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
            page.wait_for_function(
                """([axis, before]) => { const col = [...document.querySelectorAll('[data-testid="stColumn"]')]
                     .find(c => c.querySelector('.st-key-m_' + axis + '_0'));
                   const ps = [...col.querySelectorAll('p')].filter(p => p.innerText.includes('flagged ('));
                   return ps.length && ps[ps.length - 1].innerText !== before; }""",
                arg=["diversity", before], polling="raf", timeout=30_000)
            elapsed = time.perf_counter() - t0
            if i >= 2:  # the first moves warm the caches
                times.append(elapsed)
            wait_idle(page)
            page.wait_for_timeout(200)
    return times


def _plot_ready(page, colour: str, timeout: float = 60_000) -> None:
    """The map is drawn: its title names the colouring and its WebGL traces exist."""
    page.wait_for_function(
        """(colour) => { const gd = document.querySelector('.js-plotly-plot');
             if (!gd || !gd._fullData || !gd._fullData.length) return false;
             const title = gd.querySelector('.gtitle');
             return !!title && title.textContent.includes('coloured by ' + colour)
                    && !!gd.querySelector('.gl-container canvas'); }""", arg=colour,
        polling="raf", timeout=timeout)


def _recolour(page, colour: str, frames: list[int]) -> float:
    """Pick `colour` in the Colour-by box; seconds until the map is drawn with it."""
    page.locator(".st-key-map_colour input").click()
    option = page.get_by_role("option", name=colour, exact=True)
    option.wait_for()
    frames.clear()
    t0 = time.perf_counter()
    option.click()
    _plot_ready(page, colour)
    elapsed = time.perf_counter() - t0
    wait_idle(page)
    return elapsed


def bench_map(url: str, repeats: int = 4) -> dict[str, list[float]]:
    """Open the map, recolour by origin (categories) and by a signal (ten colour steps), back to flag.

    Also records the largest websocket frame of each recolour: the figure as sent."""
    out: dict[str, list[float]] = {"open": [], "origin": [], "signal": [], "bytes": []}
    frames: list[int] = []
    with chromium_page() as page:
        page.on("websocket", lambda ws: ws.on("framereceived", lambda p: frames.append(len(p))))
        for _ in range(repeats):
            t0 = time.perf_counter()
            page.goto(url + "/map")
            _plot_ready(page, "flag", timeout=180_000)
            out["open"].append(time.perf_counter() - t0)
            wait_idle(page)
            out["title"] = page.evaluate(
                "() => document.querySelector('.js-plotly-plot .gtitle')?.textContent || ''")
            out["origin"].append(_recolour(page, "origin", frames))
            out["bytes"].append(max(frames, default=0))
            out["signal"].append(_recolour(page, "loss pre", frames))
            out["bytes"].append(max(frames, default=0))
            _recolour(page, "flag", frames)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--moves", type=int, default=12)
    args = parser.parse_args()
    reason = chromium_missing()
    if reason:
        sys.exit(f"cannot run: {reason}")
    OUT.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    build_synthetic_workspace(OUT / "slider", args.samples, progress=None)
    build_synthetic_workspace(OUT / "map", args.points, seed=1, progress=None)
    print(f"workspaces written in {time.perf_counter() - t:.1f} s")

    load_before = os.getloadavg()
    with studio_server(OUT / "slider", OUT / "slider.log") as url:
        slider = bench_slider(url, args.moves)
    with studio_server(OUT / "map", OUT / "map.log") as url:
        m = bench_map(url)
    load_after = os.getloadavg()

    def row(name: str, values: list[float], target: str) -> str:
        ms = [v * 1000 for v in values]
        return (f"| {name} | {statistics.median(ms):,.0f} ms | {max(ms):,.0f} ms | {len(ms)} | {target} |")

    print(f"\nmap title: {m['title']}")
    print("load average (1, 5, 15 min) before: " + ", ".join(f"{v:.1f}" for v in load_before)
          + "; after: " + ", ".join(f"{v:.1f}" for v in load_after))
    print(f"largest figure message: {max(m['bytes']) / 1e6:.1f} MB")
    print("| measurement | median | max | runs | target |")
    print("|---|---|---|---|---|")
    print(row(f"m slider move -> new flagged count ({args.samples:,} samples)", slider, "< 300 ms"))
    print(row(f"map page first open after the server starts -> drawn ({args.points:,} samples)",
              m["open"][:1], "< 3 s"))
    print(row(f"map page open -> drawn ({args.points:,} samples)", m["open"][1:], "< 3 s"))
    print(row(f"map recolour by origin -> drawn ({args.points:,} samples)", m["origin"], "< 3 s"))
    print(row(f"map recolour by a signal -> drawn ({args.points:,} samples)", m["signal"], "< 3 s"))


if __name__ == "__main__":
    main()
