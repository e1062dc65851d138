"""The Studio's only caches. Keys include the store version, so a write anywhere shows up."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.components import map_view
from app.components.map_view import MAX_DRAWN, MapFigure
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


def _map_keys(root: str, iteration: int, method: str, version: int) -> tuple[str, str]:
    """What a map's caches depend on: its projection and the signals it is coloured by."""
    return (written(root, f"projection:{iteration}:{method}", version),
            written(root, f"signals:{iteration}", version))


def projection(root: str, iteration: int, method: str, version: int) -> dict[str, Any]:
    """The stored map with what every redraw reuses: float32 coordinates, rows in the signal
    table, and either the escaped hover texts (up to MAX_DRAWN samples, drawn as points) or each
    sample's pixel in the image of all of them (above).

    Shared between sessions and never copied: callers must not modify it.
    """
    return _projection(root, iteration, method, _map_keys(root, iteration, method, version), version)


@st.cache_resource(show_spinner="Loading the map…", max_entries=3)
def _projection(root: str, iteration: int, method: str, keys: tuple[str, str], _version: int) -> dict[str, Any]:
    from middo_core.map_raster import Frame, pixels
    from middo_core.projections import load_projection
    from middo_core.store.projections import projection_size

    version = _version
    ws = workspace(root, version)
    with ws.store.read() as con:
        image = projection_size(con, iteration, method) > MAX_DRAWN
    # an image has no hover, so a million texts are not read for it
    points = load_projection(ws, iteration, method, text_chars=0 if image else HOVER_CHARS)
    hover = None
    if not image:  # plotly reads hover text as HTML: escaped, column-wise (a loop: 0.35 s at 200k)
        text = points["instruction"].fillna("").astype(str)
        for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
            text = text.str.replace(char, entity, regex=False)
        hover = text.to_numpy(dtype=object)
    points = points.drop(columns="instruction")
    # rows of the signal table <-> rows of the map, through the signal table's own index (shared
    # with the pages that open a sample: its hash table of a million ids is built once)
    index = signal_index(root, iteration, version)
    pos = index.get_indexer(points["sample_id"].to_numpy()) if index is not None else None
    row_of = None
    if pos is not None:
        row_of = np.full(len(index), -1, dtype=np.int64)
        row_of[pos[pos >= 0]] = np.flatnonzero(pos >= 0)
    x, y = points["x"].to_numpy(np.float32), points["y"].to_numpy(np.float32)
    frame = Frame.around(x, y) if image else None
    return {"points": points, "hover": hover, "positions": pos, "row_of": row_of, "x": x, "y": y,
            "ids": points["sample_id"].to_numpy(dtype=object), "image": image,
            "frame": frame, "pixels": pixels(x, y, frame) if image else None}


@st.cache_resource(show_spinner=False, max_entries=3)
def _projection_index(root: str, iteration: int, method: str, keys: tuple[str, str], _version: int) -> pd.Index:
    return pd.Index(projection(root, iteration, method, _version)["ids"])


def _rows_of(root: str, iteration: int, method: str, keys: tuple[str, str], version: int,
             ids: list[str]) -> np.ndarray:
    """Rows of the map of the sample ids (those not on the map left out)."""
    mapped = projection(root, iteration, method, version)
    if mapped["row_of"] is not None:
        at = signal_index(root, iteration, version).get_indexer(ids)
        rows = mapped["row_of"][at[at >= 0]]
    else:  # a map without signals: an index of the map's own ids
        rows = _projection_index(root, iteration, method, keys, version).get_indexer(ids)
    return rows[rows >= 0]


def search_positions(root: str, iteration: int, method: str, text: str, version: int) -> np.ndarray | None:
    """Rows of the map whose sample holds `text` (instruction, input or output; case-insensitive);
    None without a search."""
    text = text.strip()
    if not text:
        return None
    return _search_positions(root, iteration, method, text, _map_keys(root, iteration, method, version),
                             version)


