"""The Studio's only caches (the Map page's are in app/resources/maps.py). Keys include the store
version, so a write anywhere shows up."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from middo_core import summaries, version_diff
from middo_core.selection import SignalTable
from middo_core.version_diff import DiffSummary, VersionChange
from middo_core.workspace import STORE_FILE, Workspace, open_workspace


def store_version(root: str | Path) -> int:
    """Changes whenever the store file (or its write-ahead log) is written."""
    out = 0
    for name in (STORE_FILE, STORE_FILE + ".wal"):
        try:
            stat = (Path(root) / name).stat()
        except FileNotFoundError:
            continue
        out = max(out, stat.st_mtime_ns) + stat.st_size
    return out


@st.cache_resource(show_spinner=False, max_entries=8)
def workspace(root: str, version: int) -> Workspace:
    return open_workspace(Path(root))


@st.cache_data(show_spinner=False, max_entries=16)
def status(root: str, version: int) -> dict[str, Any]:
    """The workspace's state, without the flagged ids each selection stores (200,000 ids at 1M
    samples, unpickled on every call of a cached dict); no page reads them."""
    from middo_core.status import workspace_status

    out = workspace_status(workspace(root, version))
    for record in out["iterations"]:
        record["counts"].pop("flagged_ids", None)
    return out


@st.cache_data(show_spinner=False, max_entries=8)
def paper_tables(root: str, version: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's Table 6 (flagged per axis, sizes) and Table 1 (scores) of this workspace."""
    from middo_core import tables

    ws = workspace(root, version)
    return tables.iteration_table(ws), tables.metrics_table(ws)


@st.cache_data(show_spinner=False, max_entries=16)
def review_counts(root: str, iteration: int, version: int) -> dict[str, dict[str, int]]:
    """axis -> status -> count of the iteration's proposals."""
    from middo_core.review import review_counts as counts

    return counts(workspace(root, version), iteration)


@st.cache_data(show_spinner=False, max_entries=32)
def _write_stamps(root: str, version: int) -> dict[str, str]:
    from middo_core.store.db import write_stamps

    with workspace(root, version).store.read() as con:
        return write_stamps(con)


def written(root: str, what: str, version: int) -> str:
    """A key that changes only when `what` ("signals:0", "projection:0:umap") is written again, so a
    decision on a proposal (any write) does not reload a million signals; the store version for a
    store written before these stamps."""
    return _write_stamps(root, version).get(what) or f"store version {version}"


def signals(root: str, iteration: int, version: int) -> tuple[pd.DataFrame, SignalTable] | None:
    """The per-sample signals of D(iteration) and their threshold table (None when undiagnosed).
    Shared between sessions: callers must not modify them."""
    return _signals(root, iteration, written(root, f"signals:{iteration}", version), version)


# One table per diagnosed iteration in view (the current one and the compare one) and one left
# from before a new diagnosis: each holds every sample's signals (about 200 MB at 1M samples).
@st.cache_resource(show_spinner="Loading signals…", max_entries=3)
def _signals(root: str, iteration: int, key: str, _version: int) -> tuple[pd.DataFrame, SignalTable] | None:
    from middo_core.store.signals import load_signals

    ws = workspace(root, _version)
    with ws.store.read() as con:
        frame = load_signals(con, iteration, neighbours=False)
    if frame is None or frame.empty:
        return None
    return frame, SignalTable(frame)


def histograms(root: str, iteration: int, compare: int | None, version: int,
               columns: tuple[str, ...], bins: int = 50) -> dict[str, dict[str, np.ndarray]]:
    """Per column: shared bin edges and the counts of the iteration (and the compare one)."""
    keys = (written(root, f"signals:{iteration}", version),
            written(root, f"signals:{compare}", version) if compare is not None else None)
    return _histograms(root, iteration, compare, keys, columns, bins, version)


@st.cache_data(show_spinner=False, max_entries=32)
def _histograms(root: str, iteration: int, compare: int | None, keys: tuple, columns: tuple[str, ...],
                bins: int, _version: int) -> dict[str, dict[str, np.ndarray]]:
    version = _version
    current = signals(root, iteration, version)
    other = signals(root, compare, version) if compare is not None else None
    out: dict[str, dict[str, np.ndarray]] = {}
    for col in columns:
        a = current[0][col].to_numpy(float, na_value=np.nan) if current and col in current[0] else np.array([])
        b = other[0][col].to_numpy(float, na_value=np.nan) if other and col in other[0] else np.array([])
        edges = summaries.shared_edges(a, b, bins=bins)
        out[col] = {"edges": edges, "current": summaries.histogram(a, edges),
                    "compare": summaries.histogram(b, edges) if b.size else None}
    return out


def signal_index(root: str, iteration: int, version: int) -> pd.Index | None:
    """The signal table's sample ids as an index: the rows of a page of ids without a scan.
    Shared between sessions: callers must not modify it."""
    return _signal_index(root, iteration, written(root, f"signals:{iteration}", version), version)


