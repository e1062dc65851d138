"""Selection: which samples of a dataset version are flagged, on which axis, and why.

Dynamic thresholds tau = mu + m * sigma per signal:

complex = loss_pre > tau_pre AND loss_post > tau_post   (m > 0 flags the top tail)
sparse  = diversity < tau_div                           (m < 0 flags the bottom tail)
low     = quality < tau_q                               (m < 0 flags the bottom tail)

This module owns the signal table of an iteration, the thresholds, auto m, the random control,
the stored selection and the flagged sets the refiner works on; `AXES` is the one list of axes
and the default m's are the config's (SelectionConfig). Everything is vectorised over numpy
arrays so moving an m answers in milliseconds at 1M samples. Missing values (an empty response
has no loss) are never flagged on that signal.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from middo_core.access import Actor, check
from middo_core.config import SelectionConfig
from middo_core.store.iterations import get_iteration, upsert_iteration
from middo_core.workspace import Workspace

AXES = ("complexity", "diversity", "quality")  # the order every table and page shows them in
DEFAULT_M = {axis: getattr(SelectionConfig(), f"m_{axis}") for axis in AXES}  # middo.yaml's defaults
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
        self._index: pd.Index | None = None

    def __len__(self) -> int:
        return int(self.ids.size)

    def positions(self, ids) -> np.ndarray:
        """The rows of `ids` in the table (-1 where one is not in it). The id index is built on
        the first call and kept, so a lookup never scans every id again."""
        if self._index is None:
            self._index = pd.Index(self.ids)
        return self._index.get_indexer(pd.Index(ids, dtype=object))

    def select(self, m_complexity: float = DEFAULT_M["complexity"],
               m_diversity: float = DEFAULT_M["diversity"], m_quality: float = DEFAULT_M["quality"],
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


def select(frame: pd.DataFrame, m_complexity: float = DEFAULT_M["complexity"],
           m_diversity: float = DEFAULT_M["diversity"], m_quality: float = DEFAULT_M["quality"],
           axes: tuple[str, ...] = AXES) -> Selection:
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
    best_m = (DEFAULT_M["complexity"], DEFAULT_M["diversity"], DEFAULT_M["quality"])
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
    idx = int(table.positions([row.get("sample_id", row.name)])[0])
    if idx < 0:  # not a sample of this table: flagged by nothing in it
        return reasons

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


# --- a workspace's selection: its signal table, stored m's, the stored flags ---------------------

class SelectionError(RuntimeError):
    pass


def signal_table(ws: Workspace, iteration: int) -> SignalTable:
    """The signals of D(iteration) as a SignalTable; raises when it is not diagnosed."""
    from middo_core.store.signals import load_signals

    with ws.store.read() as con:
        frame = load_signals(con, iteration)
    if frame.empty:
        raise SelectionError(f"no signals for D({iteration}): diagnose it first")
    return SignalTable(frame)


def stored_m(ws: Workspace, iteration: int) -> dict[str, float]:
    """The m's saved with the iteration's selection, else the workspace config's, per axis."""
    with ws.store.read() as con:
        rec = get_iteration(con, iteration) or {}
    out = {}
    for axis in AXES:
        value = rec.get(f"m_{axis}")
        out[axis] = getattr(ws.config.selection, f"m_{axis}") if value is None or value != value else value
    return out


def choose(ws: Workspace, iteration: int, m: tuple[float, float, float] | None = None) -> Selection:
    """The selection the loop stores: the given m's, else the stored ones, else auto m (loop.selection
    auto-m) or the config's; replaced by the random control in a random-control workspace."""
    cfg, loop = ws.config.selection, ws.config.loop
    axes = tuple(loop.axes)
    table = signal_table(ws, iteration)
    with ws.store.read() as con:
        rec = get_iteration(con, iteration) or {}
    if m is None and rec.get("m_complexity") is not None:
        m = (rec["m_complexity"], rec["m_diversity"], rec["m_quality"])
    if m is None and loop.selection == "auto-m":
        selection = auto_m(table, target=cfg.target_fraction, axes=axes)
    else:
        selection = table.select(*(m or (cfg.m_complexity, cfg.m_diversity, cfg.m_quality)), axes=axes)
    if loop.control == "random":
        selection = random_control(ws, iteration, table)
    return selection


def save_selection(ws: Workspace, iteration: int, selection: Selection, actor: Actor = "cli") -> None:
    """Store the selection (its m's and flagged ids) for D(iteration); the owner's to do."""
    from middo_core.store.audit import record

    actor = check(ws, actor, "select")
    counts = selection.counts()
    with ws.store.write() as con:
        upsert_iteration(
            con, iteration, status="selected",
            m_complexity=selection.m.get("complexity"), m_diversity=selection.m.get("diversity"),
            m_quality=selection.m.get("quality"), k=ws.config.signals.k,
            counts={"selection": counts, "flagged_ids": selection.flagged()},
        )
        record(con, actor, "select", iteration, json.dumps(selection.m))


def random_control(ws: Workspace, iteration: int, table: SignalTable) -> Selection:
    """Flag as many samples per axis as the reference run did, drawn at random (seeded)."""
    from middo_core.workspace import open_workspace

    ref_path = ws.config.loop.reference
    if not ref_path:
        raise SelectionError("a random control needs loop.reference: the workspace whose counts it copies")
    ref = open_workspace(ref_path)
    with ref.store.read() as con:
        ref_rec = get_iteration(con, iteration) or {}
    flagged = ref_rec.get("counts", {}).get("selection", {}).get("flagged")
    if not flagged:
        raise SelectionError(f"the reference workspace has no selection for D({iteration}) yet")
    rng = np.random.default_rng(ws.config.seed + iteration)
    masks = {}
    for axis, count in flagged.items():
        mask = np.zeros(len(table), dtype=bool)
        mask[rng.choice(len(table), size=min(count, len(table)), replace=False)] = True
        masks[axis] = mask
    return Selection(table.ids, {a: float("nan") for a in masks}, {}, masks,
                     ["random control: flags drawn at random in the reference run's numbers"])


def flagged_sets(ws: Workspace, iteration: int, axes: tuple[str, ...] | list[str] = AXES) -> dict[str, list[str]]:
    """axis -> sample ids: the iteration's stored selection; without one, the thresholds applied
    with its stored m's (or the config's) to its stored signals. Raises when there are none."""
    with ws.store.read() as con:
        rec = get_iteration(con, iteration) or {"counts": {}}
    stored = rec["counts"].get("flagged_ids")
    if stored is None:
        m = stored_m(ws, iteration)
        stored = signal_table(ws, iteration).select(m["complexity"], m["diversity"], m["quality"]).flagged()
    return {axis: list(stored.get(axis, [])) for axis in axes}
