"""Dynamic thresholds tau = mu + m * sigma per signal, and the flagged sets they select.

complex = loss_pre > tau_pre AND loss_post > tau_post   (m > 0 flags the top tail)
sparse  = diversity < tau_div                           (m < 0 flags the bottom tail)
low     = quality < tau_q                               (m < 0 flags the bottom tail)

Everything is vectorised over numpy arrays so moving an m answers in milliseconds at 1M samples.
Missing values (an empty response has no loss) are never flagged on that signal.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

AXES = ("complexity", "diversity", "quality")
# the signal columns each axis reads
AXIS_COLUMNS = {"complexity": ("loss_pre", "loss_post"), "diversity": ("diversity",), "quality": ("quality",)}
NO_SPREAD = 1e-6


@dataclass(frozen=True)
class SignalStats:
    mean: float
    std: float
    count: int

    def tau(self, m: float) -> float:
        return self.mean + m * self.std


def signal_stats(values: np.ndarray) -> SignalStats:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return SignalStats(float("nan"), float("nan"), 0)
    return SignalStats(float(finite.mean()), float(finite.std()), int(finite.size))


@dataclass
class Selection:
    ids: np.ndarray  # sample ids, aligned with the masks
    m: dict[str, float]
    thresholds: dict[str, float]  # tau_pre, tau_post, tau_diversity, tau_quality
    masks: dict[str, np.ndarray]  # axis -> boolean mask over ids
    warnings: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.ids.size)

    @property
    def union_mask(self) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        for mask in self.masks.values():
            out |= mask
        return out

    def flagged_ids(self, axis: str) -> list[str]:
        return self.ids[self.masks[axis]].tolist() if axis in self.masks else []

    @property
    def complex_ids(self) -> list[str]:
        return self.flagged_ids("complexity")

    @property
    def sparse_ids(self) -> list[str]:
        return self.flagged_ids("diversity")

    @property
    def low_ids(self) -> list[str]:
        return self.flagged_ids("quality")

    def flagged(self) -> dict[str, list[str]]:
        """axis -> flagged sample ids (the refiner's input)."""
        return {axis: self.flagged_ids(axis) for axis in self.masks}

    def counts(self) -> dict[str, object]:
        n = max(self.n, 1)
        per_axis = {axis: int(mask.sum()) for axis, mask in self.masks.items()}
        overlaps = {}
        for a, b in itertools.combinations(self.masks, 2):
            overlaps[f"{a}&{b}"] = int((self.masks[a] & self.masks[b]).sum())
        if len(self.masks) == 3:
            overlaps["all"] = int(np.logical_and.reduce(list(self.masks.values())).sum())
        union = int(self.union_mask.sum())
        return {
            "n": self.n,
            "flagged": per_axis,
            "fraction": {axis: c / n for axis, c in per_axis.items()},
            "overlaps": overlaps,
            "union": union,
            "union_fraction": union / n,
            "m": dict(self.m),
            "thresholds": dict(self.thresholds),
            "warnings": list(self.warnings),
        }


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), np.nan)
    return frame[name].to_numpy(dtype=float, na_value=np.nan)


class SignalTable:
    """The signal columns as arrays with their statistics, computed once; select() is then cheap."""

    def __init__(self, frame: pd.DataFrame) -> None:
        ids = frame.get("sample_id", frame.index)
        self.ids = np.asarray(ids, dtype=object)
        self.values = {c: _column(frame, c) for c in ("loss_pre", "loss_post", "diversity", "quality")}
        self.stats = {c: signal_stats(v) for c, v in self.values.items()}

    def __len__(self) -> int:
        return int(self.ids.size)

    def select(self, m_complexity: float = 1.0, m_diversity: float = -1.5, m_quality: float = -1.5,
               axes: tuple[str, ...] = AXES) -> Selection:
        m = {"complexity": m_complexity, "diversity": m_diversity, "quality": m_quality}
        thresholds: dict[str, float] = {}
        masks: dict[str, np.ndarray] = {}
        warnings: list[str] = []
        with np.errstate(invalid="ignore"):
            for axis in axes:
                cols = AXIS_COLUMNS[axis]
                mask = np.ones(len(self), dtype=bool)
                for col in cols:
                    stats = self.stats[col]
                    tau = stats.tau(m[axis])
                    thresholds[f"tau_{col}"] = tau
                    if stats.count == 0:
                        warnings.append(f"{col} has no values: diagnose {axis} first")
                        mask[:] = False
                        continue
                    if stats.std < NO_SPREAD:
                        warnings.append(f"{col} has almost no spread (sigma={stats.std:.2g}): m has no effect")
                    v = self.values[col]
                    mask &= (v > tau) if axis == "complexity" else (v < tau)
                masks[axis] = mask  # NaN compares False: missing values are never flagged
        return Selection(self.ids, {a: m[a] for a in axes}, thresholds, masks, warnings)