@st.cache_resource(show_spinner="Searching…", max_entries=8)
def _search_positions(root: str, iteration: int, method: str, text: str, keys: tuple[str, str],
                      _version: int) -> np.ndarray:
    from middo_core.search_index import candidates
    from middo_core.store.views import matching_ids

    ws = workspace(root, _version)
    narrowed = candidates(ws, text)  # the search index's superset of the matches, if it has one
    with ws.store.read() as con:
        ids = matching_ids(con, iteration, text, candidates=narrowed)
    return np.sort(_rows_of(root, iteration, method, keys, _version, ids))


def map_figure(root: str, iteration: int, method: str, version: int, colour: str,
               m: tuple[float, float, float] | None, search: str = "",
               view: tuple[float, float, float, float] | None = None) -> tuple[MapFigure, Any]:
    """The map figure coloured by `colour` with the flags of m (complexity, diversity, quality),
    the samples found by `search` marked, and that selection (None without signals); an image
    drawn over `view` (x0, x1, y0, y1) only, when given. Built once per choice: a rerun that
    changes none (a lasso, a click in the list) sends the identical figure, which the browser keeps."""
    keys = _map_keys(root, iteration, method, version)
    return _map_figure(root, iteration, method, keys, colour, m, search.strip(), view, version)


def map_zoom(root: str, iteration: int, method: str, version: int,
             region: tuple[str, tuple[float, ...], tuple[float, ...]]) -> tuple[float, float, float, float]:
    """The view (x0, x1, y0, y1) around a box or a lasso, widened to the whole map's proportions so
    that the zoomed image is not stretched."""
    from middo_core.map_raster import zoom_view

    return zoom_view(projection(root, iteration, method, version)["frame"], region[1], region[2])


def _signal_values(mapped: dict[str, Any], colour: str,
                   data: tuple[pd.DataFrame, SignalTable] | None) -> np.ndarray:
    """A signal's value for every row of the map (NaN when unknown)."""
    points = mapped["points"]
    if colour in points:
        return points[colour].to_numpy(np.float64, na_value=np.nan)
    out = np.full(len(points), np.nan)  # another registered signal: from the signal table
    pos = mapped["positions"]
    if data is not None and pos is not None and colour in data[0]:
        column = data[0][colour].to_numpy(np.float64, na_value=np.nan)
        out[pos >= 0] = column[pos[pos >= 0]]
    return out


@st.cache_resource(show_spinner=False, max_entries=6)
def _map_categories(root: str, iteration: int, method: str, keys: tuple[str, str], colour: str,
                    _version: int) -> tuple[np.ndarray, list[str]]:
    """Origin or iteration of creation as (code per row of the map, names), once per map."""
    from middo_core.map_raster import categories

    codes, names = categories(projection(root, iteration, method, _version)["points"][colour])
    return codes, [f"iteration {n}" for n in names] if colour == "created_in_iteration" else names


