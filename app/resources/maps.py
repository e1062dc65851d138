"""The Map page's cached readers: a stored projection with what every redraw reuses, its figure
(points up to MAX_DRAWN samples, an image of all of them above), the rows inside a box or a
lasso, and the rows a search finds. Keys include the store version, like every reader in
app/resources."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.components import map_view
from app.components.map_view import MAX_DRAWN, MapFigure
from app.resources import signal_index, signals, workspace, written
from middo_core.selection import SignalTable

CATEGORICAL = ("flag", "origin", "created_in_iteration")
HOVER_CHARS = 80


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
