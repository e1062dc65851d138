"""umap-learn's numba kernels compiled once per environment instead of once per process.

umap-learn declares most of its kernels without numba's `cache=True`, so every process that
draws a map compiles them again: about 30 s of a small map's 32 s on a 2-core CPU, paid by each
projection job, each diagnosis that draws its map and each Studio restart. numba can cache a
dispatcher after the fact (`Dispatcher.enable_caching`), which writes the compiled code beside
the module (its `__pycache__`, or numba's user cache folder where that is read-only; or
NUMBA_CACHE_DIR) and loads it in later processes. The compiled code is the same, so the maps are
the same. pynndescent, which UMAP uses for neighbours from 4,096 points on, caches its own.
"""

from __future__ import annotations

import functools
import importlib
import logging
import warnings

UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.spectral", "umap.distances",
                "umap.sparse")


@functools.cache
def cache_umap_kernels() -> int:
    """Turns on numba's disk cache for every umap-learn kernel not yet compiled; returns how many.
    Safe to call often (once per process does the work)."""
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # numba absent: umap-learn cannot run either
        return 0
    count = 0
    for name in UMAP_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and not value.overloads:
                value.enable_caching()
                count += 1
    # a kernel numba cannot cache (one that takes a function as an argument) is compiled as
    # before; numba says so once per kernel, which is noise to a user
    warnings.filterwarnings("ignore", message=".*cannot cache.*", module="numba")
    logging.getLogger(__name__).debug("numba disk cache on for %d umap-learn kernels", count)
    return count
