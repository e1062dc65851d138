"""How far each signal can be trusted on this workspace's data: canaries and curators' verdicts.

Canary health (middo_core.canaries): for each canary kind and each signal, the AUROC of the
signal's flag direction against the canaries' clean sources (1.0: every canary looks worse than
every source; 0.5: chance), and the recall of each axis's rule at the current m (how many of the
canaries the threshold flags; the threshold's mean and deviation come from the dataset alone).
An axis's health pools the canaries of the kinds it should catch, scored by the axis's own rule:
complexity by min(z_pre, z_post) (flagged exactly when both z's exceed m), diversity and quality
by their score, lower flagged.

Verdict precision: among the samples an axis flags at the current m, the share a curator marked
"real problem" of those marked at all; and the m that best separates "real" from "false alarm"
on the verdicts so far.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from middo_core.canaries import AXIS_OF_KIND
from middo_core.selection import AXES, AXIS_COLUMNS, SignalTable, stored_m
from middo_core.store.canaries import current_verdicts, load_canaries
from middo_core.workspace import Workspace

# signal columns whose high values are flagged (the rest: low values)
HIGH_FLAGGED = {"loss_pre", "loss_post", "complexity"}
MATRIX_SIGNALS = ("complexity", "diversity", "quality", "loss_pre", "loss_post")
GOOD, WEAK = 0.8, 0.65  # AUROC bands: good >= GOOD; weak >= WEAK; below: near chance
ALPHA = 0.05  # above WEAK but this likely at chance: too few canaries to tell ("uncertain")
MIN_VERDICTS = 3  # verdicts on an axis before it suggests an m

WHAT_TO_DO = {
    "quality": "try another signals.quality_mode, or set signals.judge_model to a larger model",
    "complexity": "train M(i) for longer, or diagnose with a larger base model",
    "diversity": "diagnose with a larger model (its embeddings place the samples)",
}


@dataclass
class KindHealth:
    kind: str
    axis: str  # the axis that should flag it
    n: int
    auroc: dict[str, float | None]  # signal -> AUROC against the sources
    recall: float | None  # share of these canaries the axis's rule flags at the current m
    sources_flagged: float | None  # share of their clean sources it flags


@dataclass
class AxisHealth:
    axis: str
    n: int  # canaries of this axis's kinds
    auroc: float | None
    p: float | None  # one-sided Mann-Whitney p-value against chance
    recall: float | None
    status: str  # good | weak | uncertain | near chance | unmeasured
    message: str = ""


@dataclass
class Health:
    iteration: int
    m: dict[str, float]
    axes: dict[str, AxisHealth] = field(default_factory=dict)
    kinds: list[KindHealth] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "m": self.m,
                "axes": {a: asdict(h) for a, h in self.axes.items()},
                "kinds": [asdict(k) for k in self.kinds]}

    def warnings(self) -> list[str]:
        return [h.message for h in self.axes.values() if h.status == "near chance"]


def auroc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """P(a positive scores above a negative), ties counted half; None without both classes."""
    positive, negative = positive[np.isfinite(positive)], negative[np.isfinite(negative)]
    if positive.size == 0 or negative.size == 0:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([positive, negative]))
    u = ranks[: positive.size].sum() - positive.size * (positive.size + 1) / 2
    return float(u / (positive.size * negative.size))


def chance_p(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """How likely a signal at chance ranks the canaries at least this far above their sources
    (one-sided Mann-Whitney; exact for small sets)."""
    positive, negative = positive[np.isfinite(positive)], negative[np.isfinite(negative)]
    if positive.size == 0 or negative.size == 0:
        return None
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(positive, negative, alternative="greater").pvalue)


def band(a: float | None, p: float | None) -> str:
    if a is None:
        return "unmeasured"
    if a < WEAK:
        return "near chance"
    if p is None or p > ALPHA:
        return "uncertain"
    return "good" if a >= GOOD else "weak"


class _Scores:
    """Flag scores (higher: more flagged) of samples and canaries, on the dataset's scale."""

    def __init__(self, table: SignalTable) -> None:
        self.table = table

    def z(self, column: str, values: np.ndarray) -> np.ndarray:
        stats = self.table.stats[column]
        if not stats.count or stats.std <= 0:
            return np.full(values.shape, np.nan)
        return (values - stats.mean) / stats.std

    def score(self, signal: str, frame: pd.DataFrame) -> np.ndarray:
        """The flag direction of `signal` for the rows of `frame` (NaN where it has no value)."""
        def col(name: str) -> np.ndarray:
            if name not in frame:
                return np.full(len(frame), np.nan)
            return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)

        if signal == "complexity":
            return np.fmin(self.z("loss_pre", col("loss_pre")), self.z("loss_post", col("loss_post")))
        values = col(signal)
        return values if signal in HIGH_FLAGGED else -values

    def flagged(self, axis: str, frame: pd.DataFrame, m: float) -> np.ndarray:
        """The axis's rule at m (NaN: no value, never flagged)."""
        with np.errstate(invalid="ignore"):
            if axis == "complexity":
                return self.score("complexity", frame) > m
            column = AXIS_COLUMNS[axis][0]
            tau = self.table.stats[column].tau(m)
            return pd.to_numeric(frame.get(column, pd.Series(np.nan, index=frame.index)),
                                 errors="coerce").to_numpy(dtype=float) < tau


def signal_health(ws: Workspace, iteration: int, table: SignalTable | None = None,
                  m: dict[str, float] | None = None) -> Health | None:
    """The canary health of D(iteration)'s signals at m (default: the stored m's); None when
    its diagnosis scored no canaries."""
    from middo_core.selection import signal_table

    with ws.store.read() as con:
        canaries = load_canaries(con, iteration)
    if canaries.empty:
        return None
    table = table if table is not None else signal_table(ws, iteration)
    m = m or stored_m(ws, iteration)
    return health_of(iteration, table, canaries, m)


