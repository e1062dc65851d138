"""Import SFT data into a workspace: all or nothing, streamed, in one store transaction."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

from middo_core.access import Actor, check
from middo_core.data.readers import FatalReadError, detect_container, iter_records, source_size
from middo_core.data.records import MAX_SAMPLE_CHARS, SCHEMAS, record_to_sample
from middo_core.data.report import DataImportError, Duplicate, ImportReport, RowError
from middo_core.progress import Cancelled, ProgressFn, report
from middo_core.sample import Sample
from middo_core.store.samples import insert_samples_from_parquet, samples_frame
from middo_core.workspace import Workspace

INSERT_BATCH = 10_000
PROGRESS_EVERY = 2_000
MAX_KEPT_DUPLICATES = 10_000
REPORTS_DIR = "import_reports"
IMPORT_MEMORY_LIMIT = "512MB"  # DuckDB's memory during the import's commit (it spills beyond)


def import_file(ws: Workspace, path: str | Path, format: str | None = None,
                skip_invalid: bool = False, progress: ProgressFn | None = None, *,
                iteration: int = 0, split: str = "train",
                max_sample_chars: int = MAX_SAMPLE_CHARS, actor: Actor = "cli") -> ImportReport:
    """Add the records of `path` to dataset version `iteration` (split `split`) as seed samples.

    `format`: alpaca | sharegpt | openai | parquet | csv | hf; None detects it. With any invalid
    record and `skip_invalid` False, nothing is written and DataImportError lists every problem;
    with `skip_invalid` the valid records go in and the report lists the rest. Exact duplicates
    (same content hash) are imported once and listed in the report.
    """
    check(ws, actor, "import")
    path = Path(path)
    rep = ImportReport(file=str(path), iteration=iteration, split=split, skipped_invalid=skip_invalid)
    if not path.exists():
        _fail(rep, None, "no such file or folder")
    try:
        container = detect_container(path, format)
    except FatalReadError as exc:
        _fail(rep, exc.row, exc.message)
    except OSError as exc:
        _fail(rep, None, f"cannot read: {exc.strerror or exc}")
    forced_schema = format if format in SCHEMAS else None
    stage = f"import {path.name}"
    total = source_size(path, container)
    schemas: Counter[str] = Counter()
    first_row: dict[str, int] = {}
    pending: list[Sample] = []

    import pyarrow as pa
    import pyarrow.parquet as pq

    # Valid records are staged to a Parquet file in batches (flat memory, no lock held while
    # parsing), then one short transaction moves them into the store: all or nothing.
    stage_file = ws.artifact_dir("tmp") / f"import-{os.getpid()}-{time.monotonic_ns()}.parquet"
    writer = None

    def flush() -> None:
        nonlocal writer
        if pending:
            table = pa.Table.from_pandas(samples_frame(pending, origin="seed", iteration=iteration),
                                         preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(stage_file, table.schema)
            writer.write_table(table)
            pending.clear()

    try:
        try:
            for raw in iter_records(path, container):
                rep.n_read += 1
                if rep.n_read % PROGRESS_EVERY == 0:
                    report(progress, stage, raw.pos, total)
                if raw.error is not None:
                    rep.n_invalid += 1
                    rep.add_error(RowError(file=str(path), row=raw.row, field=raw.field,
                                           message=raw.error))
                    continue
                sample, schema, problems = record_to_sample(raw.record, forced_schema,
                                                            max_sample_chars)
                for field, message in problems:
                    rep.add_error(RowError(file=str(path), row=raw.row, field=field, message=message))
                if sample is None:
                    rep.n_invalid += 1
                    continue
                rep.n_valid += 1
                schemas[schema] += 1
                sid = sample.id
                if sid in first_row:
                    rep.n_duplicates += 1
                    if len(rep.duplicates) < MAX_KEPT_DUPLICATES:
                        rep.duplicates.append(Duplicate(row=raw.row, first_row=first_row[sid],
                                                        sample_id=sid))
                    continue
                first_row[sid] = raw.row
                if rep.n_errors == 0 or skip_invalid:  # else the import fails: stop writing
                    pending.append(sample)
                    if len(pending) >= INSERT_BATCH:
                        flush()
        except FatalReadError as exc:
            rep.format = _format_name(schemas, container)
            _fail(rep, exc.row, exc.message)
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # any reader surprise still reads as one sentence, not a traceback
            rep.format = _format_name(schemas, container)
            _fail(rep, rep.n_read or None, f"cannot read: {type(exc).__name__}: {exc}")

        rep.format = _format_name(schemas, container)
        if rep.n_errors and not skip_invalid:
            raise DataImportError(rep)
        if rep.n_read == 0:
            _fail(rep, None, "no records in the file")
        if rep.n_valid == 0:
            raise DataImportError(rep, f"{path}: none of the {rep.n_read:,} records is valid "
                                       f"(first problem: {rep.errors[0]})")
        flush()
        writer.close()
        writer = None
        # one transaction keeps the import all or nothing; a memory cap makes DuckDB spill its
        # rows to disk instead of holding millions of them in memory until the commit
        with ws.store.write(memory_limit=IMPORT_MEMORY_LIMIT) as con:
            rep.n_imported = insert_samples_from_parquet(con, str(stage_file), iteration, split)
        rep.n_already_present = rep.n_valid - rep.n_duplicates - rep.n_imported
    finally:
        if writer is not None:
            writer.close()
        stage_file.unlink(missing_ok=True)
    report(progress, stage, total, total)
    rep.report_path = str(_save_report(ws, rep))
    return rep


def _fail(rep: ImportReport, row: int | None, message: str) -> None:
    rep.add_error(RowError(file=rep.file, row=row, field=None, message=message))
    raise DataImportError(rep, str(rep.errors[-1]))


def _format_name(schemas: Counter[str], container: str) -> str:
    if not schemas:
        name = "unknown"
    elif len(schemas) == 1:
        name = next(iter(schemas))
    else:
        name = "mixed " + "+".join(sorted(schemas))
    return f"{name} ({container})"


def _save_report(ws: Workspace, rep: ImportReport) -> Path:
    folder = ws.artifact_dir(REPORTS_DIR)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(rep.file).stem}"
    out = folder / f"{stem}.json"
    n = 1
    while out.exists():
        n += 1
        out = folder / f"{stem}-{n}.json"
    rep.report_path = str(out)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rep.model_dump(mode="json"), indent=2, ensure_ascii=False),
                   encoding="utf-8")
    tmp.replace(out)
    return out
