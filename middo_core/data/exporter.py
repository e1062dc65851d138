"""Export a dataset version as Alpaca, JSONL, ShareGPT, OpenAI messages, Parquet, CSV or a
LLaMA-Factory data folder. Files are written to a temporary name and renamed, so a crash never
leaves half an export under the final name."""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from middo_core.data.records import to_alpaca, to_openai, to_sharegpt
from middo_core.progress import ProgressFn, report
from middo_core.sample import Sample
from middo_core.store.samples import copy_dataset, dataset_sizes, row_to_sample
from middo_core.workspace import Workspace

EXPORT_FORMATS = ("alpaca", "jsonl", "sharegpt", "openai", "parquet", "csv", "llamafactory")
EXTENSIONS = {"alpaca": ".json", "jsonl": ".jsonl", "sharegpt": ".json", "openai": ".jsonl",
              "parquet": ".parquet", "csv": ".csv", "llamafactory": ".json"}
PROGRESS_EVERY = 5_000
BATCH = 5_000  # samples per read-back batch


class ExportError(ValueError):
    pass


def latest_iteration(ws: Workspace, split: str = "train") -> int | None:
    """The highest iteration whose dataset version has members in `split`."""
    with ws.store.read() as con:
        sizes = dataset_sizes(con)
    have = [it for it, parts in sizes.items() if parts.get(split)]
    return max(have) if have else None


@contextmanager
def dataset_stream(ws: Workspace, iteration: int | None = None, split: str = "train",
                   only_refined: bool = False) -> Iterator[tuple[int, int, Iterator[Sample]]]:
    """(iteration, count, samples of D(iteration) ordered by id), streamed in batches.

    DuckDB copies the version to a temporary Parquet file (the store is free again at once);
    samples are then read back a batch at a time, so memory stays flat whatever the size.
    `only_refined` drops seed samples.
    """
    import pyarrow.parquet as pq

    if iteration is None:
        iteration = latest_iteration(ws, split)
        if iteration is None:
            raise ExportError(f"{ws.root}: no dataset to export (import data first)")
    tmp_dir = ws.artifact_dir("tmp")
    tmp = tmp_dir / f"export-{os.getpid()}-{iteration}-{split}.parquet"
    try:
        with ws.store.read() as con:
            count = copy_dataset(con, iteration, split, str(tmp), only_refined)
        if count == 0 and not only_refined:
            raise ExportError(f"{ws.root}: dataset version {iteration} has no '{split}' samples")

        def samples() -> Iterator[Sample]:
            for batch in pq.ParquetFile(tmp).iter_batches(batch_size=BATCH):
                for row in batch.to_pylist():
                    yield row_to_sample(row)

        yield iteration, count, samples()
    finally:
        tmp.unlink(missing_ok=True)


def load_dataset_samples(ws: Workspace, iteration: int | None = None, split: str = "train",
                         only_refined: bool = False) -> tuple[int, list[Sample]]:
    """(iteration, samples of D(iteration) ordered by id) as a list (small versions)."""
    with dataset_stream(ws, iteration, split, only_refined) as (it, _, samples):
        return it, list(samples)


