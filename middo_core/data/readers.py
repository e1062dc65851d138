"""Streaming readers: JSON lists, JSONL, Parquet, CSV and `datasets` folders, one record at a time.

Each reader yields `RawRow`s; memory stays bounded by one record (JSON, JSONL, CSV) or one row
group (Parquet, `datasets`). A problem confined to one record is reported on that row and reading
goes on; a problem that makes the rest of the file unreadable raises `FatalReadError`.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTAINERS = ("json", "jsonl", "parquet", "csv", "hf")
FORMATS = ("alpaca", "sharegpt", "openai", "parquet", "csv", "hf")  # what --format accepts
CHUNK = 1 << 20
BATCH_ROWS = 4096
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")

csv.field_size_limit(1 << 30)  # the per-sample size limit applies later, with a clear message


class FatalReadError(Exception):
    """The file cannot be read past this point."""

    def __init__(self, row: int | None, message: str) -> None:
        super().__init__(message)
        self.row = row
        self.message = message


@dataclass
class RawRow:
    row: int  # 1-based: line number for JSONL, record number otherwise
    record: Any = None
    error: str | None = None  # this row could not be parsed
    field: str | None = None
    pos: int = 0  # bytes (or rows) consumed so far, for progress


def _peek(path: Path) -> str:
    """'PAR1', 'CSV' (a header naming the Alpaca columns), or the first non-blank character."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(codecs.BOM_UTF8):
        head = head[3:]
    if head.startswith(b"PAR1"):
        return "PAR1"
    text = head.decode("utf-8", errors="replace").lstrip()
    header = [c.strip().strip('"') for c in text.split("\n", 1)[0].split(",")]
    if "instruction" in header and "output" in header:
        return "CSV"
    return text[:1]


def detect_container(path: Path, format: str | None) -> str:
    """The container (json, jsonl, parquet, csv, hf) from --format, the extension and the first bytes."""
    if format is not None and format not in FORMATS:
        raise FatalReadError(None, f"unknown format {format!r} (expected one of {', '.join(FORMATS)})")
    if path.is_dir():
        if format not in (None, "hf"):
            raise FatalReadError(None, f"is a folder, not a {format} file")
        if not any((path / m).exists() for m in HF_MARKERS):
            raise FatalReadError(None, "is a folder but not one saved with datasets' save_to_disk "
                                       f"(none of {', '.join(HF_MARKERS)} found)")
        return "hf"
    if format == "hf":
        raise FatalReadError(None, "--format hf expects a folder saved with datasets' save_to_disk")
    if format in ("parquet", "csv"):
        return format
    if path.stat().st_size == 0:
        raise FatalReadError(None, "the file is empty")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    first = _peek(path)
    if first == "PAR1":
        return "parquet"
    if first == "CSV":
        return "csv"
    if first == "":
        raise FatalReadError(None, "the file is empty (only whitespace)")
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if first == "[":
        return "json"
    if first == "{":
        if _first_line_is_partial_json(path):
            raise FatalReadError(1, "the file holds one JSON object spread over several lines: "
                                    "expected a JSON list of records, or one record per line")
        return "jsonl"  # a .json file of one object per line is common
    raise FatalReadError(None, "cannot tell the format: expected a JSON list, JSON lines, Parquet or "
                               f"CSV (starts with {first!r}); name the format with --format")


def _first_line_is_partial_json(path: Path) -> bool:
    """True when the first line is short, complete and not JSON on its own (a pretty-printed
    object); a long first line is left to the JSONL reader."""
    with open(path, "rb") as fh:
        line = fh.readline(1 << 16)
    if not line.endswith(b"\n"):
        return False
    _, error = _loads(line.decode("utf-8", errors="surrogateescape").lstrip("\ufeff"))
    return error is not None


def source_size(path: Path, container: str) -> int:
    """Total progress units: bytes for text files, rows for Parquet and `datasets` folders."""
    try:
        if container == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if container == "hf":
            return len(_open_hf(path))  # memory-mapped: opening is cheap
        return path.stat().st_size
    except Exception:
        return 0


def iter_records(path: Path, container: str) -> Iterator[RawRow]:
    readers = {"json": _json_list, "jsonl": _jsonl, "parquet": _parquet, "csv": _csv, "hf": _hf}
    return readers[container](path)


# ---- JSON lines ------------------------------------------------------------------------------

