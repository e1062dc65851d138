"""Property tests: whatever the file holds, import gives a report or a DataImportError naming the
file, never another exception, and a failed import leaves the store as it was."""

from __future__ import annotations

import json
import uuid

import pytest
from data_helpers import store_state, stored_samples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from middo_core.data import DataImportError, ImportReport, export_dataset, import_file
from middo_core.workspace import init_workspace

KEYS = ["instruction", "input", "output", "system", "history", "conversations", "messages",
        "from", "value", "role", "content", "human", "gpt", "user", "assistant"]
SUFFIXES = [".json", ".jsonl", ".csv", ".parquet", ".tsv", ""]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.sampled_from(KEYS),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=5),
    max_leaves=25,
)
clean_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
alpaca_records = st.fixed_dictionaries(
    {"instruction": clean_text.filter(lambda s: s.strip()), "input": clean_text, "output": clean_text},
    optional={"system": clean_text.filter(bool),
              "history": st.lists(st.lists(clean_text, min_size=2, max_size=2), min_size=1, max_size=2)},
)

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return init_workspace(tmp_path_factory.mktemp("prop") / "ws")


def _check(ws, path, skip_invalid: bool) -> None:
    before = store_state(ws)
    try:
        rep = import_file(ws, path, skip_invalid=skip_invalid)
    except DataImportError as exc:
        assert exc.report.errors and all(e.file == str(path) for e in exc.report.errors)
        assert str(path) in str(exc)
        assert store_state(ws) == before
        return
    assert isinstance(rep, ImportReport)
    assert rep.n_valid + rep.n_invalid == rep.n_read
    assert rep.n_imported + rep.n_already_present + rep.n_duplicates == rep.n_valid
    assert skip_invalid or rep.n_errors == 0


@SETTINGS
@given(data=st.binary(max_size=300), suffix=st.sampled_from(SUFFIXES), skip=st.booleans())
def test_random_bytes(ws, tmp_path, data, suffix, skip):
    path = tmp_path / f"junk-{uuid.uuid4().hex[:8]}{suffix}"
    path.write_bytes(data)
    _check(ws, path, skip)


@SETTINGS
@given(records=st.lists(json_values, max_size=6), as_lines=st.booleans(), skip=st.booleans(),
       tail=st.sampled_from(["", "\n", " ]", "{", "\x00", "[[[["]))
def test_random_json_records(ws, tmp_path, records, as_lines, skip, tail):
    if as_lines:
        text = "".join(json.dumps(r) + "\n" for r in records) + tail
        path = tmp_path / f"junk-{uuid.uuid4().hex[:8]}.jsonl"
    else:
        text = json.dumps(records) + tail
        path = tmp_path / f"junk-{uuid.uuid4().hex[:8]}.json"
    path.write_text(text, encoding="utf-8")
    _check(ws, path, skip)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("round")
    return init_workspace(root / "src"), init_workspace(root / "dst"), iter(range(1, 10_000))


@settings(SETTINGS, max_examples=25)
@given(records=st.lists(alpaca_records, min_size=1, max_size=5),
       fmt=st.sampled_from(["alpaca", "jsonl", "parquet", "csv", "llamafactory"]))
def test_valid_records_round_trip(pair, tmp_path, records, fmt):
    src, dst, versions = pair
    version = next(versions)  # one dataset version per example: no workspace per example
    src_path = tmp_path / f"in-{version}.json"
    src_path.write_text(json.dumps(records), encoding="utf-8")
    import_file(src, src_path, iteration=version)
    out = export_dataset(src, tmp_path / f"out-{version}", fmt, iteration=version)
    import_file(dst, out, iteration=version)
    assert ({s.id for s in stored_samples(dst, iteration=version)}
            == {s.id for s in stored_samples(src, iteration=version)})
