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


def drawing_subset(n: int, keep: np.ndarray | None = None, max_points: int = 50_000,
                   seed: int = 0) -> np.ndarray:
    """Indices of at most `max_points` of n points: all `keep` points first, then a random rest.

    Sorted, and stable for a given (n, seed), so the picture does not jump between reruns.
    """
    if n <= max_points:
        return np.arange(n)
    keep_idx = np.flatnonzero(keep) if keep is not None else np.empty(0, dtype=int)
    if keep_idx.size >= max_points:
        return np.sort(np.random.default_rng(seed).choice(keep_idx, size=max_points, replace=False))
    others = np.setdiff1d(np.arange(n), keep_idx, assume_unique=True)
    rest = np.random.default_rng(seed).choice(others, size=max_points - keep_idx.size, replace=False)
    return np.sort(np.concatenate([keep_idx, rest]))


def flag_labels(table_ids: np.ndarray, masks: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """Per sample in `ids`: the axis that flagged it, 'several axes', or 'not flagged'."""
    import pandas as pd

    pos = pd.Index(table_ids).get_indexer(ids)
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
