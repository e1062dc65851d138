"""The Studio's web surface: loopback by default with a warning when exposed; markup in the data
is shown inert on every page; two browser pages stay error-free while a background job writes;
an upload named to climb out of the workspace lands inside it."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import REPO, middo_env, wait_for

from middo_core.commands.studio import studio_command
from middo_core.config import RefineConfig, WorkspaceConfig
from middo_core.store.iterations import upsert_iteration
from middo_core.store.projections import put_projection
from middo_core.workspace import init_workspace
from tests.app.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    chromium_missing,
    free_port,
    stop,
    studio_server,
    wait_idle,
)
from tests.app.studio_helpers import NASTY, seed_samples, write_proposals, write_signals
from tests.llm.openai_server import LoopbackOpenAI

BAD_WORDS = ("database is locked", "could not set lock", "storebusy", "store busy", "traceback",
             "conflicting lock")


def listening(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:
                found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]) if name == "tcp"
                          else addr)
    return found


@contextlib.contextmanager
def studio_process(args: list[str], log: Path):
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "middo_core.cli", "studio", *args], cwd=REPO,
                                env=middo_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)


@pytest.mark.slow
def test_loopback_by_default(tmp_path):
    """Beyond loopback the Studio needs sign-in (tests/app/test_studio_command.py, test_signin_browser.py)."""
    ws = init_workspace(tmp_path / "ws")
    assert "--server.address" in studio_command(ws.root, 1, "127.0.0.1")
    port = free_port()
    with studio_process([str(ws.root), "--port", str(port)], tmp_path / "a.log") as proc:
        wait_for(lambda: listening(port), 120, "the Studio to listen", proc, tmp_path / "a.log")
        assert listening(port) == {"127.0.0.1"}


def assert_inert(page) -> None:
    """No element from the data's markup exists (its alert() would show up as a dialog)."""
    assert "<script>" in NASTY and "onerror=alert" in NASTY
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator('img[src*="127.0.0.1:9"]').count() == 0
    assert page.locator('a[href*="127.0.0.1:9"]').count() == 0


def assert_no_error(page, where: str) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, where
    text = page.locator("body").inner_text().lower()
    assert not [w for w in BAD_WORDS if w in text], (where, text[:2000])


def studio_ws(root: Path):
    cfg = WorkspaceConfig(name="web", refine=RefineConfig(backend="openai", model="loopback-model",
                                                            concurrency=2, max_retries=1))
    ws = init_workspace(root, cfg)
    samples = seed_samples(ws, 200)
    ids = [s.id for s in samples]
    write_signals(ws, 0, ids)
    write_proposals(ws, samples)
    rng = np.random.default_rng(0)
    with ws.store.write() as con:
        put_projection(con, 0, "umap", ids, rng.normal(size=(len(ids), 2)))
        upsert_iteration(con, 0, status="selected", counts={"flagged_ids": {"complexity": ids[20:60]}})
    return ws, samples


@pytest.mark.slow
@pytest.mark.browser
def test_two_pages_while_a_job_writes_inert_markup_and_a_contained_upload(tmp_path, monkeypatch):
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from middo_core.jobs import job_status, start_job

    ws, samples = studio_ws(tmp_path / "ws")
    nasty_id = samples[0].id
    events: dict[str, list] = {"dialogs": [], "requests": []}
    with LoopbackOpenAI(delay_s=0.3) as server, \
            studio_server(ws.root, tmp_path / "studio.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages = [browser.new_page(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
        for page in pages:
            page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
            page.on("request", lambda r: events["requests"].append(r.url) if ":9/" in r.url else None)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-web")
        run_id = start_job(ws, "refine", 0, {"axes": ["complexity"]})

        # page 0 walks every page, page 1 keeps reloading the review queue, while the job writes
        routes = ["/", "/diagnose", "/review", "/map", "/iterations"]
        visits = 0
        # a loaded machine can hold the job queued (its worker still importing) past a first round
        while visits < len(routes) or job_status(ws, run_id)["status"] in ("queued", "running"):
            route = routes[visits % len(routes)]
            pages[0].goto(url + route)
            pages[1].goto(url + ("/review" if visits % 2 else "/"))
            for page, where in ((pages[0], route), (pages[1], "review/data")):
                wait_idle(page)
                assert_no_error(page, where)
                assert_inert(page)
            visits += 1
            if visits > 40:
                break
        assert job_status(ws, run_id)["status"] == "done"
        assert server.count > 0

        # lineage shows the sample's text verbatim, inert
        page = pages[0]
        page.goto(url + "/iterations")
        wait_idle(page)
        page.get_by_text("Lineage of a sample").click()
        page.get_by_label("Sample id").fill(nasty_id)
        page.keyboard.press("Enter")
        page.get_by_text("this sample").wait_for()
        wait_idle(page)
        page.get_by_text("<script>alert('x')</script>").first.wait_for(timeout=30_000)
        assert_inert(page)

        # an upload whose name climbs out of the workspace lands in its uploads folder
        page.goto(url + "/")
        wait_idle(page)
        page.get_by_role("tab", name="Import").click()
        wait_idle(page)  # the tab's rerun: a file set on the uploader it replaces is lost
        # the browser sends a bare file name; a hostile client can send any: rewrite it on the wire
        rewritten = []

        def climb(route) -> None:
            body = route.request.post_data_buffer or b""
            hostile = body.replace(b'filename="escaped.json"', b'filename="../../../escaped.json"')
            rewritten.append(hostile != body)
            route.continue_(post_data=hostile)

        page.route("**/_stcore/upload_file/**", climb)
        upload = {"name": "escaped.json", "mimeType": "application/json",
                  "buffer": b'[{"instruction": "Uploaded one", "output": "ok"},'
                            b' {"instruction": "Uploaded two", "output": "ok"}]'}
        button = page.get_by_role("button", name="Import the uploaded file")
        for _ in range(3):  # a rerun still in flight under load can replace the uploader once
            page.locator('input[type="file"]').set_input_files(files=[upload])
            try:
                button.wait_for(timeout=15_000)
                break
            except PlaywrightTimeout:
                wait_idle(page)
        button.click()
        page.get_by_text(re.compile(r"Imported 2 samples")).wait_for(timeout=60_000)
        assert any(rewritten)  # the server really got the climbing name
        assert_no_error(page, "upload")

        # the export goes to the workspace's exports folder
        page.get_by_role("tab", name="Export").click()
        page.get_by_role("button", name=re.compile(r"Export D\(0\)")).click()
        page.get_by_text(re.compile(r"Wrote .*exports")).wait_for(timeout=60_000)
        browser.close()
    uploads = list((ws.artifacts / "uploads").iterdir())
    assert len(uploads) == 1 and uploads[0].name.endswith("escaped.json")
    outside = [p for p in tmp_path.rglob("*escaped.json") if ws.root not in p.parents]
    assert outside == [] and not list(Path(tmp_path.anchor).glob("escaped.json"))
    assert [p.suffix for p in (ws.root / "exports").iterdir()] == [".json"]
    assert events["dialogs"] == [] and events["requests"] == []
