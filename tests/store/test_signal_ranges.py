"""Samples in a value range: exactly the samples of a histogram bin, paged, texts of the page only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from middo_core import summaries
from middo_core.sample import Sample
from middo_core.store.samples import add_members, insert_samples, samples_frame
from middo_core.store.signals import count_in_range, samples_in_range, write_signals

N = 240


@pytest.fixture
def diagnosed(workspace_factory):
    """D(0) of N samples with losses (a few missing or not finite) and integer 0-10 ratings, whose
    values fall on bin edges; D(1) holds one more sample with a signal row of its own."""
    ws = workspace_factory("ranges")
    samples = [Sample(instruction=f"Question {i}: what is {i} squared?", output=str(i * i)) for i in range(N)]
    extra = Sample(instruction="Only in D(1)", output="x")
    ids = [s.id for s in samples]
    rng = np.random.default_rng(3)
    loss = rng.gamma(4.0, 0.5, N)
    loss[:3] = [np.nan, np.inf, -np.inf]
    frame = pd.DataFrame({"sample_id": ids, "loss_post": loss,
                          "response_clarity": rng.integers(0, 11, N).astype(float)})
    with ws.store.write() as con:
        insert_samples(con, samples_frame([*samples, extra]))
        add_members(con, 0, ids)
        add_members(con, 1, [*ids, extra.id])
        write_signals(con, 0, frame)
        write_signals(con, 1, pd.DataFrame({"sample_id": [extra.id], "loss_post": [2.0],
                                            "response_clarity": [5.0]}))
    return ws, frame.set_index("sample_id")


@pytest.mark.parametrize("column,bins", [("loss_post", 50), ("response_clarity", 11)])
def test_each_bin_lists_exactly_its_samples_page_by_page(diagnosed, column, bins):
    ws, frame = diagnosed
    values = frame[column].to_numpy(float)
    edges = summaries.shared_edges(values, bins=bins)
    counts = summaries.histogram(values, edges)
    assert counts.sum() == np.isfinite(values).sum()  # the missing and infinite losses are in no bin
    with ws.store.read() as con:
        for i in range(len(edges) - 1):
            lo, hi, last = float(edges[i]), float(edges[i + 1]), i == len(edges) - 2
            in_bin = (values >= lo) & ((values < hi) | (last & (values == hi)))
            expected = sorted(zip(values[in_bin], frame.index[in_bin], strict=True))
            assert count_in_range(con, 0, column, lo, hi, include_hi=last) == counts[i] == len(expected)
            pages, offset = [], 0
            while True:
                page = samples_in_range(con, 0, column, lo, hi, include_hi=last, limit=7, offset=offset)
                if page.empty:
                    break
                pages.append(page)
                offset += 7
            listed = pd.concat(pages) if pages else pd.DataFrame(columns=["id", "instruction", "value"])
            assert list(zip(listed["value"], listed["id"], strict=True)) == expected
            assert all(text.startswith("Question ") for text in listed["instruction"])


def test_the_top_value_is_in_the_last_bin_and_other_versions_stay_out(diagnosed):
    ws, frame = diagnosed
    top = float(np.nanmax(frame["loss_post"].replace(np.inf, np.nan)))
    with ws.store.read() as con:
        assert count_in_range(con, 0, "loss_post", top - 1e-9, top, include_hi=True) == 1
        assert count_in_range(con, 0, "loss_post", top - 1e-9, top) == 0
        assert count_in_range(con, 1, "loss_post", 0.0, 10.0) == 1  # D(1)'s own row only
        page = samples_in_range(con, 0, "loss_post", 0.0, 100.0, limit=5, offset=0, text_chars=8)
        assert len(page) == 5 and set(page["instruction"].str.len()) == {8}


def test_an_unknown_column_is_refused(diagnosed):
    ws, _ = diagnosed
    with ws.store.read() as con, pytest.raises(ValueError, match="no value range"):
        count_in_range(con, 0, "neighbours; DROP TABLE signals", 0.0, 1.0)
