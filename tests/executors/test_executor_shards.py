"""Shards and task planning: what workers hand to the store, and how work is cut into tasks."""

from __future__ import annotations

import pytest

from middo_core.executors import make_executor
from middo_core.executors.shards import ingest, read_shards, run_dir, write_shard
from middo_core.sample import Sample
from middo_core.signals.complexity import ComplexitySignal
from middo_core.signals.forward import plan_batches
from middo_core.signals.passes import plan_loss_tasks
from middo_core.store.signals import get_cached


def _rows(n: int, start: int = 0):
    return [("loss", "k1", f"s{i}", {"loss": i / 10, "n": 3, "truncated": False, "empty": False})
            for i in range(start, start + n)]


def test_shards_are_ingested_in_one_transaction_and_then_removed(workspace_factory):
    ws = workspace_factory("shards")
    folder = run_dir(ws, "loss-k1")
    write_shard(folder, 0, _rows(3))
    write_shard(folder, 1, _rows(2, start=3) + [("quality", "q1", "s0", {"quality": 7.5})])
    (folder / ".part-000002.parquet.abc.tmp").write_bytes(b"half a file")  # a worker died mid-write
    assert len(read_shards(folder)) == 6
    rows = ingest(ws, folder)
    assert len(rows) == 6 and not folder.exists()
    with ws.store.read() as con:
        loss = get_cached(con, "loss", "k1", [f"s{i}" for i in range(6)])
        quality = get_cached(con, "quality", "q1", ["s0"])
    assert sorted(loss) == [f"s{i}" for i in range(5)] and loss["s4"]["loss"] == 0.4
    assert quality == {"s0": {"quality": 7.5}}
    assert ingest(ws, folder) == []  # nothing left: a second ingest is a no-op


def test_a_failed_ingest_keeps_the_shards_for_the_next_run(workspace_factory):
    ws = workspace_factory("shards_fail")
    folder = run_dir(ws, "loss-k1")
    write_shard(folder, 0, [("loss", "k1", "s0", {"loss": 1.0})])
    ws.store.path.unlink()  # the store cannot be written
    ws.store.path.mkdir()
    with pytest.raises(Exception):  # noqa: B017 - whatever DuckDB raises for a folder
        ingest(ws, folder)
    assert len(read_shards(folder)) == 1


def test_loss_tasks_are_whole_in_process_batches(tiny_model):
    from middo_core.models.loader import load_tokenizer
    from middo_core.signals.encode import encode_all

    tok = load_tokenizer(tiny_model)
    samples = [Sample(instruction="word " * (3 + (i * 7) % 40), output="answer " * (1 + i % 9))
               for i in range(90)]
    signal = ComplexitySignal(batch_tokens=600)
    tasks = plan_loss_tasks(samples, tok, signal, task_samples=20)
    encoded = encode_all(samples, tok, signal.prompt_format, signal.max_len)
    batches = plan_batches(encoded, signal.batch_tokens)
    assert sorted(p for t in tasks for p in t) == list(range(90))
    assert len(tasks) > 2 and all(len(t) >= 20 for t in tasks[:-1])
    flat = [p for b in batches for p in b]
    assert [p for t in tasks for p in t] == flat  # tasks follow the in-process order
    for task in tasks:  # a worker re-plans its task into exactly the in-process batches
        local = plan_batches([encoded[p] for p in task], signal.batch_tokens)
        assert [[task[i] for i in b] for b in local] == [b for b in batches if b[0] in task]


def test_unknown_executor_names_the_choices():
    with pytest.raises(KeyError, match="local, ray"):
        make_executor("dask")


class _Squares:
    """Task work that counts its loads: each task is a number, its result the square."""

    loads = 0

    def load(self, source):
        _Squares.loads += 1
        return {"power": 2}

    def run_task(self, state, task):
        return task ** state["power"]


def test_the_local_executor_runs_task_work_in_order_loading_once(workspace_factory):
    ws = workspace_factory("tasks")
    with make_executor("local") as ex:
        assert list(ex.run_tasks(ws, _Squares(), [3, 1, 2])) == [9, 1, 4]
        assert ex.workers() == 1
    assert _Squares.loads == 1
