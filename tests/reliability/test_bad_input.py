"""Bad input in every importer format: one bad record among good ones gives a DataImportError
naming the file, the row and (where there is one) the field, never another exception and never a
partial import; --skip-invalid imports exactly the good ones. Damaged files and a damaged
workspace (middo.yaml, middo.duckdb) get one sentence from the CLI, never a traceback."""

from __future__ import annotations

import copy
import itertools
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import middo
from typer.testing import CliRunner

from middo_core.cli import app
from middo_core.config import ConfigError
from middo_core.data import DataImportError, import_file
from middo_core.workspace import WorkspaceError, init_workspace, open_workspace

# hypothesis reuses one workspace across examples; a random version number could collide
_FRESH_VERSIONS = itertools.count(1)

SCHEMAS = ("alpaca", "sharegpt", "openai")
TEXT_PATHS = {  # where a text sits in a record of each schema (for mutations)
    "alpaca": [("instruction",), ("output",)],
    "sharegpt": [("conversations", 0, "value"), ("conversations", 1, "value")],
    "openai": [("messages", 0, "content"), ("messages", 1, "content")],
}
BAD = "@@BAD-BYTES@@"  # replaced by invalid UTF-8 bytes after serialisation
LIMIT = 2_000  # max_sample_chars in the property test: "huge" without 10 MB per example
MUTATIONS = ("missing", "wrong_type", "bad_utf8", "huge", "deep", "empty", "bad_role", "not_object")
runner = CliRunner()


def record(schema: str, i: int, words: str) -> dict:
    q, a = f"Question {i}: {words}?", f"Answer {i}: {words}."
    if schema == "alpaca":
        return {"instruction": q, "input": "", "output": a}
    if schema == "sharegpt":
        return {"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def _set(rec: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        rec = rec[key]
    rec[path[-1]] = value


def mutate(rec: dict, schema: str, kind: str, which: int):
    rec = copy.deepcopy(rec)
    path = TEXT_PATHS[schema][which % 2]
    if kind == "missing":
        parent = rec
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]
    elif kind == "wrong_type":
        _set(rec, path, [42, {"x": True}] if which % 3 == 0 else 42 if which % 3 == 1 else {"t": "x"})
    elif kind == "bad_utf8":
        _set(rec, path, f"text with {BAD} inside")
    elif kind == "huge":
        _set(rec, path, "x" * (LIMIT + 1))
    elif kind == "deep":
        deep: list = []
        for _ in range(300):
            deep = [deep]
        _set(rec, path, deep)
    elif kind == "empty":
        _set(rec, TEXT_PATHS[schema][0], "   ")  # an empty prompt (or last user turn)
    elif kind == "bad_role":
        if schema == "alpaca":
            rec["history"] = [["only one side"]]
        else:
            _set(rec, (path[0], 0, "from" if schema == "sharegpt" else "role"), "robot")
    elif kind == "not_object":
        return [rec] if which % 2 else 7
    return rec


def serialise(records: list, container: str) -> bytes:
    if container == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    else:
        text = json.dumps(records, ensure_ascii=False, indent=1 if container == "json-pretty" else None)
    return text.encode("utf-8").replace(BAD.encode(), b"\xff\xfe\xfa")


def store_state(ws) -> tuple:
    with ws.store.read() as con:
        return (con.execute("SELECT count(*) FROM samples").fetchall()[0][0],
                con.execute("SELECT iteration, split, count(*) FROM dataset_members GROUP BY ALL ORDER BY ALL").fetchall())


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return init_workspace(tmp_path_factory.mktemp("bad") / "ws")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(schema=st.sampled_from(SCHEMAS), kind=st.sampled_from(MUTATIONS),
       container=st.sampled_from(["json", "jsonl", "json-pretty"]), n=st.integers(2, 6),
       data=st.data(), skip=st.booleans(),
       words=st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=12))