@st.cache_resource(show_spinner=False, max_entries=8)
def _map_figure(root: str, iteration: int, method: str, keys: tuple[str, str], colour: str,
                m: tuple[float, float, float] | None, search: str,
                view: tuple[float, float, float, float] | None, _version: int) -> tuple[MapFigure, Any]:
    version = _version
    mapped = projection(root, iteration, method, version)
    n = len(mapped["points"])
    from middo_core import map_raster

    data = signals(root, iteration, version) if m is not None or colour not in mapped["points"] else None
    selection = data[1].select(*m) if data is not None and m is not None else None
    continuous = colour not in CATEGORICAL
    values, codes, names = None, None, []
    if continuous:
        values = _signal_values(mapped, colour, data)
    elif colour == "flag":
        codes, names = map_raster.flag_codes(selection.masks if selection is not None else {},
                                             mapped["positions"], n)
    else:
        codes, names = _map_categories(root, iteration, method, keys, colour, version)
    if codes is not None:  # 'not flagged' first, then by name: later ones are drawn on top
        codes, names = map_raster.ordered(codes, names, first="not flagged")
    found = search_positions(root, iteration, method, search, version)
    shown = colour.replace("_", " ")
    found_note = f" · {len(found):,} found by the search" if found is not None else ""
    zoomed = " · zoomed in" if view is not None and mapped["image"] else ""
    title = f"{method.upper()} map of D({iteration}) coloured by {shown} · {n:,} samples{found_note}{zoomed}"
    if not mapped["image"]:
        mask = None
        if found is not None:
            mask = np.zeros(n, dtype=bool)
            mask[found] = True
        labels = values if continuous else np.asarray(names, dtype=object)[codes]
        return map_view.map_figure(mapped["x"], mapped["y"], mapped["ids"], mapped["hover"], labels,
                                   colour, continuous, title, found=mask), selection
    frame, pix = mapped["frame"], mapped["pixels"]
    if view is not None:  # the same samples, each in its pixel of the view (outside it: none)
        frame = map_raster.Frame(*view)
        pix = map_raster.pixels(mapped["x"], mapped["y"], frame)
    if continuous:
        edges = map_view.step_edges(values, len(map_view.VIRIDIS))
        steps = [] if edges is None else map_view.step_names(edges)
        palette = map_view.VIRIDIS if len(steps) > 1 else map_view.VIRIDIS[5:6]
        image = map_raster.shade_values(pix, values, edges if edges is not None else np.array([0.0]),
                                        map_view.rgb(palette), map_view.rgb([map_view.MISSING])[0], frame)
        legend = list(zip(steps, palette, strict=False))[::-1]
        if not np.isfinite(values).all():
            legend.append((f"no {shown}", map_view.MISSING))
    else:
        colours = map_view.category_colours(colour, names)
        image = map_raster.shade_categories(pix, codes, map_view.rgb(colours), frame)
        legend = list(zip(names, colours, strict=True))[::-1]
    if found is not None:
        image = map_raster.mark(image, pix[found], map_view.rgb([map_view.SEARCH_COLOUR])[0])
        legend.insert(0, ("found by the search", map_view.SEARCH_COLOUR))
    note = (f"Every one of the {n:,} samples is drawn: each pixel takes the colour of its samples "
            + ("(their mean value)" if continuous else "(flagged ones over the rest)" if colour == "flag"
               else "(the last in the legend's order over the others)")
            + ", darker where more of them lie. Draw a box or a lasso to list the samples inside "
            "(or to zoom in on them).")
    return map_view.image_figure(map_raster.png(image), frame, legend, title, n, note), selection


def map_region(root: str, iteration: int, method: str, version: int,
               region: tuple[str, tuple[float, ...], tuple[float, ...]]) -> np.ndarray:
    """Rows of the map inside a box or a lasso (kind, xs, ys), over every coordinate."""
    return _map_region(root, iteration, method, _map_keys(root, iteration, method, version), region, version)


@st.cache_resource(show_spinner=False, max_entries=8)
def _map_region(root: str, iteration: int, method: str, keys: tuple[str, str],
                region: tuple[str, tuple[float, ...], tuple[float, ...]], _version: int) -> np.ndarray:
    from middo_core.map_raster import in_box, in_lasso

    mapped = projection(root, iteration, method, _version)
    kind, xs, ys = region
    if kind == "box":
        return in_box(mapped["x"], mapped["y"], (xs[0], xs[-1]), (ys[0], ys[-1]))
    return in_lasso(mapped["x"], mapped["y"], list(xs), list(ys))


def map_rows(root: str, iteration: int, method: str, version: int, ids: list[str]) -> np.ndarray:
    """Rows of the map of the sample ids (a selection of points)."""
    return _rows_of(root, iteration, method, _map_keys(root, iteration, method, version), version, ids)


def map_ids(root: str, iteration: int, method: str, version: int, rows: np.ndarray,
            selection: Any, limit: int) -> list[str]:
    """The sample ids of the first `limit` of the map's `rows`, flagged ones first (those a
    curator reviews)."""
    mapped = projection(root, iteration, method, version)
    rows = np.asarray(rows, dtype=np.int64)
    pos = mapped["positions"]
    if selection is not None and pos is not None and rows.size:
        at = pos[rows]
        flagged = np.zeros(rows.size, dtype=bool)
        for mask in selection.masks.values():
            flagged[at >= 0] |= mask[at[at >= 0]]
        rows = np.concatenate([rows[flagged], rows[~flagged]])
    return [str(i) for i in mapped["ids"][rows[:limit]]]


CATEGORICAL = ("flag", "origin", "created_in_iteration")
HOVER_CHARS = 80
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
