"""Every sample of a map as one image, and the samples inside a box or a lasso drawn on it.

Datashader's method in numpy: count the points that fall in each pixel, pick each pixel's colour
from what lies there (the top category, or the mean of a signal), set its opacity from the count
on a log scale, and send one PNG. The browser draws one image whatever the number of samples
(a million points in ~0.1 s on the server, a ~1 MB image), and a selection is resolved here over
every coordinate, so it never depends on what the browser could draw.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

WIDTH, HEIGHT = 1000, 580  # pixels of the image, about the chart's size on a laptop screen
MARGIN = 0.02  # of each side of the extent, so points on the edge are not cut in half
MIN_ALPHA, MAX_ALPHA = 150, 255  # a lone point stays visible next to a dense cluster
SPARSE = 0.01  # of the pixels holding a sample, below which samples are drawn larger


@dataclass(frozen=True)
class Frame:
    """The data rectangle an image covers and its size in pixels (row 0 is the top, y1)."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = WIDTH
    height: int = HEIGHT

    @classmethod
    def around(cls, x: np.ndarray, y: np.ndarray, width: int = WIDTH, height: int = HEIGHT) -> Frame:
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            return cls(0.0, 1.0, 0.0, 1.0, width, height)
        lo_x, hi_x = float(x[ok].min()), float(x[ok].max())
        lo_y, hi_y = float(y[ok].min()), float(y[ok].max())
        pad_x = max(hi_x - lo_x, 1e-9) * MARGIN
        pad_y = max(hi_y - lo_y, 1e-9) * MARGIN
        return cls(lo_x - pad_x, hi_x + pad_x, lo_y - pad_y, hi_y + pad_y, width, height)

    @property
    def pixel(self) -> tuple[float, float]:
        """A pixel's width and height in data units."""
        return (self.x1 - self.x0) / self.width, (self.y1 - self.y0) / self.height


def zoom_view(whole: Frame, xs: tuple[float, ...], ys: tuple[float, ...]) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) around the points xs, ys (a box or a lasso), widened to the proportions of
    the whole map and by a margin, so its samples are not stretched or cut at the edges."""
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    w, h = max(x1 - x0, 1e-9), max(y1 - y0, 1e-9)
    ratio = (whole.x1 - whole.x0) / (whole.y1 - whole.y0)
    w, h = max(w, h * ratio), max(h, w / ratio)
    w, h = w * (1 + 2 * MARGIN), h * (1 + 2 * MARGIN)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2


def pixels(x: np.ndarray, y: np.ndarray, frame: Frame) -> np.ndarray:
    """Each point's pixel as one flat index (row * width + column); -1 outside the frame or NaN."""
    px, py = frame.pixel
    col = np.floor((np.asarray(x, np.float64) - frame.x0) / px)
    row = np.floor((frame.y1 - np.asarray(y, np.float64)) / py)
    inside = (col >= 0) & (col < frame.width) & (row >= 0) & (row < frame.height)
    out = np.full(col.shape, -1, dtype=np.int64)
    out[inside] = row[inside].astype(np.int64) * frame.width + col[inside].astype(np.int64)
    return out


def flag_codes(masks: dict[str, np.ndarray], pos: np.ndarray | None, n: int) -> tuple[np.ndarray, list[str]]:
    """Per row of the map: 0 not flagged, i for the i-th axis of `masks` alone, the last code for
    several axes; with the names. `pos`: each row's position in the masks (-1: not there)."""
    names = ["not flagged", *masks, "several axes"]
    codes = np.zeros(n, np.int64)
    if pos is None or not masks:
        return codes, names[:1]
    at = pos >= 0
    hits = np.zeros(n, np.int64)
    for code, mask in enumerate(masks.values(), start=1):
        flagged = np.zeros(n, dtype=bool)
        flagged[at] = np.asarray(mask, dtype=bool)[pos[at]]
        codes[flagged] = code
        hits += flagged
    codes[hits > 1] = len(names) - 1
    return codes, names


def categories(values: Any) -> tuple[np.ndarray, list[str]]:
    """(code per value, names) of a column of labels."""
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(values).fillna("none").astype(str), sort=True)
    return codes.astype(np.int64), [str(u) for u in uniques]


def ordered(codes: np.ndarray, names: list[str], first: str = "") -> tuple[np.ndarray, list[str]]:
    """Only the categories that occur, `first` first and the rest by name, codes renumbered."""
    present = np.flatnonzero(np.bincount(codes, minlength=len(names)))
    order = sorted(present, key=lambda c: (names[c] != first, names[c]))
    remap = np.zeros(len(names), np.int64)
    remap[order] = np.arange(len(order))
    return remap[codes], [names[c] for c in order]


def _alpha(counts: np.ndarray) -> np.ndarray:
    top = counts.max() if counts.size else 0
    if top <= 0:
        return np.zeros(counts.shape, np.uint8)
    level = np.log1p(counts) / np.log1p(top)
    alpha = MIN_ALPHA + (MAX_ALPHA - MIN_ALPHA) * level
    return np.where(counts > 0, alpha, 0).astype(np.uint8)


