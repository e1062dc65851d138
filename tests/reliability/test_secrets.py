"""API keys come from the environment or a secrets file and are used, but never written: after
refinement runs (CLI with --api-key-file, a background job with OPENAI_API_KEY_FILE, an
in-process run with OPENAI_API_KEY and debug logging on), the key's bytes, its base64 and hex
forms appear in no file of the workspace (store, WAL, run folders, logs, LLM cache, reports),
no export and no captured output."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets

import pytest
from reliability_helpers import middo, middo_env, wait_for

from middo_core.config import RefineConfig, WorkspaceConfig
from middo_core.data import export_dataset
from middo_core.jobs import job_status, start_job
from middo_core.llm import LLMConfigError
from middo_core.llm.openai_backend import api_key_from_env
from middo_core.refine import refine
from middo_core.sample import Sample
from middo_core.store.iterations import upsert_iteration
from middo_core.store.samples import insert_samples, samples_frame, set_members
from middo_core.workspace import init_workspace
from tests.llm.openai_server import LoopbackOpenAI


def encodings(key: str) -> dict[str, bytes]:
    """The key as bytes, hex, UTF-16 and base64 at each of the three alignments (a key inside a
    longer base64 blob shows up as one of these, minus the edge characters)."""
    raw = key.encode()
    forms = {"raw": raw, "hex": raw.hex().encode(), "utf16": key.encode("utf-16-le")}
    for shift in range(3):
        padded = b"\0" * shift + raw
        for name, enc in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            text = enc(padded)[4 if shift else 0:].rstrip(b"=")
            forms[f"{name}{shift}"] = text[:-4]  # the last group mixes in what follows
    return forms


def leaks(key: str, paths, texts=()) -> list[str]:
    found = []
    forms = encodings(key)
    for path in paths:
        for file in ([path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]):
            data = file.read_bytes()
            found += [f"{file} ({name})" for name, form in forms.items() if form in data]
    for i, text in enumerate(texts):
        found += [f"output {i} ({name})" for name, form in forms.items() if form in text.encode()]
    return found


def refine_ws(root, n: int = 12):
    cfg = WorkspaceConfig(name="secrets", refine=RefineConfig(backend="openai", model="loopback-model",
                                                                max_retries=1))
    ws = init_workspace(root, cfg)
    data = [Sample(instruction=f"Task {i}: describe a colour.", output=f"Colour {i}.") for i in range(n)]
    ids = [s.id for s in data]
    with ws.store.write() as con:
        insert_samples(con, samples_frame(data))
        set_members(con, 0, ids)
        upsert_iteration(con, 0, status="selected",
                         counts={"flagged_ids": {"complexity": ids[:4], "quality": ids[4:8]}})
    return ws, ids


@pytest.mark.slow
def test_key_is_used_but_written_nowhere(tmp_path, monkeypatch, caplog):
    key = "sk-proj-" + secrets.token_urlsafe(32)
    key_file = tmp_path / "secrets" / "openai.key"
    key_file.parent.mkdir()
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    ws, ids = refine_ws(tmp_path / "ws")
    outputs = []
    with LoopbackOpenAI() as server:
        server.faults.extend(["429", "500"])  # retries and their log lines
        # 1. the CLI with --api-key-file, no key in the environment
        env = middo_env(OPENAI_BASE_URL=server.base_url)
        env.pop("OPENAI_API_KEY", None)
        env.pop("OPENAI_API_KEY_FILE", None)
        proc = middo("refine", ws.root, "--iteration", "0", "--axes", "complexity",
                     "--api-key-file", key_file, env=env)
        outputs += [proc.stdout, proc.stderr]
        assert json.loads(middo("status", ws.root, "--json", env=env).stdout)
        # 2. a background job reading OPENAI_API_KEY_FILE
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.setenv("OPENAI_API_KEY_FILE", str(key_file))
        run_id = start_job(ws, "refine", 0, {"axes": ["quality"]})
        final = wait_for(lambda: (s := job_status(ws, run_id))["status"] in ("done", "failed") and s,
                         timeout=240, what="the refine job")
        assert final["status"] == "done", final["log_tail"]
        # 3. in process, the key in OPENAI_API_KEY, every logger at DEBUG (openai, httpx too)
        monkeypatch.delenv("OPENAI_API_KEY_FILE")
        monkeypatch.setenv("OPENAI_API_KEY", key)
        caplog.set_level(logging.DEBUG)
        with ws.store.write() as con:
            upsert_iteration(con, 1, status="selected")
            set_members(con, 1, ids)
        server.faults.extend(["401"])
        with pytest.raises(LLMConfigError) as refused:
            refine(ws, 1, {"complexity": ids[8:]})
        outputs.append(str(refused.value))
        refine(ws, 1, {"quality": ids[8:]})
        auth = set(server.auth_headers)
    assert auth == {f"Bearer {key}"}  # every request carried the key: it was read and used
    export_dir = tmp_path / "exports"
    for fmt in ("alpaca", "jsonl", "parquet", "llamafactory"):
        export_dataset(ws, export_dir / fmt, fmt, iteration=0)
    outputs += [r.getMessage() + repr(r.args) for r in caplog.records]
    assert any(r.name.startswith("openai") for r in caplog.records)  # debug logs were on
    assert len(list((ws.artifacts / "llm_cache").rglob("*.json"))) >= 16
    assert list((ws.artifacts / "runs").rglob("log.txt"))
    assert leaks(key, [ws.root, export_dir], outputs) == []
    assert leaks(key, [key_file]) != []  # the scanner does find the key where it is


def test_key_file_errors_are_sentences(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(LLMConfigError, match="cannot read the API key file .*missing.key"):
        api_key_from_env()
    (tmp_path / "empty.key").write_text("\n")
    monkeypatch.setenv("OPENAI_API_KEY_FILE", str(tmp_path / "empty.key"))
    with pytest.raises(LLMConfigError, match="is empty"):
        api_key_from_env()
    (tmp_path / "k").write_text("  sk-from-file \n")
    monkeypatch.setenv("OPENAI_API_KEY_FILE", str(tmp_path / "k"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert api_key_from_env() == "sk-from-file"  # the file, named explicitly, wins
    monkeypatch.delenv("OPENAI_API_KEY_FILE")
    assert api_key_from_env() == "sk-from-env"
    ws, _ = refine_ws(tmp_path / "ws")
    env = {k: v for k, v in middo_env().items() if not k.startswith("OPENAI_")}
    proc = middo("refine", ws.root, "--api-key-file", tmp_path / "nope.key", env=env, check=False)
    assert proc.returncode == 1 and "nope.key: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr and not os.environ.get("OPENAI_API_KEY_FILE")