@st.cache_resource(show_spinner=False, max_entries=3)
def _signal_index(root: str, iteration: int, key: str, _version: int) -> pd.Index | None:
    data = signals(root, iteration, _version)
    return pd.Index(data[1].ids) if data is not None else None


@st.cache_data(show_spinner=False, max_entries=64)
def bin_samples(root: str, iteration: int, column: str, lo: float, hi: float, last: bool,
                limit: int, offset: int, version: int) -> tuple[int, pd.DataFrame]:
    """How many samples of D(iteration) have `column` in one histogram bin, and one page of them
    (id, instruction excerpt, value), read from the store a page at a time."""
    from middo_core.store.signals import count_in_range, samples_in_range

    with workspace(root, version).store.read() as con:
        return (count_in_range(con, iteration, column, lo, hi, include_hi=last),
                samples_in_range(con, iteration, column, lo, hi, include_hi=last, limit=limit,
                                 offset=offset, text_chars=EXCERPT_CHARS))


@st.cache_data(show_spinner=False, max_entries=32)
def sample_record(root: str, iteration: int, sample_id: str, version: int) -> dict[str, Any] | None:
    """One sample whole, with its signals in D(iteration) (None when it is not in the store)."""
    from middo_core.store.views import sample_signals

    with workspace(root, version).store.read() as con:
        rows = sample_signals(con, iteration, [sample_id])
    return rows.to_dict("records")[0] if len(rows) else None


def scatter_subset(root: str, iteration: int, version: int, max_points: int) -> np.ndarray:
    return _scatter_subset(root, iteration, written(root, f"signals:{iteration}", version), max_points,
                           version)


@st.cache_data(show_spinner=False, max_entries=8)
def _scatter_subset(root: str, iteration: int, key: str, max_points: int, _version: int) -> np.ndarray:
    data = signals(root, iteration, _version)
    n = len(data[1]) if data else 0
    return summaries.drawing_subset(n, None, max_points=max_points)


EXCERPT_CHARS = 120


@st.cache_data(show_spinner=False, max_entries=32)
def loop_state(root: str, iteration: int, version: int) -> tuple[dict[str, bool], str]:
    """The loop stepper's states and next action for an iteration."""
    from middo_core import loop

    ws = workspace(root, version)
    return loop.step_states(ws, iteration), loop.next_action(ws, iteration)


@st.cache_data(show_spinner=False, max_entries=16)
def dataset_statistics(root: str, iteration: int, version: int) -> dict[str, Any]:
    from middo_core.store.views import dataset_statistics as stats

    with workspace(root, version).store.read() as con:
        return stats(con, iteration)


@st.cache_data(show_spinner=False, max_entries=16)
def dataset_versions(root: str, version: int) -> dict[int, int]:
    """Dataset versions with their training sizes, oldest first."""
    return version_diff.versions(workspace(root, version))


@st.cache_data(show_spinner="Comparing versions…", max_entries=16)
def version_diff_summary(root: str, a: int, b: int, version: int) -> DiffSummary:
    """Sizes of D(a) and D(b) and their changes counted per kind and axis."""
    return version_diff.diff_summary(workspace(root, version), a, b)


@st.cache_data(show_spinner=False, max_entries=32)
def version_diff_page(root: str, a: int, b: int, kind: str | None, axis: str | None,
                      limit: int, offset: int, version: int) -> list[VersionChange]:
    """One page of changes from D(a) to D(b) with their texts."""
    return version_diff.diff_page(workspace(root, version), a, b, kind=kind, axis=axis, limit=limit, offset=offset)


@st.cache_data(show_spinner=False, max_entries=2)
def version_diff_export(root: str, a: int, b: int, kind: str | None, axis: str | None,
                        suffix: str, version: int) -> bytes:
    """The matching changes as a .jsonl or .csv file's bytes (made when the download is clicked)."""
    ws = workspace(root, version)
    with tempfile.TemporaryDirectory(dir=ws.artifact_dir("tmp")) as folder:
        path = Path(folder) / f"changes{suffix}"
        version_diff.export_diff(ws, a, b, path, kind=kind, axis=axis)
        return path.read_bytes()


# --- reads the pages make: cached per store version, or fresh where a decision depends on them ----

@st.cache_data(show_spinner=False, max_entries=16)
def iteration_numbers(root: str, version: int) -> list[int]:
    from middo_core.store.views import iteration_numbers as numbers

    with workspace(root, version).store.read() as con:
        return numbers(con)


@st.cache_data(show_spinner=False, max_entries=16)
def failure_reasons(root: str, iteration: int, version: int) -> dict[str | None, int]:
    from middo_core.store.proposals import failure_reasons as reasons

    with workspace(root, version).store.read() as con:
        return reasons(con, iteration)


@st.cache_data(show_spinner=False, max_entries=64)
def sample_signals(root: str, iteration: int, ids: tuple[str, ...], version: int) -> pd.DataFrame:
    from middo_core.store.views import sample_signals as rows

    with workspace(root, version).store.read() as con:
        return rows(con, iteration, list(ids))


