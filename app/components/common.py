"""Small render helpers shared by the pages: formatting, errors as sentences."""

from __future__ import annotations

import streamlit as st

from middo_core.files import disk_full, disk_full_message


def fmt_int(n: float | int | None) -> str:
    return "–" if n is None else f"{int(n):,}"


def fmt_pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x * 100:.{digits}f}%"


def fmt_num(x: float | None, digits: int = 2) -> str:
    try:
        return "–" if x is None or x != x else f"{x:,.{digits}f}"
    except TypeError:
        return "–"


def render_error(exc: BaseException, doing: str = "") -> None:
    """An error as one sentence (the library's messages already name file, row and field)."""
    text = str(exc).strip() or type(exc).__name__
    if disk_full(exc):  # which disk, and what to do, as the CLI says it
        from app.state import WS_KEY

        text = disk_full_message(exc, st.session_state.get(WS_KEY) or None)
    st.error(f"{doing}: {text}" if doing else text, icon=":material/error:")


DASH = "–"
COUNT = "{:,.0f}"


def dashes(frame, formats: dict[str, str] | None = None):
    """The frame for st.dataframe with missing cells shown as a dash and numbers formatted per
    column (e.g. {"size": COUNT, "loss_pre": "{:.2f}"}).

    The formatted columns become text: Streamlit draws a missing value as a grey "None" whatever
    a Styler's na_rep says, so the dash has to be the cell's value."""
    formats = {c: f for c, f in (formats or {}).items() if c in frame.columns}

    def cell(fmt: str):
        return lambda x: DASH if x is None or x != x else fmt.format(float(x))

    return frame.assign(**{c: frame[c].map(cell(f)).astype(str) for c, f in formats.items()})


def fmt_optional(x, digits: int = 1) -> str:
    """A number for a text cell, or a dash when missing."""
    return DASH if x is None or x != x else f"{x:,.{digits}f}"


def render_best(table):
    """A score table with each row's best value shaded (direction known by middo_core.tables);
    a dash where an iteration has no score (as text: see `dashes`)."""
    from middo_core.tables import NOT_A_SCORE, best_cells

    mask = best_cells(table)

    def row(values):
        count = str(values.name).rsplit(" / ", 1)[-1] in NOT_A_SCORE  # e.g. tokens: a count
        return values.map(lambda x: DASH if x is None or x != x else f"{x:,.0f}" if count else f"{x:,.3f}")

    shown = table.apply(row, axis=1)
    return shown.style.apply(lambda _: mask.replace({True: "background-color: #c9efcf", False: ""}),
                             axis=None)
