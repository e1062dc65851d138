"""Refinement as a background job kind ("refine"), for the Studio and `run_loop`."""

from __future__ import annotations

from typing import Any

from middo_core.progress import ProgressFn
from middo_core.refine.pipeline import refine
from middo_core.refine.report import RefineOptions
from middo_core.selection import AXES, flagged_sets
from middo_core.workspace import Workspace


def refine_job(ws: Workspace, run_id: str, iteration: int | None, args: dict[str, Any],
               progress: ProgressFn) -> dict[str, Any]:
    """args (all optional): axes, backend, model, variant, retry_failed, limit, lenient,
    keep_truncated, flagged."""
    if iteration is None:
        raise ValueError("a refine job needs an iteration")
    axes = tuple(args.get("axes") or AXES)
    flagged = args.get("flagged") or flagged_sets(ws, iteration, axes)
    backend = args.get("backend")
    if args.get("model"):
        from middo_core.llm import make_backend

        backend = make_backend(ws.config.refine, name=backend, model=args["model"])
    options = RefineOptions(template_variant=args.get("variant"),
                            lenient_marker=bool(args.get("lenient", False)),
                            keep_truncated=args.get("keep_truncated"))
    report = refine(ws, iteration, flagged, backend=backend, progress=progress,
                    retry_failed=bool(args.get("retry_failed", False)), limit=args.get("limit"),
                    options=options)
    return report.to_json()

