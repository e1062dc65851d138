"""Compare versions: what changed between D(a) and D(b), counted, filtered, paged and exported.

A rewritten sample is shown old beside new with the changed words marked (the review's diff);
an added or removed one as its text. Data comes from app/resources, the diff from middo_core.
"""

from __future__ import annotations

import streamlit as st

from app import resources
from app.components.common import COUNT, dashes, fmt_int, render_error
from app.components.review_view import render_diff, render_sample_text
from app.state import Context
from middo_core.version_diff import AXES, EXPORT_SUFFIXES, KINDS, DiffSummary, VersionChange

PAGE_SIZE = 10  # each change is a side-by-side diff: ten fill a screen
ANY = "any"


def default_pair(versions: list[int], iteration: int, compare: int | None) -> tuple[int, int]:
    """(A, B): the sidebar's compare version (else the one before) and its current iteration;
    from the first version, the next one."""
    b = iteration if iteration in versions else versions[-1]
    if compare in versions and compare != b:
        return compare, b
    at = versions.index(b)
    return (versions[at - 1], b) if at > 0 else (b, versions[1])


def _pick_versions(ctx: Context, versions: list[int]) -> tuple[int, int]:
    for key in ("diff_a", "diff_b"):  # a value from another workspace is not an option here
        if st.session_state.get(key) not in versions:
            st.session_state.pop(key, None)
    a, b = default_pair(versions, ctx.iteration, ctx.compare)
    c1, c2 = st.columns(2)
    label = lambda v: f"D({v})"  # noqa: E731
    a = c1.selectbox("Version A (before)", versions, index=versions.index(a), key="diff_a", format_func=label)
    b = c2.selectbox("Version B (after)", versions, index=versions.index(b), key="diff_b", format_func=label)
    return int(a), int(b)


def _pick_filters(summary: DiffSummary) -> tuple[str | None, str | None, int]:
    """(kind, axis, page) chosen above the list; None: any."""
    c1, c2, c3 = st.columns(3)
    axis = c1.selectbox("Axis", [ANY, *AXES], key="diff_axis")
    kind = c2.selectbox("Change", [ANY, *KINDS], key="diff_kind")
    axis_f, kind_f = (None if axis == ANY else axis), (None if kind == ANY else kind)
    pages = max(1, -(-summary.total(kind_f, axis_f) // PAGE_SIZE))
    # one page widget per comparison and filter: a new filter starts at its first page
    page = c3.number_input("Page", min_value=1, max_value=pages, value=1,
                           key=f"diff_page_{summary.a}_{summary.b}_{axis}_{kind}")
    return kind_f, axis_f, int(page)


def render_counts(summary: DiffSummary) -> None:
    st.caption(f"D({summary.a}): {summary.size_a:,} samples · D({summary.b}): {summary.size_b:,} samples")
    cols = st.columns(len(KINDS))
    for col, kind in zip(cols, KINDS, strict=True):
        col.metric(kind.capitalize(), fmt_int(summary.total(kind)))
    table = summary.table()
    st.markdown(f"**Changes per kind and axis, D({summary.a}) → D({summary.b})**")
    st.dataframe(dashes(table, {c: COUNT for c in table.columns if c != "kind"}), hide_index=True,
                 key="diff_counts")


def render_change(change: VersionChange, a: int, b: int) -> None:
    with st.container(border=True):
        st.caption(f"{change.kind} · {change.axis or 'no proposal'}")
        if change.kind == "rewritten":
            render_diff(change.old.model_dump(), change.new.model_dump(),
                        titles=(f"D({a}) · {change.old_id}", f"D({b}) · {change.new_id}"))
        elif change.new is not None:
            render_sample_text(f"In D({b}) only · {change.new_id}", change.new.model_dump())
        else:
            render_sample_text(f"In D({a}) only · {change.old_id}", change.old.model_dump())


def _download(ctx: Context, a: int, b: int, kind: str | None, axis: str | None, total: int) -> None:
    c1, c2 = st.columns([1, 3])
    suffix = c1.selectbox("Export format", list(EXPORT_SUFFIXES), key="diff_format",
                          format_func=lambda s: s.lstrip(".").upper())
    name = "-".join(["changes", f"D{a}", f"D{b}", *(x for x in (kind, axis) if x)]) + suffix
    c2.download_button(
        f"Download {total:,} change{'' if total == 1 else 's'} ({suffix.lstrip('.').upper()})",
        # made when clicked, on its own thread: the page never waits for an export it may not need
        data=lambda: resources.version_diff_export(ctx.root, a, b, kind, axis, suffix, ctx.version),
        file_name=name, mime="text/csv" if suffix == ".csv" else "application/jsonl",
        on_click="ignore", disabled=total == 0, key="diff_download")


def render_compare_versions(ctx: Context) -> None:
    versions = list(resources.dataset_versions(ctx.root, ctx.version))
    if not versions:
        st.info("No dataset yet. Import one in the Import tab, then build D(1) on the Iterations "
                "page to compare versions.")
        return
    if len(versions) == 1:
        only = versions[0]
        st.info(f"Only D({only}) exists. Build D({only + 1}) on the Iterations page to compare versions.")
        return
    a, b = _pick_versions(ctx, versions)
    if a == b:
        st.info(f"Pick two different versions: A and B are both D({a}).")
        return
    try:
        summary = resources.version_diff_summary(ctx.root, a, b, ctx.version)
    except Exception as exc:  # a sentence, not a traceback (a store busy past its wait, say)
        render_error(exc, f"Could not compare D({a}) and D({b})")
        return
    render_counts(summary)
    kind, axis, page = _pick_filters(summary)
    total = summary.total(kind, axis)
    _download(ctx, a, b, kind, axis, total)
    if total == 0:
        st.info(f"No change matches this filter between D({a}) and D({b})." if axis or kind
                else f"D({a}) and D({b}) hold the same samples.")
        return
    offset = (page - 1) * PAGE_SIZE
    changes = resources.version_diff_page(ctx.root, a, b, kind, axis, PAGE_SIZE, offset, ctx.version)
    st.caption(f"Changes {offset + 1:,}–{offset + len(changes):,} of {total:,}")
    for change in changes:
        render_change(change, a, b)