def select(frame: pd.DataFrame, m_complexity: float = 1.0, m_diversity: float = -1.5,
           m_quality: float = -1.5, axes: tuple[str, ...] = AXES) -> Selection:
    """Flag samples of a signals frame (columns sample_id or index, loss_pre, loss_post, diversity, quality)."""
    return SignalTable(frame).select(m_complexity, m_diversity, m_quality, axes)


M_GRID = tuple(np.round(np.arange(0.0, 4.01, 0.25), 2))


def auto_m(frame: pd.DataFrame | SignalTable, target: float = 0.15, tolerance: float = 0.025,
           axes: tuple[str, ...] = AXES, max_rows: int = 200_000, seed: int = 0) -> Selection:
    """The mildest m's (smallest total |m|) whose union lands within `tolerance` of `target`.

    Diversity and quality share one |m| (both are bottom tails); complexity has its own. When no
    combination lands in the band, the one closest to the target wins. Large tables are searched
    on a random subsample, then the chosen m's are applied to the whole table.
    """
    table = frame if isinstance(frame, SignalTable) else SignalTable(frame)
    probe = table
    if len(table) > max_rows:
        rng = np.random.default_rng(seed)
        keep = rng.choice(len(table), size=max_rows, replace=False)
        probe = SignalTable(pd.DataFrame({"sample_id": table.ids[keep],
                                          **{c: v[keep] for c, v in table.values.items()}}))
    best: tuple[float, float, float, float] | None = None  # (out_of_band, total |m|, distance, ...)
    best_m = (1.0, -1.5, -1.5)
    for mc in M_GRID:
        for mdq in M_GRID:
            sel = probe.select(mc, -mdq, -mdq, axes)
            frac = sel.union_mask.mean() if sel.n else 0.0
            distance = abs(frac - target)
            total = (mc if "complexity" in axes else 0.0) + (
                mdq * sum(a in axes for a in ("diversity", "quality")))
            key = (float(distance > tolerance), total if distance <= tolerance else distance, distance, total)
            if best is None or key < best:
                best, best_m = key, (float(mc), -float(mdq), -float(mdq))
    return table.select(*best_m, axes=axes)


def explain(row: pd.Series, selection: Selection, table: SignalTable) -> list[str]:
    """Why a sample was flagged, in words: one sentence per axis that flagged it."""
    reasons = []
    idx = int(np.flatnonzero(table.ids == row.get("sample_id", row.name))[0])

    def top_share(col: str, higher: bool) -> float:
        v = table.values[col]
        finite = v[np.isfinite(v)]
        x = v[idx]
        return float(((finite >= x) if higher else (finite <= x)).mean() * 100)

    if selection.masks.get("complexity", np.zeros(1, bool))[idx]:
        pre, post = table.values["loss_pre"][idx], table.values["loss_post"][idx]
        share = max(top_share("loss_pre", True), top_share("loss_post", True))
        reasons.append(f"loss {pre:.2f} before and {post:.2f} after training, both in the top {share:.0f}%")
    if selection.masks.get("diversity", np.zeros(1, bool))[idx]:
        d = table.values["diversity"][idx]
        reasons.append(f"mean similarity to its nearest neighbours {d:.2f}, in the bottom "
                       f"{top_share('diversity', False):.0f}% (an isolated sample)")
    if selection.masks.get("quality", np.zeros(1, bool))[idx]:
        q = table.values["quality"][idx]
        reasons.append(f"quality score {q:.1f}/10, in the bottom {top_share('quality', False):.0f}%")
    return reasons