def health_of(iteration: int, table: SignalTable, canaries: pd.DataFrame,
              m: dict[str, float]) -> Health:
    scores = _Scores(table)
    position = {sid: i for i, sid in enumerate(table.ids)}
    sources = pd.DataFrame({c: v for c, v in table.values.items()}, index=table.ids)
    out = Health(iteration, {a: float(m[a]) for a in AXES})
    pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]] = {}
    for kind, group in canaries.groupby("kind", sort=False):
        axis = AXIS_OF_KIND.get(str(kind), str(group["axis"].iloc[0]))
        present = group[group["source_id"].isin(position)]  # a source no longer in D(i): left out
        src = sources.loc[present["source_id"].unique()]
        aurocs = {sig: _round(auroc(scores.score(sig, present), scores.score(sig, src)))
                  for sig in MATRIX_SIGNALS}
        hit = scores.flagged(axis, present, m[axis])
        src_hit = scores.flagged(axis, src, m[axis])
        out.kinds.append(KindHealth(str(kind), axis, len(present), aurocs,
                                    _round(hit.mean()) if len(hit) else None,
                                    _round(src_hit.mean()) if len(src_hit) else None))
        pos, neg, flags = pooled.setdefault(axis, ([], [], []))
        pos.append(scores.score(axis, present))
        neg.append(scores.score(axis, src))
        flags.append(hit)
    for axis in AXES:
        if axis not in pooled:
            out.axes[axis] = AxisHealth(axis, 0, None, None, None, None, "unmeasured")
            continue
        pos, neg = np.concatenate(pooled[axis][0]), np.concatenate(pooled[axis][1])
        a, p = auroc(pos, neg), chance_p(pos, neg)
        hits = np.concatenate(pooled[axis][2])
        status = band(a, p)
        health = AxisHealth(axis, int(pos.size), _round(a), _round(p),
                            _round(hits.mean()) if hits.size else None, status)
        if status == "near chance":
            health.message = (f"{axis}: near chance on this data (AUROC {a:.2f} on {pos.size} "
                              f"canaries): moving m_{axis} tunes noise; {WHAT_TO_DO[axis]}")
        elif status == "uncertain":
            health.message = (f"{axis}: AUROC {a:.2f} on only {pos.size} canaries, too few to tell "
                              "from chance: raise canaries.per_kind")
        elif status == "weak":
            health.message = (f"{axis}: weak on this data (AUROC {a:.2f} on {pos.size} canaries): "
                              "read its flags with care")
        out.axes[axis] = health
    return out


def _round(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 3)


# --- curators' verdicts ----------------------------------------------------------------------


@dataclass
class VerdictPrecision:
    axis: str
    real: int  # flagged at m and marked a real problem
    false_alarm: int  # flagged at m and marked a false alarm
    precision: float | None
    suggested_m: float | None  # the m that best separates the verdicts (None: too few)
    marked: int  # verdicts on this axis, flagged at m or not


def verdict_precision(ws: Workspace, iteration: int, table: SignalTable,
                      m: dict[str, float], verdicts: pd.DataFrame | None = None
                      ) -> dict[str, VerdictPrecision]:
    """Per axis: the precision of its flags at m against the curators' verdicts on D(iteration),
    and the m whose flags agree best with them (highest F1 of "real"; ties: the milder m)."""
    if verdicts is None:
        with ws.store.read() as con:
            verdicts = current_verdicts(con, iteration)
    scores = _Scores(table)
    # the rows of the judged samples only: this runs on every move of an m, so nothing here may
    # cost a pass over a million samples in Python (a dict of every id took ~0.5 s at 1M)
    ids = pd.unique(verdicts["sample_id"].to_numpy(dtype=object))
    rows_of = table.positions(ids) if len(ids) else np.zeros(0, int)
    position = {sid: int(i) for sid, i in zip(ids, rows_of, strict=True) if i >= 0}
    out = {}
    for axis in AXES:
        mine = verdicts[(verdicts["axis"] == axis) & verdicts["sample_id"].isin(position)]
        at = [position[s] for s in mine["sample_id"]]
        rows = pd.DataFrame({c: v[at] for c, v in table.values.items()})
        real = (mine["verdict"] == "real").to_numpy()
        flagged = scores.flagged(axis, rows, m[axis]) if len(rows) else np.zeros(0, bool)
        tp, fp = int((flagged & real).sum()), int((flagged & ~real).sum())
        out[axis] = VerdictPrecision(axis, tp, fp, _round(tp / (tp + fp)) if tp + fp else None,
                                     _suggest(scores, axis, rows, real), int(len(mine)))
    return out


def _suggest(scores: _Scores, axis: str, rows: pd.DataFrame, real: np.ndarray) -> float | None:
    if len(rows) < MIN_VERDICTS or not real.any():
        return None
    grid = np.round(np.arange(-1.0, 4.0001, 0.05), 2) if axis == "complexity" else \
        np.round(np.arange(-6.0, 1.0001, 0.05), 2)
    best, best_m = -1.0, None
    for m in sorted(grid, key=abs):  # the milder m first: it wins ties
        flagged = scores.flagged(axis, rows, float(m))
        tp = (flagged & real).sum()
        f1 = 2 * tp / (flagged.sum() + real.sum()) if flagged.sum() + real.sum() else 0.0
        if f1 > best + 1e-12:
            best, best_m = f1, float(m)
    return best_m
