"""Which samples of a dataset version a refinement run works on."""

from __future__ import annotations

from middo_core.refine.operators import AXES
from middo_core.workspace import Workspace


def flagged_sets(ws: Workspace, iteration: int, axes: tuple[str, ...] | list[str] = AXES) -> dict[str, list[str]]:
    """axis -> sample ids: the iteration's stored selection; without one, the thresholds applied
    with its stored m's (or the config's) to its stored signals. Raises when there are none."""
    from middo_core.store.iterations import get_iteration

    with ws.store.read() as con:
        rec = get_iteration(con, iteration) or {"counts": {}}
    stored = rec["counts"].get("flagged_ids")
    if stored is None:
        from middo_core.loop import signal_table

        cfg = ws.config.selection
        defaults = (cfg.m_complexity, cfg.m_diversity, cfg.m_quality)
        m = [rec.get(f"m_{a}") for a in ("complexity", "diversity", "quality")]
        m = [d if v is None or v != v else v for v, d in zip(m, defaults, strict=True)]  # v != v: NaN
        stored = signal_table(ws, iteration).select(*m).flagged()
    return {axis: list(stored.get(axis, [])) for axis in axes}
