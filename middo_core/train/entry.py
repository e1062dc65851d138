"""Training entry point, one process per GPU: `python -m middo_core.train.entry --workspace DIR
--iteration N` (launched by torchrun/accelerate, see middo_core.train.launch)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m middo_core.train.entry")
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--iteration", required=True, type=int)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--overrides", default="{}", help="JSON object of TrainPlan fields")
    parser.add_argument("--deepspeed", default=None, help="DeepSpeed config file")
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--run-id", default=None, help="report progress to this background run")
    parser.add_argument("--progress-file", type=Path, default=None)
    parser.add_argument("--result-file", type=Path, default=None)
    opts = parser.parse_args(argv)

    from middo_core.jobs.runfiles import ProgressWriter, write_json_atomic
    from middo_core.train.trainer import train
    from middo_core.workspace import open_workspace

    ws = open_workspace(opts.workspace)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    progress = None
    if rank0 and opts.run_id:
        progress = ProgressWriter.for_run(ws, opts.run_id)
    elif rank0 and opts.progress_file:
        progress = ProgressWriter(opts.progress_file)
    result = train(ws, opts.iteration, progress=progress, resume=not opts.no_resume,
                   overrides=json.loads(opts.overrides), preset=opts.preset, deepspeed=opts.deepspeed)
    if rank0 and opts.result_file:
        write_json_atomic(opts.result_file, result.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
