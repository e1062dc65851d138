"""The image of every sample on the map, and the samples inside a box or a lasso drawn on it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from middo_core.map_raster import (
    Frame,
    in_box,
    in_lasso,
    mark,
    pixels,
    png,
    shade_categories,
    shade_values,
)

GREY, RED = (200, 200, 200), (220, 40, 40)


def test_a_point_lands_in_its_pixel_with_the_top_row_at_the_top():
    frame = Frame(0.0, 10.0, 0.0, 5.0, width=10, height=5)
    pix = pixels(np.array([0.5, 9.5, 0.5, 20.0]), np.array([4.5, 0.5, 0.5, 1.0]), frame)
    assert pix.tolist() == [0, 4 * 10 + 9, 4 * 10 + 0, -1]  # top left, bottom right, bottom left, outside


def test_flagged_samples_are_drawn_over_the_rest_and_every_sample_is_drawn():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, 5000), rng.uniform(0, 1, 5000)
    codes = (rng.uniform(size=5000) < 0.1).astype(int)  # 1 = flagged
    frame = Frame.around(x, y, width=40, height=30)
    image = shade_categories(pixels(x, y, frame), codes, np.array([GREY, RED], np.uint8), frame)
    hit = pixels(x[codes == 1], y[codes == 1], frame)
    rows, cols = hit // 40, hit % 40
    assert (image[rows, cols, :3] == RED).all()  # a pixel with a flagged sample is red
    drawn = np.unique(pixels(x, y, frame))
    assert (image.reshape(-1, 4)[drawn, 3] > 0).all()  # no sample is left out
    decoded = np.asarray(Image.open(io.BytesIO(png(image))))
    assert decoded.shape == (30, 40, 4) and (decoded == image).all()


def test_a_signal_colours_each_pixel_by_the_mean_of_its_samples():
    frame = Frame(0.0, 2.0, 0.0, 1.0, width=2, height=1)
    x = np.array([0.5, 0.5, 1.5, 1.5])
    values = np.array([1.0, 3.0, 9.0, np.nan])  # left mean 2 (low step), right mean 9 (high step)
    palette = np.array([[0, 0, 255], [255, 255, 0]], np.uint8)
    image = shade_values(pixels(x, np.full(4, 0.5), frame), values, np.array([0.0, 5.0, 10.0]), palette,
                         np.array(GREY, np.uint8), frame)
    assert image[0, 0, :3].tolist() == [0, 0, 255] and image[0, 1, :3].tolist() == [255, 255, 0]


def test_a_search_marks_its_hits_over_a_faded_map():
    image = np.zeros((5, 5, 4), np.uint8)
    image[..., 3] = 200
    marked = mark(image, np.array([12]), np.array(RED, np.uint8))
    assert marked[2, 2, :3].tolist() == list(RED) and marked[2, 2, 3] == 255
    assert marked[0, 0, 3] == 50  # the rest faded


def test_box_and_lasso_select_exactly_the_points_inside():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-5, 5, 20_000).astype(np.float32), rng.uniform(-5, 5, 20_000).astype(np.float32)
    box = in_box(x, y, (1.0, -2.0), (3.0, 0.5))  # either order
    assert set(box) == set(np.flatnonzero((x >= -2) & (x <= 1) & (y >= 0.5) & (y <= 3)))
    # a triangle, and a square drawn as a lasso
    tri = in_lasso(x, y, [0.0, 4.0, 0.0], [0.0, 0.0, 4.0])
    assert set(tri) == set(np.flatnonzero((x > 0) & (y > 0) & (x + y < 4)))
    square = in_lasso(x, y, [-1, 1, 1, -1], [-1, -1, 1, 1])
    assert set(square) == set(np.flatnonzero((np.abs(x) < 1) & (np.abs(y) < 1)))
    assert in_lasso(x, y, [0.0, 1.0], [0.0, 1.0]).size == 0  # not a polygon


def test_flags_are_coded_per_axis_with_several_axes_apart_and_only_present_ones_kept():
    from middo_core.map_raster import flag_codes, ordered

    masks = {"complexity": np.array([1, 0, 1, 0], bool), "quality": np.array([1, 0, 0, 0], bool)}
    pos = np.array([0, 2, 1, -1, 3])  # the map's rows in the signal table's order (-1: not there)
    codes, names = ordered(*flag_codes(masks, pos, 5), first="not flagged")
    assert [names[c] for c in codes] == ["several axes", "complexity", "not flagged", "not flagged",
                                         "not flagged"]
    assert names == ["not flagged", "complexity", "several axes"]  # quality alone flags none


def test_a_zoomed_view_keeps_the_maps_proportions_and_holds_the_selection():
    from middo_core.map_raster import zoom_view

    whole = Frame(0.0, 20.0, 0.0, 10.0)  # twice as wide as high
    x0, x1, y0, y1 = zoom_view(whole, (4.0, 5.0), (2.0, 6.0))  # a tall box
    assert abs((x1 - x0) / (y1 - y0) - 2.0) < 1e-9
    assert x0 < 4.0 and x1 > 5.0 and y0 < 2.0 and y1 > 6.0
    assert abs((x0 + x1) / 2 - 4.5) < 1e-9 and abs((y0 + y1) / 2 - 4.0) < 1e-9
