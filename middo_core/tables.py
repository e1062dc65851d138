"""The paper's tables for any run: counts per axis per iteration (Table 6), scores (Table 1)."""

from __future__ import annotations

import pandas as pd

from middo_core.store.iterations import get_metrics, list_iterations
from middo_core.store.samples import dataset_sizes
from middo_core.workspace import Workspace


def iteration_table(ws: Workspace) -> pd.DataFrame:
    """One row per paper iteration k (D(k-1) -> D(k)): flagged per axis, proposals, size after."""
    with ws.store.read() as con:
        records = {r["number"]: r for r in list_iterations(con)}
        sizes = dataset_sizes(con)
    rows = [{"iteration": 0, "complexity": None, "diversity": None, "quality": None,
             "union": None, "accepted": None, "size": sizes.get(0, {}).get("train", 0)}]
    for number in sorted(records):
        counts = records[number]["counts"]
        selection = counts.get("selection")
        if not selection:
            continue
        flagged = selection.get("flagged", {})
        build = counts.get("build", {})
        rows.append({
            "iteration": number + 1,
            "complexity": flagged.get("complexity"),
            "diversity": flagged.get("diversity"),
            "quality": flagged.get("quality"),
            "union": selection.get("union"),
            "accepted": sum(build.get("added", {}).values()) if build else None,
            "size": sizes.get(number + 1, {}).get("train"),
        })
    return pd.DataFrame(rows)


def metrics_table(ws: Workspace) -> pd.DataFrame:
    """Benchmarks x iterations (the paper's Table 1 layout); one column per iteration."""
    with ws.store.read() as con:
        metrics = get_metrics(con)
    if metrics.empty:
        return pd.DataFrame()
    metrics["benchmark"] = metrics["benchmark"] + " / " + metrics["metric"]
    return metrics.pivot_table(index="benchmark", columns="iteration", values="value", aggfunc="first")


DASH = "–"  # a missing value, in the CLI and in the Studio alike


def text_table(frame: pd.DataFrame, index: bool = False) -> str:
    """The frame as plain text for a terminal: a dash for a missing value (never NaN or None),
    counts with thousands separators, scores with four significant digits."""
    if frame.empty:
        return ""

    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return DASH
        if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
            return f"{value:,.0f}"
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    shown = frame.astype(object).map(cell)
    return shown.to_string(index=index)


LOWER_IS_BETTER = ("loss", "perplexity")  # metric names whose smallest value is the best
NOT_A_SCORE = ("tokens", "n")  # counts reported beside the scores


def best_cells(table: pd.DataFrame) -> pd.DataFrame:
    """True where a row (benchmark / metric) reaches its best value across the columns."""
    best = pd.DataFrame(False, index=table.index, columns=table.columns)
    for label, row in table.iterrows():
        metric = str(label).rsplit(" / ", 1)[-1]
        if metric in NOT_A_SCORE or row.isna().all():
            continue
        target = row.min() if any(word in metric for word in LOWER_IS_BETTER) else row.max()
        best.loc[label] = row == target
    return best
