"""Importing SFT data: formats, detection, multi-turn, validation, all-or-nothing, duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_helpers import (
    ALPACA,
    OPENAI,
    SHAREGPT,
    store_state,
    stored_samples,
    write_json,
    write_jsonl,
)

from middo_core.data import DataImportError, import_file
from middo_core.progress import Cancelled
from middo_core.sample import Sample


def test_alpaca_json_keeps_every_field_and_conversation(workspace_factory, tmp_path):
    ws = workspace_factory()
    rep = import_file(ws, write_json(tmp_path / "a.json", ALPACA))
    assert (rep.n_read, rep.n_imported, rep.n_errors) == (4, 4, 0)
    assert rep.format == "alpaca (json)"
    got = {s.instruction: s for s in stored_samples(ws)}
    story = got["Continue the story."]
    assert story.system == "You are a storyteller."
    assert story.history == [("Tell me a story.", "Once upon a time there was a dragon."),
                             ("What did it do?", "It guarded a pile of gold.")]
    assert got["Translate to French."].input == "Good morning"
    assert got["Say hello in Japanese ✓"].output == "こんにちは"


def test_sharegpt_multi_turn_becomes_history_plus_final_turn(workspace_factory, tmp_path):
    ws = workspace_factory()
    rep = import_file(ws, write_jsonl(tmp_path / "chat.jsonl", SHAREGPT))
    assert rep.format == "sharegpt (jsonl)" and rep.n_imported == 2
    multi = next(s for s in stored_samples(ws) if s.history)
    assert multi == Sample(instruction="And times 3?", output="12", system="Be brief.",
                           history=[("What is 2 + 2?", "4")])


def test_openai_messages(workspace_factory, tmp_path):
    ws = workspace_factory()
    rep = import_file(ws, write_json(tmp_path / "msgs.json", OPENAI))
    assert rep.format == "openai (json)" and rep.n_imported == 2
    multi = next(s for s in stored_samples(ws) if s.history)
    assert (multi.system, multi.instruction, multi.output) == ("You are terse.", "And of Chile?", "Santiago.")
    assert multi.history == [("Capital of Peru?", "Lima.")]


def test_parquet_csv_and_datasets_folder(workspace_factory, tmp_path):
    from datasets import Dataset

    flat = [{k: r.get(k, "") for k in ("instruction", "input", "output")} for r in ALPACA]
    pq.write_table(pa.Table.from_pylist(flat), tmp_path / "d.parquet", row_group_size=2)
    (tmp_path / "d.csv").write_text(
        'instruction,input,output\n"Add 2 and 3.",,"2 + 3 = 5."\n"Multi\nline",x,"a, b"\n',
        encoding="utf-8")
    Dataset.from_list(SHAREGPT).save_to_disk(str(tmp_path / "hf"))

    ws = workspace_factory()
    assert import_file(ws, tmp_path / "d.parquet").format == "alpaca (parquet)"
    rep = import_file(ws, tmp_path / "d.csv")
    assert rep.format == "alpaca (csv)" and rep.n_read == 2 and rep.n_already_present == 1
    assert "Multi\nline" in {s.instruction for s in stored_samples(ws)}
    rep = import_file(ws, tmp_path / "hf")
    assert rep.format == "sharegpt (hf)" and rep.n_imported == 2
    assert len(stored_samples(ws)) == 4 + 1 + 2


def test_detection_looks_past_the_extension(workspace_factory, tmp_path):
    ws = workspace_factory()
    # JSON lines in a .json file, and a JSON list in a file with no extension
    rep = import_file(ws, write_jsonl(tmp_path / "lines.json", ALPACA[:2]))
    assert rep.format == "alpaca (jsonl)"
    rep = import_file(ws, write_json(tmp_path / "noext", OPENAI))
    assert rep.format == "openai (json)"
    # --format forces the schema: ShareGPT records read as Alpaca are invalid
    with pytest.raises(DataImportError) as exc:
        import_file(ws, write_json(tmp_path / "s.json", SHAREGPT), format="alpaca")
    assert exc.value.errors[0].field == "instruction"


def test_invalid_rows_name_file_row_field_and_nothing_is_written(workspace_factory, tmp_path):
    ws = workspace_factory()
    import_file(ws, write_json(tmp_path / "ok.json", ALPACA[:1]))
    before = store_state(ws)
    rows = [
        {"instruction": "fine", "output": "ok"},
        {"instruction": "   ", "output": "x"},                     # 2: empty instruction
        {"instruction": "no output"},                             # 3: missing output
        {"instruction": 7, "output": "x"},                         # 4: not a string
        "just a string",                                          # 5: not an object
        {"instruction": "a", "output": "b", "history": [["only one"]]},  # 6: bad history pair
    ]
    path = write_json(tmp_path / "bad.json", rows)
    with pytest.raises(DataImportError) as exc:
        import_file(ws, path)
    found = {(e.row, e.field) for e in exc.value.errors}
    assert found == {(2, "instruction"), (3, "output"), (4, "instruction"), (5, None),
                     (6, "history[0]")}
    assert all(e.file == str(path) for e in exc.value.errors)
    assert "must be a string" in next(e.message for e in exc.value.errors if e.row == 4)
    assert store_state(ws) == before


def test_conversations_must_alternate_and_end_with_the_assistant(workspace_factory, tmp_path):
    ws = workspace_factory()
    bad = [
        {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"},
                           {"from": "gpt", "value": "c"}]},
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"},
                           {"from": "human", "value": "c"}]},
        {"conversations": [{"from": "robot", "value": "a"}, {"from": "gpt", "value": "b"}]},
        {"messages": [{"role": "user", "content": ["parts"]}, {"role": "assistant", "content": "b"}]},
        {"messages": []},
    ]
    with pytest.raises(DataImportError) as exc:
        import_file(ws, write_jsonl(tmp_path / "c.jsonl", bad))
    by_row = {e.row: e for e in exc.value.errors}
    assert by_row[1].field == "conversations[1].from" and "alternate" in by_row[1].message
    assert "end with an assistant turn" in by_row[2].message
    assert "unknown speaker 'robot'" in by_row[3].message
    assert by_row[4].field == "messages[0].content"
    assert by_row[5].message == "is empty"
    assert store_state(ws)[0] == 0


def test_skip_invalid_imports_the_rest_and_writes_a_report(workspace_factory, tmp_path):
    ws = workspace_factory()
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": ""}\nnot json\n'
                    '{"instruction": "c", "output": "d"}\n', encoding="utf-8")
    rep = import_file(ws, path, skip_invalid=True)
    assert (rep.n_read, rep.n_imported, rep.n_invalid) == (4, 2, 2)
    assert [(e.row, e.field) for e in rep.errors] == [(3, "instruction"), (3, "output"), (4, None)]
    saved = json.loads(Path(rep.report_path).read_text(encoding="utf-8"))
    assert saved["n_imported"] == 2 and len(saved["errors"]) == 3
    assert rep.report_path.startswith(str(ws.artifacts / "import_reports"))


def test_exact_duplicates_are_imported_once_and_reported(workspace_factory, tmp_path):
    ws = workspace_factory()
    rows = [ALPACA[0], ALPACA[1], ALPACA[0], {**ALPACA[0], "output": "5"}, ALPACA[0]]
    rep = import_file(ws, write_json(tmp_path / "d.json", rows))
    assert rep.n_imported == 3 and rep.n_duplicates == 2
    assert [(d.row, d.first_row) for d in rep.duplicates] == [(3, 1), (5, 1)]
    again = import_file(ws, write_json(tmp_path / "d.json", rows))
    assert again.n_imported == 0 and again.n_already_present == 3


def test_file_level_problems_are_clear_and_leave_the_store_alone(workspace_factory, tmp_path):
    ws = workspace_factory()
    cases = {
        "empty.json": ("", "empty"),
        "blank.jsonl": ("\n  \n", "empty"),
        "list.json": ("[]", "no records"),
        "garbage.json": (json.dumps(ALPACA) + " trailing", "after the end of the JSON list"),
        "cut.json": (json.dumps(ALPACA)[:-30], "not valid JSON"),
        "comma.json": ("[" + json.dumps(ALPACA[0]) + ",]", "trailing ','"),
        "deep.json": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        "deep.jsonl": ("[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
        "text.txt": ("hello world", "cannot tell the format"),
        "pretty.json": (json.dumps(ALPACA[0], indent=2), "one JSON object spread over several lines"),
        "nocol.csv": ("question,answer\nq,a\n", "lacks column(s) instruction, output"),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(DataImportError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            import_file(ws, tmp_path / name, skip_invalid=True)
    with pytest.raises(DataImportError, match="no such file"):
        import_file(ws, tmp_path / "missing.json")
    (tmp_path / "not_parquet.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataImportError, match="Parquet"):
        import_file(ws, tmp_path / "not_parquet.parquet")
    assert store_state(ws) == (0, {})


def test_invalid_utf8_and_huge_samples_are_row_errors(workspace_factory, tmp_path):
    ws = workspace_factory()
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(b'{"instruction": "ok", "output": "fine"}\n'
                     b'{"instruction": "bad \xff\xfe bytes", "output": "x"}\n'
                     + json.dumps({"instruction": "big", "output": "x" * 10_000_000}).encode() + b"\n")
    with pytest.raises(DataImportError) as exc:
        import_file(ws, path)
    errors = {e.row: e for e in exc.value.errors}
    assert errors[2].field == "instruction" and "UTF-8" in errors[2].message
    assert "over the limit" in errors[3].message
    assert store_state(ws)[0] == 0


def test_large_json_list_streams_across_buffer_boundaries(workspace_factory, tmp_path):
    ws = workspace_factory()
    rows = [{"instruction": f"Q{i}", "input": "", "output": "y" * (i % 7) * 50_000 + str(i)}
            for i in range(60)]  # ~9 MB: records straddle the 1 MB read chunks
    rep = import_file(ws, write_json(tmp_path / "big.json", rows))
    assert rep.n_imported == 60
    assert {s.output for s in stored_samples(ws)} == {r["output"] for r in rows}


def test_import_into_a_later_iteration_and_the_heldout_split(workspace_factory, tmp_path):
    ws = workspace_factory()
    import_file(ws, write_json(tmp_path / "a.json", ALPACA[:2]), iteration=2, split="heldout")
    assert store_state(ws)[1] == {"2": {"heldout": 2}}


def test_shared_alpaca_demo_file(workspace_factory, shared_data):
    ws = workspace_factory()
    rep = import_file(ws, shared_data / "alpaca_en_demo.json")
    # 999 records, 14 of which repeat an earlier record word for word
    assert (rep.n_read, rep.n_valid, rep.n_errors) == (999, 999, 0)
    assert rep.n_imported == 985 and rep.n_duplicates == 14
    assert len(stored_samples(ws)) == 985


def test_cancelling_midway_rolls_everything_back(workspace_factory, tmp_path):
    ws = workspace_factory()
    rows = [{"instruction": f"q{i}", "output": "a"} for i in range(5000)]
    events = []

    def cancel(event):
        events.append(event)
        raise Cancelled()

    with pytest.raises(Cancelled):
        import_file(ws, write_jsonl(tmp_path / "many.jsonl", rows), progress=cancel)
    assert events and events[0].total == (tmp_path / "many.jsonl").stat().st_size
    assert store_state(ws) == (0, {})