def test_one_bad_record_is_named_and_nothing_half_imported(ws, tmp_path, schema, kind, container,
                                                           n, data, skip, words):
    bad = data.draw(st.integers(0, n - 1), label="bad row")
    which = data.draw(st.integers(0, 5), label="variant")
    records = [record(schema, i, words) for i in range(n)]
    records[bad] = mutate(records[bad], schema, kind, which)
    path = tmp_path / f"bad-{uuid.uuid4().hex[:8]}.{'jsonl' if container == 'jsonl' else 'json'}"
    path.write_bytes(serialise(records, container))
    before = store_state(ws)
    iteration = next(_FRESH_VERSIONS)  # never reused: counts are this import's alone
    if not skip:
        with pytest.raises(DataImportError) as exc:
            import_file(ws, path, max_sample_chars=LIMIT, iteration=iteration)
        assert store_state(ws) == before  # all or nothing
        errors = exc.value.report.errors
        assert str(path) in str(exc.value) and all(e.file == str(path) for e in errors)
    else:
        rep = import_file(ws, path, max_sample_chars=LIMIT, skip_invalid=True, iteration=iteration)
        assert rep.n_invalid == 1 and rep.n_valid == n - 1
        with ws.store.read() as con:
            members = con.execute("SELECT count(*) FROM dataset_members WHERE iteration = ?",
                                  [iteration]).fetchall()[0][0]
        assert members == rep.n_imported + rep.n_already_present == n - 1 - rep.n_duplicates
        errors = rep.errors
    named = [e for e in errors if e.row == bad + 1]
    assert named, f"no error names row {bad + 1}: {errors}"
    if kind not in ("huge", "not_object"):  # those concern the whole record
        assert any(e.field for e in named), named
    assert {e.row for e in errors} == {bad + 1}  # the good records are not blamed


# --- columnar and folder formats, and whole-file damage ------------------------------------------

def _parquet(path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def test_columnar_and_folder_formats_name_row_and_field(workspace_factory, tmp_path):
    import datasets

    ws = workspace_factory()
    good = [{"instruction": f"Q{i}", "input": "", "output": f"A{i}"} for i in range(4)]
    cases = []
    # Parquet: a null instruction in row 3; a numeric output column (every row is wrong)
    p1 = tmp_path / "null.parquet"
    _parquet(p1, good[:2] + [{"instruction": None, "input": "", "output": "A"}] + good[3:])
    cases.append((p1, [(3, "instruction")]))
    p2 = tmp_path / "typed.parquet"
    _parquet(p2, [{"instruction": f"Q{i}", "output": i} for i in range(3)])
    cases.append((p2, [(1, "output"), (2, "output"), (3, "output")]))
    # CSV: invalid UTF-8 in row 2, a 10 MB response in row 3 (the default limit applies)
    p3 = tmp_path / "bytes.csv"
    p3.write_bytes(b"instruction,input,output\nQ1,,A1\nQ\xff\xfe2,,A2\n")
    cases.append((p3, [(2, "instruction")]))
    p4 = tmp_path / "huge.csv"
    p4.write_text("instruction,input,output\nQ1,,A1\nQ2,,A2\nQ3,," + "y" * 10_000_000 + "\n")
    cases.append((p4, [(3, None)]))
    # datasets folder: an empty output in row 2
    folder = tmp_path / "hf"
    datasets.Dataset.from_list([{"instruction": "Q1", "output": "A1"},
                                {"instruction": "  ", "output": "A2"}]).save_to_disk(str(folder))
    cases.append((folder, [(2, "instruction")]))
    for path, expected in cases:
        with pytest.raises(DataImportError) as exc:
            import_file(ws, path)
        errors = exc.value.report.errors
        assert [(e.row, e.field) for e in errors] == expected, (path.name, errors)
        assert errors[0].file == str(path)
    assert store_state(ws) == (0, [])


def test_damaged_files_give_one_sentence_and_write_nothing(workspace_factory, tmp_path):
    ws = workspace_factory()
    good = [{"instruction": f"Question {i}", "output": f"Answer {i}"} for i in range(3000)]
    whole = tmp_path / "whole.parquet"
    _parquet(whole, good)
    blob = whole.read_bytes()
    damaged = {
        "cut.parquet": blob[: len(blob) // 2],
        "footer.parquet": blob[:-5],
        "nul.jsonl": b"\x00" * 64,
        "nul.csv": b"instruction,output\nQ,\x00A\x00\n" + b"\x00" * 10,
        "quote.csv": b'instruction,output\nQ1,A1\n"Q2,A2\n',
        "bom-garbage.json": b"\xef\xbb\xbf[{\"instruction\": \"a\", \"output\": \"b\"}] }}}",
        "cut.json": json.dumps(good).encode()[:50_000],
        "empty.parquet": b"",
    }
    for name, content in damaged.items():
        path = tmp_path / name
        path.write_bytes(content)
        try:
            rep = import_file(ws, path)
        except DataImportError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc).strip(), (name, str(exc))
            assert store_state(ws) == (0, []), name
            continue
        raise AssertionError(f"{name} imported {rep.n_imported} records")
    folder = tmp_path / "hf"
    import datasets

    datasets.Dataset.from_list(good[:50]).save_to_disk(str(folder))
    for arrow in folder.glob("*.arrow"):
        arrow.write_bytes(arrow.read_bytes()[:200])
    with pytest.raises(DataImportError, match="datasets folder"):
        import_file(ws, folder)
    assert store_state(ws) == (0, [])


def test_cli_import_of_bad_files_exits_1_with_sentences(workspace_factory, tmp_path):
    ws = workspace_factory()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"instruction": "ok", "output": "fine"}\n{"instruction": 5, "output": "x"}\n'
                    b'{"conversations": [{"from": "robot", "value": "hi"}]}\n\xff\xfe\n')
    result = runner.invoke(app, ["import", str(ws.root), str(bad)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = result.output
    assert "Nothing imported" in text and "row 2" in text and "instruction" in text
    assert "conversations[0].from" in text and "Traceback" not in text
    assert store_state(ws) == (0, [])


# --- a damaged workspace --------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["yaml-syntax", "yaml-list", "yaml-field", "store-cut",
                                    "store-random", "store-empty"])
