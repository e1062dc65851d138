"""The vector cache: shards round-trip, survive kills, stay few, and legacy rows move out of the store."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from middo_core.executors.shards import ingest, run_dir, write_shard
from middo_core.store import vectors as V
from middo_core.store.signals import get_cached, put_cached
from middo_core.store.vectors import (
    VectorCache,
    encode_vector,
    move_legacy_embeddings,
    open_vectors,
    pack,
    unpack,
    vector_cache,
    vectors_root,
)


def _matrix(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_vectors_round_trip_by_id_across_shards(tmp_path):
    cache = VectorCache(tmp_path / "k")
    a, b = _matrix(5), _matrix(3, seed=1)
    cache.put([f"a{i}" for i in range(5)], a)
    cache.put(["b0", "b1", "b2"], b)
    got = cache.get(["b2", "a0", "a4", "nope"])
    assert sorted(got) == ["a0", "a4", "b2"]  # an id without a vector is simply absent
    np.testing.assert_array_equal(got["a4"], a[4])
    np.testing.assert_array_equal(got["b2"], b[2])
    assert got["a0"].dtype == np.float32 and got["a0"].shape == (8,)
    assert cache.ids() == {f"a{i}" for i in range(5)} | {"b0", "b1", "b2"}
    assert cache.put([], np.zeros((0, 8))) is None and len(cache.shards()) == 2
    with pytest.raises(ValueError, match="2 ids for a matrix of shape"):
        cache.put(["x", "y"], _matrix(3))


def test_a_repeated_id_reads_its_last_write(tmp_path):
    cache = VectorCache(tmp_path / "k")
    cache.put(["x", "y"], np.ones((2, 4)))
    cache.put(["x"], np.full((1, 4), 2.0))
    cache.put(["x", "x"], np.array([[3.0] * 4, [4.0] * 4]))  # within one shard, the later row
    got = cache.get(["x", "y"])
    assert got["x"].tolist() == [4.0] * 4 and got["y"].tolist() == [1.0] * 4


def test_large_shards_are_memory_mapped(tmp_path, monkeypatch):
    cache = VectorCache(tmp_path / "k")
    m = _matrix(10)
    cache.put([f"s{i}" for i in range(10)], m)
    monkeypatch.setattr(V, "MMAP_BYTES", 0)
    v = cache.get(["s3"])["s3"]
    base = v
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert base is not None  # a view of the mapped file, not a copy
    assert not v.flags.writeable  # callers cannot scribble on the cache
    np.testing.assert_array_equal(v, m[3])


def test_packed_shards_travel_as_bytes(tmp_path):
    ids, m = ["p", "q"], _matrix(2, dim=16)
    back_ids, back = unpack(pack(ids, m))
    assert back_ids == ids and np.array_equal(back, m)


def test_a_writer_killed_before_the_rename_leaves_nothing_visible(tmp_path):
    folder = tmp_path / "k"
    VectorCache(folder).put(["kept"], np.ones((1, 8)))
    # a real process writes a shard and dies by SIGKILL between the write and the rename
    code = ("import os, numpy as np\n"
            "from middo_core.store.vectors import VectorCache\n"
            "os.replace = lambda *a: os.kill(os.getpid(), 9)\n"
            f"VectorCache({str(folder)!r}).put(['lost'], np.zeros((1, 8), np.float32))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    temps = list(folder.glob(".tmp-*"))
    assert len(temps) == 1 and temps[0].stat().st_size > 0  # the dead writer's file is there
    cache = VectorCache(folder)
    assert cache.get(["kept", "lost"]).keys() == {"kept"}  # ...but never read
    assert cache.clean() == 0 and temps[0].exists()  # fresh: could be a live writer's
    old = time.time() - V.TEMP_MAX_AGE_S - 5
    os.utime(temps[0], (old, old))
    cache.compact()  # compaction cleans what dead writers left
    assert not temps[0].exists() and cache.get(["kept"]).keys() == {"kept"}


def test_a_damaged_shard_is_named(tmp_path):
    cache = VectorCache(tmp_path / "k")
    path = cache.put(["a"], np.ones((1, 8)))
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=f"{path.name}: not a readable vector shard"):
        cache.get(["a"])
    np.save(path, np.ones((2, 3)))  # a whole .npy, but not a shard
    with pytest.raises(ValueError, match=f"{path.name}: not a vector shard"):
        cache.get(["a"])


def test_compaction_keeps_few_shards_and_the_last_write(tmp_path):
    cache = VectorCache(tmp_path / "k")
    expected = {}
    for i in range(70):  # 70 checkpoints; "x" is rewritten in checkpoint 5 and in the last one
        ids = [f"s{i}", "x"] if i in (5, 69) else [f"s{i}"]
        m = np.full((len(ids), 4), float(i), np.float32)
        cache.put(ids, m)
        expected.update({sid: float(i) for sid in ids})
        cache.compact(fanin=4, top_tier=2)
    tiers = [s.tier for s in cache.shards()]
    assert tiers == sorted(tiers, reverse=True)  # old big shards first, new small ones last
    assert len(tiers) <= 2 * 3 + 70 // 16 + 1  # at most fanin-1 per tier below the top
    got = cache.get(expected)
    assert {k: float(v[0]) for k, v in got.items()} == expected
    assert got["x"].tolist() == [69.0] * 4


def test_bulk_compaction_merges_consecutive_runs_only(tmp_path):
    cache = VectorCache(tmp_path / "k")
    for i in range(40):
        cache.put([f"s{i}", "dup"], np.full((2, 4), float(i), np.float32))
    assert cache.compact(fanin=8, top_tier=2) == 5  # 40 -> 5 tier-1 shards (no tier-2 yet)
    assert [s.tier for s in cache.shards()] == [1] * 5
    assert cache.get(["dup", "s0", "s39"])["dup"].tolist() == [39.0] * 4
    assert len(cache.ids()) == 41


def test_keys_are_separate_folders(workspace_factory):
    ws = workspace_factory("keys")
    vector_cache(ws, "model-a").put(["s1"], np.ones((1, 4)))
    assert open_vectors(ws, "model-b").get(["s1"]) == {}  # another fingerprint sees nothing
    assert sorted(p.name for p in vectors_root(ws).iterdir()) == ["model-a"]


def _legacy_workspace(workspace_factory, name: str):
    """A workspace as earlier versions left it: embeddings as base64 JSON rows in the store."""
    ws = workspace_factory(name)
    data = {"k1": _matrix(7, dim=16, seed=1), "k2": _matrix(3, dim=16, seed=2)}
    with ws.store.write() as con:
        con.execute("DELETE FROM meta WHERE key = ?", [V.MOVED_META])
        for key, m in data.items():
            put_cached(con, "embedding", key, [(f"{key}-{i}", {"v": encode_vector(v)})
                                               for i, v in enumerate(m)])
        put_cached(con, "loss", "l1", [("k1-0", {"loss": 1.5})])
    return ws, data


def _rows(ws, signal: str) -> int:
    with ws.store.read() as con:
        return con.execute("SELECT count(*) FROM signal_cache WHERE signal = ?", [signal]).fetchall()[0][0]


def test_legacy_embedding_rows_move_to_vector_shards(workspace_factory, monkeypatch):
    ws, data = _legacy_workspace(workspace_factory, "legacy")
    monkeypatch.setattr(V, "LEGACY_CHUNK", 3)  # several shards per key
    got = open_vectors(ws, "k1").get([f"k1-{i}" for i in range(7)])
    assert len(got) == 7
    for i, v in enumerate(data["k1"]):
        np.testing.assert_array_equal(got[f"k1-{i}"], v)  # bit for bit
    assert len(vector_cache(ws, "k1").shards()) == 3 and len(vector_cache(ws, "k2").ids()) == 3
    assert _rows(ws, "embedding") == 0 and _rows(ws, "loss") == 1  # losses stay in the store
    assert move_legacy_embeddings(ws.store, vectors_root(ws)) == 0  # done once, then one lookup
    # vectors computed after the move win over the moved ones
    vector_cache(ws, "k1").put(["k1-0"], np.zeros((1, 16)))
    assert not open_vectors(ws, "k1").get(["k1-0"])["k1-0"].any()


def test_an_interrupted_move_is_finished_by_the_next_one(workspace_factory, monkeypatch):
    ws, data = _legacy_workspace(workspace_factory, "legacy_stop")
    store_cls = type(ws.store)
    real_write = store_cls.write

    def broken_write(self):
        raise KeyboardInterrupt  # stopped after the shards were written, before the delete

    monkeypatch.setattr(store_cls, "write", broken_write)
    with pytest.raises(KeyboardInterrupt):
        move_legacy_embeddings(ws.store, vectors_root(ws))
    assert _rows(ws, "embedding") == 10  # nothing deleted: the rows are still the truth
    monkeypatch.setattr(store_cls, "write", real_write)
    assert move_legacy_embeddings(ws.store, vectors_root(ws)) == 10
    assert _rows(ws, "embedding") == 0
    assert len(vector_cache(ws, "k2").shards()) == 1  # rewritten in place, not duplicated
    got = open_vectors(ws, "k2").get(["k2-0", "k2-1", "k2-2"])
    np.testing.assert_array_equal(np.stack([got[f"k2-{i}"] for i in range(3)]), data["k2"])


def test_embedding_rows_in_old_worker_shards_go_to_the_vector_cache(workspace_factory):
    ws = workspace_factory("old_shards")
    m = _matrix(2, dim=16)
    folder = run_dir(ws, "loss-l1-e1")
    write_shard(folder, 0, [("loss", "l1", "s0", {"loss": 0.5}), ("loss", "l1", "s1", {"loss": 0.7}),
                            ("embedding", "e1", "s0", {"v": encode_vector(m[0])}),
                            ("embedding", "e1", "s1", {"v": encode_vector(m[1])})])
    assert len(ingest(ws, folder)) == 4
    assert _rows(ws, "embedding") == 0
    with ws.store.read() as con:
        assert get_cached(con, "loss", "l1", ["s0", "s1"])["s1"] == {"loss": 0.7}
    got = vector_cache(ws, "e1").get(["s0", "s1"])
    np.testing.assert_array_equal(np.stack([got["s0"], got["s1"]]), m)