def _loads(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return None, "JSON nested too deeply"


def _jsonl(path: Path) -> Iterator[RawRow]:
    pos = 0
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            pos += len(raw)
            if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
            # surrogateescape keeps invalid bytes visible; validation names the field they sit in
            text = raw.decode("utf-8", errors="surrogateescape").strip()
            if not text:
                continue
            record, error = _loads(text)
            yield RawRow(line_no, record, error, pos=pos)


# ---- a JSON list, streamed -------------------------------------------------------------------

class _TextStream:
    """Decoded text of a binary file, read on demand into a buffer."""

    def __init__(self, fh) -> None:
        self.fh = fh
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.bytes_read = 0

    def fill(self, at_least: int = CHUNK) -> bool:
        if self.eof:
            return False
        chunk = self.fh.read(max(at_least, CHUNK))
        self.bytes_read += len(chunk)
        self.eof = not chunk
        if self.bytes_read == len(chunk) and chunk.startswith(codecs.BOM_UTF8):
            chunk = chunk[3:]
        self.buf = self.buf[self.pos:] + self.decoder.decode(chunk, final=self.eof)
        self.pos = 0
        return True

    def skip_ws(self) -> str:
        """The next non-whitespace character ('' at end of file), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""


def _json_list(path: Path) -> Iterator[RawRow]:
    decoder = json.JSONDecoder()
    with open(path, "rb") as fh:
        s = _TextStream(fh)
        if s.skip_ws() != "[":
            raise FatalReadError(None, "expected a JSON list of records ('[' first)")
        s.pos += 1
        row = 0
        while True:
            ch = s.skip_ws()
            if ch == "]":
                s.pos += 1
                break
            if row > 0:
                if not ch:
                    raise FatalReadError(row + 1, f"the JSON list is cut off after record {row} "
                                                  "(no closing ']')")
                if ch != ",":
                    raise FatalReadError(row + 1, f"expected ',' or ']' after record {row}, "
                                                  f"found {ch!r}")
                s.pos += 1
                ch = s.skip_ws()
                if ch == "]":
                    raise FatalReadError(row + 1, f"a trailing ',' after record {row}")
            if not ch:
                raise FatalReadError(row + 1, "the JSON list is cut off (no closing ']')")
            row += 1
            yield RawRow(row, _decode_one(decoder, s, row), pos=s.bytes_read)
        if s.skip_ws():
            raise FatalReadError(None, f"unexpected text after the end of the JSON list "
                                       f"(after record {row}): {s.buf[s.pos:s.pos + 20]!r}")


def _decode_one(decoder: json.JSONDecoder, s: _TextStream, row: int) -> Any:
    while True:
        try:
            value, end = decoder.raw_decode(s.buf, s.pos)
        except json.JSONDecodeError as exc:
            # The record may go on past the buffer: read more (doubling) and retry. A syntax
            # error well inside the buffer is final, so a bad file is not read whole.
            incomplete = exc.pos >= len(s.buf) - 1 or exc.msg.startswith("Unterminated string")
            if incomplete and s.fill(len(s.buf)):
                continue
            raise FatalReadError(row, f"not valid JSON: {exc.msg}") from None
        except RecursionError:
            raise FatalReadError(row, "JSON nested too deeply") from None
        if end >= len(s.buf) and s.fill(len(s.buf)):
            continue  # a number may go on in the next chunk
        s.pos = end
        return value


# ---- columnar files --------------------------------------------------------------------------

def _decode_history(record: dict) -> tuple[dict, str | None]:
    """Columnar files may hold `history` as JSON text; turn it back into a list."""
    value = record.get("history")
    if isinstance(value, str):
        if not value.strip():
            record["history"] = None
        else:
            parsed, error = _loads(value)
            if error:
                return record, error
            record["history"] = parsed
    return record, None


def _parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    row = 0
    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=BATCH_ROWS):
            for record in batch.to_pylist():
                row += 1
                record, error = _decode_history(record)
                yield RawRow(row, record, error, "history" if error else None, pos=row)
    except FatalReadError:
        raise
    except Exception as exc:
        raise FatalReadError(row + 1, f"cannot read Parquet: {exc}") from None


def _csv(path: Path) -> Iterator[RawRow]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    consumed = 0

    def lines(fh) -> Iterator[str]:  # counts characters read, for progress (tell() is off here)
        nonlocal consumed
        for line in fh:
            consumed += len(line)
            yield line

    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(lines(fh), delimiter=delimiter)
        row = 0
        try:
            header = reader.fieldnames
            if not header:
                raise FatalReadError(None, "the CSV file is empty (no header row)")
            missing = [c for c in ("instruction", "output") if c not in header]
            if missing:
                raise FatalReadError(1, f"the CSV header lacks column(s) {', '.join(missing)} "
                                        f"(found: {', '.join(map(str, header))})")
            for record in reader:
                row += 1
                if None in record:
                    yield RawRow(row, error=f"{len(record[None])} cell(s) more than the header has")
                    continue
                # A short row leaves cells None: they read as missing fields.
                record, error = _decode_history(record)
                yield RawRow(row, record, error, "history" if error else None, pos=consumed)
        except csv.Error as exc:
            raise FatalReadError(row + 1, f"cannot parse CSV: {exc}") from None


def _open_hf(path: Path):
    try:
        from datasets import DatasetDict, load_from_disk

        ds = load_from_disk(str(path))
    except Exception as exc:
        raise FatalReadError(None, f"cannot open the datasets folder: {exc}") from None
    if isinstance(ds, DatasetDict):
        if "train" in ds:
            return ds["train"]
        if len(ds) == 1:
            return next(iter(ds.values()))
        raise FatalReadError(None, f"the folder holds several splits ({', '.join(ds)}) and no "
                                   "'train': save the split to import on its own")
    return ds


def _hf(path: Path) -> Iterator[RawRow]:
    ds = _open_hf(path)
    row = 0
    try:
        for batch in ds.iter(batch_size=BATCH_ROWS):
            columns = list(batch)
            n = len(batch[columns[0]]) if columns else 0
            for i in range(n):
                row += 1
                record, error = _decode_history({c: batch[c][i] for c in columns})
                yield RawRow(row, record, error, "history" if error else None, pos=row)
    except FatalReadError:
        raise
    except Exception as exc:
        raise FatalReadError(row + 1, f"cannot read the datasets folder: {exc}") from None
