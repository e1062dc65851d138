"""umap-learn's (and pynndescent's) numba kernels compiled once per environment, not per process.

umap-learn declares most of its kernels without numba's `cache=True`, so every process that
draws a map compiles them again: about 30 s of a small map's 32 s on a 2-core CPU, paid by each
projection job, each diagnosis that draws its map and each Studio restart. numba can cache a
dispatcher after the fact (`Dispatcher.enable_caching`), which writes the compiled code beside
the module (its `__pycache__`, or numba's user cache folder where that is read-only; or
NUMBA_CACHE_DIR) and loads it in later processes. The compiled code is the same, so the maps are
the same. pynndescent, which UMAP uses for neighbours from 4,096 points on, caches only some of
its kernels: the same is done for the rest, except its neighbour descent, which numba cannot
cache (it reaches global arrays) and which each process compiles (~12 s; the estimate in
middo_core.projections counts it).
"""

from __future__ import annotations

import functools
import importlib
import logging
import warnings

UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.spectral", "umap.distances",
                "umap.sparse",
                # pynndescent (UMAP's neighbour search from 4,096 points on) caches only some
                "pynndescent.pynndescent_", "pynndescent.utils", "pynndescent.distances",
                "pynndescent.rp_trees", "pynndescent.graph_utils")


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
    warnings.filterwarnings("ignore", message=".*cannot cache compiled function")
    logging.getLogger(__name__).debug("numba disk cache on for %d umap-learn kernels", count)
    return count


def umap_kernels_cached() -> bool:
    """Whether this environment holds umap-learn's compiled kernels on disk (a map drawn here
    before), so a new process loads them in seconds instead of compiling them. Reads file names
    only; imports neither umap nor numba."""
    import importlib.util
    import os
    from pathlib import Path

    spec = importlib.util.find_spec("umap")
    if spec is None or not spec.submodule_search_locations:
        return False
    package = Path(next(iter(spec.submodule_search_locations)))
    places = [package / "__pycache__"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        places.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    places.append(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "numba")
    # the layout kernel is compiled by every map: its index file marks a warm cache
    return any(next(place.rglob("layouts._optimize_layout_euclidean_single_epoch-*.nbi"), None)
               for place in places if place.is_dir())
