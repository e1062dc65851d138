"""Data: import with a validation report, browse and search samples, statistics, compare two
versions, export."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from app import resources, state
from app.components.common import dashes, fmt_int, render_error
from app.components.jobs import render_job_panel
from app.components.progress import ProgressBar
from app.components.signin import denied, who
from app.components.version_diff import render_compare_versions
from middo_core.data import (
    EXPORT_FORMATS,
    FORMATS,
    DataImportError,
    ImportReport,
    export_dataset,
    import_file,
)
from middo_core.jobs import active_jobs, job_status, start_job
from middo_core.sample import ORIGINS

PAGE_SIZE = 50
# files at least this big import in a background job (the page stays usable, with cancel)
BACKGROUND_BYTES = int(os.environ.get("MIDDO_BACKGROUND_IMPORT_BYTES", 16 * 2**20))

st.title("Data")
ctx = state.require()


def render_report(report: ImportReport, failed: bool) -> None:
    cols = st.columns(4)
    cols[0].metric("Records read", fmt_int(report.n_read))
    cols[1].metric("Imported", fmt_int(report.n_imported))
    cols[2].metric("Exact duplicates", fmt_int(report.n_duplicates))
    cols[3].metric("Invalid", fmt_int(report.n_errors))
    if failed:
        st.error(f"Nothing was imported: {report.n_errors:,} invalid record(s). Fix them, or tick "
                 "'Skip invalid records' to import the valid ones.", icon=":material/error:")
    elif report.n_errors:
        st.warning(f"{report.n_errors:,} invalid record(s) skipped.")
    else:
        st.success(f"Imported {report.n_imported:,} samples into D({report.iteration}) "
                   f"(format {report.format}).")
    if report.errors:
        st.dataframe(pd.DataFrame([e.model_dump() for e in report.errors]), hide_index=True,
                     width="stretch", height=240)


def run_import(path: Path, fmt: str | None, skip_invalid: bool) -> None:
    st.session_state.pop("import_report", None)
    if path.is_file() and path.stat().st_size >= BACKGROUND_BYTES :
        try:
            run_id = start_job(ctx.ws, "import", ctx.iteration, {
                "path": str(path.resolve()), "format": fmt, "skip_invalid": skip_invalid}, actor=who())
        except Exception as exc:
            render_error(exc, f"Could not start importing {path.name}")
        else:
            st.session_state["import_run"] = run_id
            st.rerun()
        return
    bar = ProgressBar(f"Importing {path.name}")
    try:
        report = import_file(ctx.ws, path, format=fmt, skip_invalid=skip_invalid,
                             progress=bar, iteration=ctx.iteration, actor=who())
    except DataImportError as exc:
        st.session_state["import_report"] = (exc.report, True)
    except Exception as exc:
        render_error(exc, f"Could not import {path.name}")
    else:
        st.session_state["import_report"] = (report, False)
    finally:
        bar.done()


def finished_import(run_id: str) -> None:
    """The report of a background import this page started (also when it was refused)."""
    try:
        status = job_status(ctx.ws, run_id)
    except Exception as exc:
        render_error(exc, "Could not read the import job")
        return
    if status.get("result"):
        report = ImportReport.model_validate(status["result"])
        st.session_state["import_report"] = (report, status["status"] == "failed")


# the selected tab is tracked so that Compare versions runs its queries only while it is open
tab_browse, tab_import, tab_stats, tab_compare, tab_export = st.tabs(
    ["Browse", "Import", "Statistics", "Compare versions", "Export"], key="data_tab", on_change="rerun")

with tab_import:
    st.caption(f"Records are added to dataset version D({ctx.iteration}) as seed samples. "
               "Alpaca, ShareGPT and OpenAI-messages JSON/JSONL, Parquet and CSV are read; "
               "an import with any invalid record writes nothing unless you skip them.")
    import_refused = denied(ctx.ws, "import")
    if import_refused:
        st.info(import_refused, icon=":material/lock:")
    c1, c2 = st.columns(2)
    fmt = c1.selectbox("Format", ["detect", *FORMATS], key="import_format")
    skip_invalid = c2.checkbox("Skip invalid records", key="import_skip")
    source = st.radio("Source", ["Upload a file", "A file on this machine"], horizontal=True,
                      key="import_source")
    if source == "Upload a file":
        upload = st.file_uploader("Data file", key="import_upload",
                                  type=["json", "jsonl", "parquet", "csv"])
        if upload is not None and st.button("Import the uploaded file", type="primary",
                                            disabled=bool(import_refused)):
            target = ctx.ws.artifact_dir("uploads") / Path(upload.name).name
            target.write_bytes(upload.getvalue())
            run_import(target, None if fmt == "detect" else fmt, skip_invalid)
    else:
        path = st.text_input("Path", key="import_path", placeholder="/data/alpaca.json")
        if st.button("Import this file", type="primary", disabled=not path.strip() or bool(import_refused)):
            run_import(Path(path.strip()).expanduser(), None if fmt == "detect" else fmt, skip_invalid)
    if not render_job_panel(ctx, ("import",), key="import_job") and "import_run" in st.session_state:
        finished_import(st.session_state.pop("import_run"))
    if "import_report" in st.session_state:
        render_report(*st.session_state["import_report"])

ctx = ctx.refresh()  # an import above may have written


def search_index_note() -> str:
    """On a workspace large enough for a search index whose index is behind the store, starts
    its job (once per session and store version) and says how a search works until it is done."""
    index = resources.search_index_state(ctx.root, ctx.version)
    if not index.wanted or index.ready:
        return ""
    key = f"search_index_started:{ctx.root}:{ctx.version}"
    if not st.session_state.get(key) and not denied(ctx.ws, "read"):
        st.session_state[key] = True
        try:
            if not any(r["kind"] == "search_index" for r in active_jobs(ctx.ws)):
                start_job(ctx.ws, "search_index", None, {}, actor=who())
        except Exception as exc:
            render_error(exc, "Could not start building the search index")
    return index.note


with tab_browse:
    c1, c2, c3 = st.columns([3, 1, 1])
    text = c1.text_input("Search instruction, input and output", key="browse_text")
    origin = c2.selectbox("Origin", ["any", *ORIGINS], key="browse_origin")
    origin_filter = None if origin == "any" else origin
    if note := search_index_note():
        st.caption(note)

    def read_page(number: int) -> tuple[int, pd.DataFrame]:
        return resources.browse_page(ctx.root, ctx.iteration, text, origin_filter, PAGE_SIZE,
                                     (number - 1) * PAGE_SIZE, ctx.version)

    # the count and the page come from one query, read before the page picker that needs the count
    page = int(st.session_state.get("browse_page") or 1)
    total, frame = read_page(page)
    pages = max(1, -(-total // PAGE_SIZE))
    if page > pages:  # a narrower search than the page the picker was on: back to its first page
        page = st.session_state["browse_page"] = 1
        total, frame = read_page(page)
    page = c3.number_input("Page", min_value=1, max_value=pages, value=1, key="browse_page")
    if total == 0:
        if text or origin_filter:
            st.info("No sample matches this search.")
        else:
            st.info(f"D({ctx.iteration}) has no samples yet. Import a file in the Import tab.")
    else:
        first = (int(page) - 1) * PAGE_SIZE + 1
        st.caption(f"Samples {first:,}–{first + len(frame) - 1:,} of {total:,} in D({ctx.iteration})")
        st.dataframe(dashes(frame, {"loss_pre": "{:.2f}", "loss_post": "{:.2f}", "diversity": "{:.3f}",
                                    "quality": "{:.1f}"}),
                     hide_index=True, width="stretch", height=420, key="browse_table",
                     column_config={"instruction": st.column_config.TextColumn(width="large"),
                                    "output": st.column_config.TextColumn(width="large")})

if tab_stats.open:  # lengths of every text: a scan of the whole version, only when asked for
    with tab_stats:
        stats = resources.dataset_statistics(ctx.root, ctx.iteration, ctx.version)
        cols = st.columns(3)
        cols[0].metric("Training samples", fmt_int(stats["splits"].get("train", 0)))
        cols[1].metric("Held out", fmt_int(stats["splits"].get("heldout", 0)))
        cols[2].metric("Diagnosed", fmt_int(stats["diagnosed"]))
        if not stats["origins"].empty:
            st.markdown(f"**Samples by origin, D({ctx.iteration})**")
            st.bar_chart(stats["origins"].set_index("origin"), horizontal=True, height=220)
            st.markdown(f"**Text length in characters, D({ctx.iteration})**")
            st.dataframe(stats["lengths"].round(0), hide_index=True)

if tab_compare.open:
    with tab_compare:
        render_compare_versions(ctx)

with tab_export:
    c1, c2 = st.columns(2)
    out_fmt = c1.selectbox("Export format", EXPORT_FORMATS, key="export_format")
    only_refined = c2.checkbox("Only the samples Middo wrote (MiddOnly)", key="export_refined")
    if st.button(f"Export D({ctx.iteration})"):
        try:
            folder = ctx.ws.root / "exports"
            folder.mkdir(exist_ok=True)  # a folder: without it the first export became a file named 'exports'
            written = export_dataset(ctx.ws, folder, out_fmt,
                                     iteration=ctx.iteration, only_refined=only_refined)
        except Exception as exc:
            render_error(exc, "Could not export")
        else:
            st.success(f"Wrote {written}")
