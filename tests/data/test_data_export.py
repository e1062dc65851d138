"""Exporting dataset versions: exact round trips per format, LLaMA-Factory layout, MiddOnly."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_helpers import ALPACA, OPENAI, SHAREGPT, by_id, stored_samples, write_json

from middo_core.data import ExportError, export_dataset, import_file
from middo_core.sample import Sample
from middo_core.store.samples import add_members, insert_samples, samples_frame

ROUND_TRIP_FORMATS = ["alpaca", "jsonl", "sharegpt", "openai", "parquet", "csv", "llamafactory"]


@pytest.fixture
def seeded(workspace_factory, tmp_path):
    """A workspace with single- and multi-turn samples from all three record schemas."""
    ws = workspace_factory("src")
    for name, records in [("a.json", ALPACA), ("s.json", SHAREGPT), ("o.json", OPENAI)]:
        import_file(ws, write_json(tmp_path / name, records))
    return ws


@pytest.mark.parametrize("fmt", ROUND_TRIP_FORMATS)
def test_import_export_import_gives_the_same_samples(seeded, workspace_factory, tmp_path, fmt):
    out = export_dataset(seeded, tmp_path / f"out_{fmt}", fmt)
    assert out.exists() and not list(out.parent.glob(".*tmp*"))  # no temporary file left
    again = workspace_factory(f"again_{fmt}")
    rep = import_file(again, out)
    original = by_id(stored_samples(seeded))
    assert rep.n_imported == len(original) == 8
    assert sum(1 for s in original.values() if s.history) == 3
    if fmt in ("sharegpt", "openai"):
        # Chat formats have no separate `input`: it joins the user turn, so the conversation
        # (what the model is trained on) comes back exactly, not the Alpaca split of it.
        def chats(samples):
            return sorted(json.dumps(s.messages()) for s in samples)

        assert chats(stored_samples(again)) == chats(original.values())
    else:
        assert by_id(stored_samples(again)) == original  # ids are content hashes: text identical


def test_alpaca_sharegpt_openai_files_come_back_record_for_record(workspace_factory, tmp_path):
    for fmt, records, suffix in [("alpaca", ALPACA, ".json"), ("sharegpt", SHAREGPT, ".json"),
                                 ("openai", OPENAI, ".jsonl")]:
        ws = workspace_factory(fmt)
        import_file(ws, write_json(tmp_path / f"{fmt}_in.json", records))
        out = export_dataset(ws, tmp_path / f"{fmt}_out{suffix}", fmt)
        text = out.read_text(encoding="utf-8")
        exported = json.loads(text) if suffix == ".json" else [json.loads(x) for x in text.splitlines()]
        key = lambda r: json.dumps(r, sort_keys=True, ensure_ascii=False)  # noqa: E731
        assert sorted(map(key, exported)) == sorted(map(key, records)), fmt


def test_llamafactory_folder_has_data_and_dataset_info(seeded, tmp_path):
    folder = tmp_path / "lf"
    folder.mkdir()
    (folder / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "o.json"}}))
    data = export_dataset(seeded, folder, "llamafactory")
    info = json.loads((folder / "dataset_info.json").read_text())
    assert set(info) == {"other", "middo_src_iter0"}  # existing entries survive
    entry = info["middo_src_iter0"]
    assert entry["file_name"] == data.name and (folder / data.name).exists()
    assert entry["columns"] == {"prompt": "instruction", "query": "input", "response": "output",
                                "system": "system", "history": "history"}
    rows = json.loads(data.read_text())
    assert all(set(r) == {"instruction", "input", "output", "system", "history"} for r in rows)


def test_parquet_and_csv_columns(seeded, tmp_path):
    table = pq.read_table(export_dataset(seeded, tmp_path / "d.parquet", "parquet"))
    assert table.column_names == ["instruction", "input", "output", "system", "history"]
    history = table.schema.field("history").type
    assert pa.types.is_list(history) and pa.types.is_string(history.value_type.value_type)
    with open(export_dataset(seeded, tmp_path / "d.csv", "csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    story = next(r for r in rows if r["instruction"] == "Continue the story.")
    assert json.loads(story["history"])[0] == ["Tell me a story.", "Once upon a time there was a dragon."]


def test_only_refined_latest_iteration_and_folder_output(seeded, tmp_path):
    refined = Sample(instruction="Add two and three.", output="Five.")
    with seeded.store.write() as con:
        insert_samples(con, samples_frame([refined], origin="simplified", iteration=1))
        add_members(con, 1, [refined.id] + [s.id for s in stored_samples(seeded)][:3])
    latest = export_dataset(seeded, tmp_path, "jsonl")  # a folder: the name is chosen
    assert latest.name == "middo_src_iter1.jsonl"
    assert len(latest.read_text().splitlines()) == 4
    only = export_dataset(seeded, tmp_path / "only.json", "alpaca", only_refined=True)
    assert json.loads(only.read_text()) == [{"instruction": "Add two and three.", "input": "",
                                              "output": "Five."}]
    first = export_dataset(seeded, tmp_path / "d0.json", "alpaca", iteration=0)
    assert len(json.loads(first.read_text())) == 8


def test_export_errors_are_clear(workspace_factory, seeded, tmp_path):
    with pytest.raises(ExportError, match="no dataset to export"):
        export_dataset(workspace_factory("empty"), tmp_path / "x.json")
    with pytest.raises(ExportError, match="unknown export format"):
        export_dataset(seeded, tmp_path / "x.json", "yaml")
    with pytest.raises(ExportError, match="version 5 has no 'train' samples"):
        export_dataset(seeded, tmp_path / "x.json", iteration=5)


def test_a_failed_export_keeps_the_previous_file(seeded, tmp_path):
    target = tmp_path / "keep.json"
    target.write_text("previous export")

    def boom(event):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        export_dataset(seeded, target, "alpaca", progress=boom)
    assert target.read_text() == "previous export"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