def export_dataset(ws: Workspace, out: str | Path, format: str = "alpaca",
                   iteration: int | None = None, only_refined: bool = False,
                   progress: ProgressFn | None = None, *, split: str = "train") -> Path:
    """Write D(iteration) (default: the latest) to `out`; returns the data file written.

    `out` may be a folder (a file name is chosen); for `llamafactory` it always is one, and
    dataset_info.json in it gains (or updates) this dataset's entry. `only_refined` keeps the
    samples Middo wrote (origin other than seed): the paper's "MiddOnly" set. Memory stays flat:
    samples stream from the store to the file in batches.
    """
    if format not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {format!r} (expected one of {', '.join(EXPORT_FORMATS)})")
    with dataset_stream(ws, iteration, split, only_refined) as (iteration, total, samples):
        target = _target(ws, Path(out), format, iteration, split, only_refined)
        stage = f"export {target.name}"

        def tick(done: int) -> None:
            if done == 1 or done % PROGRESS_EVERY == 0:
                report(progress, stage, done, total)

        if format == "parquet":
            _write_parquet(target, samples)
        elif format == "csv":
            with _atomic(target, newline="") as fh:
                _write_csv(fh, samples, tick)
        elif format in ("jsonl", "openai"):
            shape = to_openai if format == "openai" else to_alpaca
            with _atomic(target) as fh:
                for i, s in enumerate(samples, 1):
                    fh.write(json.dumps(shape(s), ensure_ascii=False) + "\n")
                    tick(i)
        else:
            shape = {"alpaca": to_alpaca, "sharegpt": to_sharegpt,
                     "llamafactory": lambda s: to_alpaca(s, full=True)}[format]
            with _atomic(target) as fh:
                _write_json_list(fh, (shape(s) for s in samples), tick)
    if format == "llamafactory":
        _update_dataset_info(Path(out) / "dataset_info.json", _dataset_name(
            ws, iteration, split, only_refined), target.name)
    report(progress, stage, total, total)
    return target


def _target(ws: Workspace, out: Path, format: str, iteration: int, split: str,
            only_refined: bool) -> Path:
    name = _dataset_name(ws, iteration, split, only_refined)
    if format == "llamafactory":
        out.mkdir(parents=True, exist_ok=True)
        return out / f"{name}.json"
    if out.is_dir():
        return out / f"{name}{EXTENSIONS[format]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _dataset_name(ws: Workspace, iteration: int, split: str, only_refined: bool) -> str:
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", ws.config.name).strip("_") or "workspace"
    name = f"middo_{slug}_iter{iteration}"
    if split != "train":
        name += f"_{split}"
    return name + ("_refined" if only_refined else "")


@contextmanager
def _atomic(target: Path, newline: str | None = None) -> Iterator[IO[str]]:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline=newline) as fh:
            yield fh
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json_list(fh: IO[str], records: Iterator[dict[str, Any]],
                     tick: Callable[[int], None]) -> None:
    fh.write("[")
    n = 0
    for n, rec in enumerate(records, 1):
        fh.write(("\n  " if n == 1 else ",\n  ") + json.dumps(rec, ensure_ascii=False))
        tick(n)
    fh.write("\n]\n" if n else "]\n")


def _write_csv(fh: IO[str], samples: Iterable[Sample], tick: Callable[[int], None]) -> None:
    writer = csv.writer(fh)
    writer.writerow(["instruction", "input", "output", "system", "history"])
    for i, s in enumerate(samples, 1):
        history = json.dumps([list(t) for t in s.history], ensure_ascii=False) if s.history else ""
        writer.writerow([s.instruction, s.input, s.output, s.system, history])
        tick(i)


def _write_parquet(target: Path, samples: Iterable[Sample]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("instruction", pa.string()), ("input", pa.string()), ("output", pa.string()),
                        ("system", pa.string()), ("history", pa.list_(pa.list_(pa.string())))])
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for chunk in _chunks(samples, BATCH):
                writer.write_table(pa.table({
                    "instruction": [s.instruction for s in chunk], "input": [s.input for s in chunk],
                    "output": [s.output for s in chunk], "system": [s.system for s in chunk],
                    "history": [[list(t) for t in s.history] for s in chunk],
                }, schema=schema))
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _chunks(items: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    chunk: list[Sample] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _update_dataset_info(info_path: Path, name: str, file_name: str) -> None:
    """Add this dataset to LLaMA-Factory's dataset_info.json, keeping the entries already there."""
    info: dict[str, Any] = {}
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ExportError(f"{info_path}: existing file is not valid JSON ({exc}); "
                              "fix or remove it") from exc
        if not isinstance(info, dict):
            raise ExportError(f"{info_path}: existing file is not a JSON object")
    info[name] = {
        "file_name": file_name,
        "formatting": "alpaca",
        "columns": {"prompt": "instruction", "query": "input", "response": "output",
                    "system": "system", "history": "history"},
    }
    with _atomic(info_path) as fh:
        fh.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