def test_damaged_workspace_gives_one_sentence(workspace_factory, tmp_path, damage):
    ws = workspace_factory()
    import_file(ws, _alpaca_file(tmp_path))
    cfg, db = ws.root / "middo.yaml", ws.root / "middo.duckdb"
    if damage == "yaml-syntax":
        cfg.write_text("name: [unclosed\nseed: {\n")
    elif damage == "yaml-list":
        cfg.write_text("- just\n- a list\n")
    elif damage == "yaml-field":
        cfg.write_text("name: ws\nsignals:\n  k: many\n")
    elif damage == "store-cut":
        db.write_bytes(db.read_bytes()[:5000])
    elif damage == "store-random":
        db.write_bytes(uuid.uuid4().bytes * 300)
    else:
        db.write_bytes(b"")
    with pytest.raises((ConfigError, WorkspaceError)) as exc:
        open_workspace(ws.root)
    sentence = str(exc.value)
    assert "\n" not in sentence and sentence.count(". ") == 0 and len(sentence) < 300, sentence
    assert sentence.startswith(str(ws.root / ("middo.yaml" if damage.startswith("yaml") else "middo.duckdb")))
    assert not any(noise in sentence for noise in ("<unicode string>", "^", "IO Error", '"/'))
    result = runner.invoke(app, ["status", str(ws.root)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    # the whole sentence (wrapped to the terminal), no markup eaten, nothing else
    assert " ".join(result.output.split()) == f"error: {' '.join(sentence.split())}"


def test_damaged_store_from_a_real_process(workspace_factory, tmp_path):
    ws = workspace_factory()
    (ws.root / "middo.duckdb").write_bytes(b"\x00" * 9000)
    for args in (["status", ws.root], ["import", ws.root, _alpaca_file(tmp_path)],
                 ["export", ws.root, tmp_path / "out.json"]):
        proc = middo(*args, check=False, timeout=120)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith("error: ") and "middo.duckdb" in proc.stderr


def _alpaca_file(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps([{"instruction": "Say hi.", "output": "Hi."}]))
    return path
