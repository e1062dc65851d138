"""Small summaries the Studio draws: histogram bins, drawing subsets for big scatters.

The app draws precomputed bins instead of shipping every value to the browser on each slider
move, and draws a bounded subset of a large map (every flagged point kept) so it stays fluid.
"""

from __future__ import annotations

import numpy as np


def finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def shared_edges(*arrays: np.ndarray, bins: int = 50) -> np.ndarray:
    """Bin edges covering every finite value of all arrays (so two iterations share bins)."""
    parts = [finite(a) for a in arrays]
    parts = [p for p in parts if p.size]
    if not parts:
        return np.linspace(0.0, 1.0, bins + 1)
    lo = min(float(p.min()) for p in parts)
    hi = max(float(p.max()) for p in parts)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of the finite values per bin."""
    counts, _ = np.histogram(finite(values), bins=edges)
    return counts


def bin_centers(edges: np.ndarray) -> np.ndarray:
    return (edges[:-1] + edges[1:]) / 2


MAX_KEPT_SHARE = 0.75


def drawing_subset(n: int, keep: np.ndarray | None = None, max_points: int = 50_000,
                   seed: int = 0) -> np.ndarray:
    """Indices of at most `max_points` of n points: all `keep` points, then a random rest.

    When `keep` points exceed 3/4 of the budget they are sampled too, so the picture still
    shows the unflagged points around them.
    Sorted, and stable for a given (n, seed), so the picture does not jump between reruns.
    """
    if n <= max_points:
        return np.arange(n)
    keep_mask = np.zeros(n, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    keep_idx = np.flatnonzero(keep_mask)
    rng = np.random.default_rng(seed)
    if keep_idx.size > max_points * MAX_KEPT_SHARE:  # too many to keep: leave room for context
        keep_idx = rng.choice(keep_idx, size=int(max_points * MAX_KEPT_SHARE), replace=False)
    others = np.flatnonzero(~keep_mask)
    rest = rng.choice(others, size=min(max_points - keep_idx.size, others.size), replace=False)
    return np.sort(np.concatenate([keep_idx, rest]))


def positions(table_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Index of each of `ids` in `table_ids` (-1 when absent); compute once, reuse per selection."""
    import pandas as pd

    return pd.Index(table_ids).get_indexer(ids)


def flag_labels(table_ids: np.ndarray, masks: dict[str, np.ndarray], ids: np.ndarray,
                pos: np.ndarray | None = None) -> np.ndarray:
    """Per sample in `ids`: the axis that flagged it, 'several axes', or 'not flagged'."""
    pos = positions(table_ids, ids) if pos is None else pos
    found = pos >= 0
    labels = np.full(len(ids), "not flagged", dtype=object)
    hits = np.zeros(len(ids), dtype=int)
    for axis, mask in masks.items():
        flagged = np.zeros(len(ids), dtype=bool)
        flagged[found] = mask[pos[found]]
        labels[flagged] = axis
        hits += flagged
    labels[hits > 1] = "several axes"
    return labels
