"""The import job kind: a large file is imported in a background worker, with progress and cancel.

The run's result.json holds the import report, also when the import was refused (the run is then
failed and nothing was written), so the Studio can show every problem with its file, row and field.
"""

from __future__ import annotations

from typing import Any

from middo_core.progress import ProgressFn
from middo_core.workspace import Workspace


def import_job(ws: Workspace, run_id: str, iteration: int | None, args: dict[str, Any],
               progress: ProgressFn) -> dict[str, Any]:
    """args: path (required), format, skip_invalid, split; iteration defaults to 0."""
    from middo_core.data.importer import import_file
    from middo_core.data.report import DataImportError
    from middo_core.jobs import runfiles

    if not args.get("path"):
        raise ValueError("an import job needs a path")
    try:
        rep = import_file(ws, args["path"], format=args.get("format"),
                          skip_invalid=bool(args.get("skip_invalid", False)), progress=progress,
                          iteration=0 if iteration is None else iteration,
                          split=args.get("split", "train"))
    except DataImportError as exc:
        runfiles.write_json_atomic(runfiles.run_dir(ws, run_id) / runfiles.RESULT_FILE,
                                   exc.report.model_dump(mode="json"))
        raise
    return rep.model_dump(mode="json")

