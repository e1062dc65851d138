"""Background jobs: each in its own process, progress in its run folder, cancellable.

    run_id = start_job(ws, "train", 0, {})
    job_status(ws, run_id)   # record + progress + last log lines + alive
    cancel_job(ws, run_id)
"""

from middo_core.jobs.kinds import KINDS, UnknownJobKind, get_job_kind, job_kinds
from middo_core.jobs.manager import (
           JobError,
           active_jobs,
           cancel_job,
           job_status,
           list_jobs,
           start_job,
)

__all__ = ["KINDS", "JobError", "active_jobs", "UnknownJobKind", "cancel_job", "get_job_kind", "job_kinds",
           "job_status", "list_jobs", "start_job"]