def _image(rgb: np.ndarray, counts: np.ndarray, frame: Frame) -> np.ndarray:
    out = np.empty((frame.height * frame.width, 4), np.uint8)
    out[:, :3] = rgb
    out[:, 3] = _alpha(counts)
    image = spread(out.reshape(frame.height, frame.width, 4))
    # a sparse image (a zoomed-in view, a small map) grows its samples once more: 5 x 5 pixels
    return spread(image) if (counts > 0).sum() < SPARSE * counts.size else image


def spread(image: np.ndarray) -> np.ndarray:
    """Empty pixels next to a drawn one take its colour: a lone sample is 3 x 3 pixels, which the
    eye finds (and the browser's scaling keeps), while dense regions stay as they are."""
    out = image.copy()
    empty = out[..., 3] == 0
    for shift in ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)):
        src = np.roll(image, shift, axis=(0, 1))  # wraps at the edges: the frame's margin is empty
        take = empty & (src[..., 3] > 0)
        out[take] = src[take]
        empty &= ~take
    return out


def shade_categories(pix: np.ndarray, codes: np.ndarray, colours: np.ndarray, frame: Frame) -> np.ndarray:
    """RGBA image: each pixel in the colour of the last category (in code order) that has a point
    there, so later categories (the flagged ones) are drawn over earlier ones, as scatter traces are."""
    size = frame.width * frame.height
    on = pix >= 0
    pix, codes = pix[on], np.asarray(codes)[on]
    counts = np.bincount(pix, minlength=size)
    top = np.zeros(size, np.int64)
    for code in range(len(colours)):
        top[np.bincount(pix[codes == code], minlength=size) > 0] = code
    return _image(np.asarray(colours, np.uint8)[top], counts, frame)


def shade_values(pix: np.ndarray, values: np.ndarray, edges: np.ndarray, colours: np.ndarray,
                 missing: np.ndarray, frame: Frame) -> np.ndarray:
    """RGBA image: each pixel in the step (between `edges`, ends open) of its points' mean value;
    `missing` where none of its points has a value."""
    size = frame.width * frame.height
    on = pix >= 0
    pix, values = pix[on], np.asarray(values, np.float64)[on]
    counts = np.bincount(pix, minlength=size)
    known = np.isfinite(values)
    n_known = np.bincount(pix[known], minlength=size)
    total = np.bincount(pix[known], weights=values[known], minlength=size)
    mean = np.divide(total, n_known, out=np.full(size, np.nan), where=n_known > 0)
    k = len(colours)
    step = np.clip(np.searchsorted(edges, mean, side="right") - 1, 0, k - 1)
    rgb = np.asarray(colours, np.uint8)[step]
    rgb[n_known == 0] = missing
    return _image(rgb, counts, frame)


def mark(image: np.ndarray, pix: np.ndarray, colour: np.ndarray, dim: float = 0.25) -> np.ndarray:
    """A copy of `image` with every other pixel faded and the pixels `pix` (grown by one pixel, so
    a single hit can be seen) drawn in `colour`: the samples a search found, over the rest."""
    out = image.copy()
    out[..., 3] = (out[..., 3] * dim).astype(np.uint8)
    h, w = out.shape[:2]
    pix = pix[pix >= 0]
    rows, cols = pix // w, pix % w
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            r, c = np.clip(rows + dr, 0, h - 1), np.clip(cols + dc, 0, w - 1)
            out[r, c, :3] = colour
            out[r, c, 3] = 255
    return out


def png(image: np.ndarray) -> bytes:
    """The RGBA image as PNG bytes (fast compression: the image is sent once per colouring)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def in_box(x: np.ndarray, y: np.ndarray, xs: tuple[float, float], ys: tuple[float, float]) -> np.ndarray:
    """Positions of the points inside the box spanned by xs and ys (either order)."""
    (a, b), (c, d) = sorted(xs), sorted(ys)
    return np.flatnonzero((x >= a) & (x <= b) & (y >= c) & (y <= d))


def in_lasso(x: np.ndarray, y: np.ndarray, xs: list[float], ys: list[float]) -> np.ndarray:
    """Positions of the points inside the polygon (even-odd rule), checked edge by edge over the
    points of its bounding box only."""
    px, py = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    if px.size < 3:
        return np.array([], dtype=np.int64)
    cand = in_box(x, y, (px.min(), px.max()), (py.min(), py.max()))
    cx, cy = np.asarray(x[cand], np.float64), np.asarray(y[cand], np.float64)
    inside = np.zeros(cand.size, dtype=bool)
    for x1, y1, x2, y2 in zip(px, py, np.roll(px, -1), np.roll(py, -1), strict=True):
        crosses = (y1 > cy) != (y2 > cy)
        if not crosses.any():
            continue
        at = x1 + (cy - y1) * (x2 - x1) / ((y2 - y1) if y2 != y1 else 1e-300)
        inside ^= crosses & (cx < at)
    return cand[inside]
