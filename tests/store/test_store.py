from __future__ import annotations

import duckdb
import pytest

from middo_core.sample import Sample
from middo_core.store.samples import add_members, dataset, insert_samples, samples_frame
from middo_core.store.schema import SCHEMA_VERSION, SchemaError
from middo_core.workspace import WorkspaceError, init_workspace, open_workspace


def test_init_creates_versioned_store_and_reopens(workspace_factory):
    ws = workspace_factory("a")
    assert (ws.root / "middo.yaml").exists() and (ws.root / "artifacts").is_dir()
    again = open_workspace(ws.root)
    with again.store.read() as con:
        assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    with pytest.raises(WorkspaceError):
        init_workspace(ws.root)


def test_newer_schema_is_refused(workspace_factory):
    ws = workspace_factory("b")
    with ws.store.write() as con:
        con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(SchemaError, match="newer"):
        open_workspace(ws.root)


def test_failed_transaction_leaves_store_unchanged(workspace_factory):
    ws = workspace_factory("c")
    s = Sample(instruction="Add 2 and 3.", output="5")
    with pytest.raises(duckdb.Error), ws.store.write() as con:
        insert_samples(con, samples_frame([s]))
        add_members(con, 0, [s.id])
        con.execute("INSERT INTO no_such_table VALUES (1)")
    with ws.store.read() as con:
        assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == 0
        assert dataset(con, 0).empty


def test_identical_samples_share_one_row():
    a = Sample(instruction="Say hi", output="hi")
    b = Sample(instruction="Say hi", output="hi")
    c = Sample(instruction="Say hi", output="hi!")
    assert a.id == b.id != c.id