@st.cache_data(show_spinner=False, max_entries=64)
def browse_page(root: str, iteration: int, text: str, origin: str | None, limit: int,
                offset: int, version: int) -> tuple[int, pd.DataFrame]:
    """How many samples match the search, and one page of them (one pass over the texts)."""
    from middo_core.search_index import candidates
    from middo_core.store.views import browse_page as page

    ws = workspace(root, version)
    narrowed = candidates(ws, text) if text else None
    with ws.store.read() as con:
        return page(con, iteration, text, origin, limit, offset, candidates=narrowed)


@st.cache_data(ttl=3, show_spinner=False, max_entries=8)
def search_index_state(root: str, version: int):
    """How far the search index is (search_index.IndexState); re-read every few seconds
    while its job appends."""
    from middo_core.search_index import index_state

    return index_state(workspace(root, version))


@st.cache_data(show_spinner=False, max_entries=8)
def metrics_and_summary(root: str, version: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Benchmark scores (long form) and the per-iteration signal summary."""
    from middo_core.store.views import metrics_long, signal_summary

    with workspace(root, version).store.read() as con:
        return metrics_long(con), signal_summary(con)


@st.cache_data(show_spinner=False, max_entries=16)
def review_ids(root: str, iteration: int, axis: str | None, status: str | None,
               version: int, owed_by: str | None = None) -> list[str]:
    """The ids of the review queue for a filter, oldest first (texts are read a page at a time);
    with `owed_by`, the proposals that curator still owes."""
    from middo_core.review import review_queue_ids

    return review_queue_ids(workspace(root, version), iteration, axis, status, owed_by)


@st.cache_data(show_spinner=False, max_entries=16)
def agreement(root: str, iteration: int, version: int):
    """Agreement between the curators of an iteration's proposals, and each curator's figures."""
    from middo_core.agreement import review_agreement

    return review_agreement(workspace(root, version), iteration)


def proposal_status(root: str, proposal_id: str) -> str | None:
    """The proposal's status now (never cached: a decision is checked against it)."""
    from middo_core.store.proposals import proposal_states

    with workspace(root, store_version(root)).store.read() as con:
        state = proposal_states(con, [proposal_id]).get(proposal_id)
    return None if state is None else state[0]


def latest_run(root: str, iteration: int | None, kinds: tuple[str, ...]) -> dict[str, Any] | None:
    """The newest run of `kinds` (never cached: the pages poll it)."""
    from middo_core.store.views import latest_run as newest

    with workspace(root, store_version(root)).store.read() as con:
        return newest(con, iteration, kinds)


def other_signal_columns(root: str, iteration: int, version: int) -> tuple[str, ...]:
    """Numeric columns of registered signals beyond the three axes that hold a value in D(iteration)."""
    from middo_core.store.signals import extra_columns

    loaded = signals(root, iteration, version)
    if loaded is None:
        return ()
    frame = loaded[0]
    return tuple(c for c in extra_columns(frame) if frame[c].notna().any())


@st.cache_data(show_spinner=False, max_entries=8)
def canaries(root: str, iteration: int, version: int) -> pd.DataFrame:
    """D(iteration)'s canaries with their signal values (empty when none were scored)."""
    from middo_core.store.canaries import load_canaries

    with workspace(root, version).store.read() as con:
        return load_canaries(con, iteration)


@st.cache_data(show_spinner=False, max_entries=16)
def verdicts(root: str, iteration: int, version: int) -> pd.DataFrame:
    """The standing curators' verdicts on D(iteration)'s flags."""
    from middo_core.store.canaries import current_verdicts

    with workspace(root, version).store.read() as con:
        return current_verdicts(con, iteration)


def health(root: str, iteration: int, version: int, m: dict[str, float]):
    """The canary health of D(iteration)'s signals at m (None: no canaries); cheap per m."""
    from middo_core.health import health_of

    found = canaries(root, iteration, version)
    loaded = signals(root, iteration, version)
    if found.empty or loaded is None:
        return None
    return health_of(iteration, loaded[1], found, m)


def verdict_precision(root: str, iteration: int, version: int, m: dict[str, float]):
    """Per axis: precision of its flags at m against the verdicts, and the m they suggest."""
    from middo_core.health import verdict_precision as precision

    loaded = signals(root, iteration, version)
    if loaded is None:
        return {}
    return precision(workspace(root, version), iteration, loaded[1], m,
                     verdicts(root, iteration, version))


@st.cache_data(ttl=3, show_spinner=False)
def model_server(model: str) -> dict[str, Any]:
    """The managed vLLM server of `model`: state (up, starting, stopped), pid, port, log tail,
    and whether vLLM's environment is installed. Read again every few seconds, not per rerun:
    a server that is up answers a health check."""
    from middo_core.llm.vllm_server import VLLMServer, vllm_installed

    server = VLLMServer(model)
    return {**server.status(), "installed": vllm_installed(), "log_tail": server.log_tail(8)}


def stop_model_server(model: str) -> bool:
    """Stop the managed server of `model` (its engine workers too); False if none ran."""
    from middo_core.llm.vllm_server import VLLMServer

    stopped = VLLMServer(model).stop()
    model_server.clear()
    return stopped
