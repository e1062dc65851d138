"""The search index (SQLite FTS5 trigrams beside the DuckDB store): a search through it finds
exactly what the scan finds, follows the store as samples are added, resumes after a stop, starts
over from a damaged file, and is built by a background job that the Data page starts."""

from __future__ import annotations

import pytest

from middo_core.progress import Cancelled
from middo_core.sample import Sample
from middo_core.search_index import (
    candidates,
    index_path,
    index_state,
    update_index,
)
from middo_core.store.samples import add_members, insert_samples, samples_frame
from middo_core.store.views import browse_page, matching_ids
from tests.app.studio_helpers import open_app, texts, wait_final

PLACES = [("France", "Paris"), ("Peru", "Lima"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"),
          ("Chile", "Santiago"), ("Norway", "Oslo"), ("Egypt", "Cairo")]


def make_samples(n: int, start: int = 0) -> list[Sample]:
    out = []
    for i in range(start, start + n):
        country, city = PLACES[i % len(PLACES)]
        out.append(Sample(
            instruction=f"Record {i}: name the capital of {country}." if i % 3 else
            f"Record {i}: Write a haiku about {city.upper()}.",
            input="" if i % 5 else f"Context {i * 7}: a café in {city}",
            output=f"The capital of {country} is {city}." + (" Ça va." if i % 11 == 0 else "")))
    return out


def add(ws, samples: list[Sample]) -> None:
    with ws.store.write() as con:
        insert_samples(con, samples_frame(samples))
        add_members(con, 0, [s.id for s in samples])


QUERIES = ["capital of Peru", "PERU", "lima.", "haiku about osl", "Record 1234:", "Context 70:",
           "zzz-never", "of Kenya is Nairobi"]


def scan_and_index(ws, text: str) -> tuple[tuple[int, list[str]], tuple[int, list[str]], list[str] | None]:
    found = candidates(ws, text)
    with ws.store.read() as con:
        total, page = browse_page(con, 0, text, limit=5000)
        n, narrowed = browse_page(con, 0, text, limit=5000, candidates=found)
        assert matching_ids(con, 0, text, candidates=found) == matching_ids(con, 0, text)
    return (total, list(page["id"])), (n, list(narrowed["id"])), found


@pytest.fixture
def ws(workspace_factory):
    ws = workspace_factory("search")
    add(ws, make_samples(3000))
    return ws


def test_a_search_through_the_index_finds_exactly_what_the_scan_finds(ws):
    assert candidates(ws, "capital of Peru") is None  # no index yet: the scan
    report = update_index(ws, chunk=700)
    assert report["indexed"] == report["added"] == 3000
    assert index_state(ws).ready
    for text in QUERIES:
        scan, indexed, found = scan_and_index(ws, text)
        assert found is not None, text  # each of these is narrowed by the index
        assert len(found) < 3000 * 0.2
        assert indexed == scan, text
    assert scan_and_index(ws, "capital of Peru")[0][0] == sum(i % 7 == 1 for i in range(3000))
    # the index narrows: a rare query reads a handful of samples, one found nowhere none
    assert len(candidates(ws, "Record 1234:")) <= 3
    assert candidates(ws, "zzz-never") == []
    # queries it cannot narrow are scanned: too short, outside ASCII, or matching most samples
    for text in ("ca", "café", "Ça va", "The capital"):
        assert candidates(ws, text) is None, text
        scan, narrowed, _ = scan_and_index(ws, text)
        assert narrowed == scan and scan[0] > 0


def test_the_index_follows_added_samples_and_resumes_after_a_stop(ws):
    update_index(ws)
    add(ws, make_samples(1000, start=3000))
    state = index_state(ws)
    assert state.wanted is False and not state.ready and state.indexed == 3000
    assert candidates(ws, "Record 3500:") is None  # behind the store: scanned, still found
    assert scan_and_index(ws, "Record 3500:")[0][0] == 1

    seen: list[int] = []

    def stop_after_first_chunk(ev):
        seen.append(ev.done)
        if len(seen) == 2:  # the first chunk of 300 is committed
            raise Cancelled()

    with pytest.raises(Cancelled):
        update_index(ws, progress=stop_after_first_chunk, chunk=300)
    assert index_state(ws).indexed == 3300
    report = update_index(ws, chunk=300)
    assert report["added"] == 700 and index_state(ws).ready  # only the rest
    scan, indexed, found = scan_and_index(ws, "Record 3500:")
    assert found is not None and indexed == scan and scan[0] == 1


def test_two_builders_at_once_leave_one_whole_index(ws):
    """Two tabs of the Data page (or a benchmark beside the job) may each start a build."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: update_index(ws, chunk=400), range(2)))
    assert sorted(r["added"] for r in reports) == [0, 3000]  # the second found it built
    found = candidates(ws, "capital of Peru")
    assert found is not None and len(found) == len(set(found))
    scan, indexed, _ = scan_and_index(ws, "capital of Peru")
    assert indexed == scan


def test_a_damaged_index_is_started_over(ws):
    update_index(ws)
    path = index_path(ws)
    path.write_bytes(b"not a database" * 100)
    for extra in path.parent.glob(path.name + "-*"):
        extra.unlink()
    assert not index_state(ws).ready and candidates(ws, "PERU") is None
    report = update_index(ws)
    assert report["added"] == 3000 and index_state(ws).ready
    scan, indexed, found = scan_and_index(ws, "PERU")
    assert found is not None and indexed == scan


def test_the_data_page_builds_the_index_in_the_background(ws, monkeypatch):
    from middo_core.jobs import job_status
    from middo_core.store.runs import list_runs

    monkeypatch.setenv("MIDDO_SEARCH_INDEX_FROM", "1000")
    monkeypatch.setattr("middo_core.search_index.INDEX_FROM", 1000)
    at = open_app(ws.root, "data")
    assert "Searching scans every text until the search index is built (0 of 3,000" in texts(at)
    with ws.store.read() as con:
        runs = list_runs(con)
    assert list(runs["kind"]) == ["search_index"]
    status = wait_final(ws, runs["id"].iloc[0])
    assert status["status"] == "done", job_status(ws, runs["id"].iloc[0], log_lines=20)
    assert index_state(ws).ready
    at.text_input(key="browse_text").set_value("capital of Peru").run()
    assert not at.exception
    shown = texts(at)
    assert "Searching scans" not in shown
    with ws.store.read() as con:
        total = browse_page(con, 0, "capital of Peru")[0]
    assert f"of {total:,} in D(0)" in shown


def test_a_search_takes_its_text_literally_ignoring_case(workspace_factory):
    ws = workspace_factory("literal")
    texts_in = ["Rename snake_case to camelCase", "snakeXcase is no word", "It is 100% SURE",
                "It is 1000 sure", "Use a.b here", "Use axb here", "Brackets (Record 7) [x]"]
    add(ws, [Sample(instruction=t, output="fine") for t in texts_in])
    with ws.store.read() as con:
        def found(text: str) -> list[str]:
            return sorted(browse_page(con, 0, text, limit=50)[1]["instruction"])

        # ILIKE would read _ and % as wildcards and find the second of each pair too
        assert found("SNAKE_CASE") == ["Rename snake_case to camelCase"]
        assert found("100%") == ["It is 100% SURE"]
        assert found("a.b") == ["Use a.b here"]
        assert found("(record 7) [X]") == ["Brackets (Record 7) [x]"]
        assert len(found("IT IS")) == 2 and len(found("")) == len(texts_in)
