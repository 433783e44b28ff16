"""Where a job's files live in storage, named once.

A submit's inline images stay in uploads/{job}/ and large checkpoints in work/{job}/ until the job
ends; its outputs are kept in renders/{tenant}/{project or "-"}/{job}/. An end notes the folders
it leaves to be deleted in the same ledger step (transition.lua), so that they are deleted even
when no dispatcher is left to do it (a cancelled queued job, or a dispatcher killed as its job
ended): a reaper deletes what is noted (Dispatcher._release_due).
"""

from __future__ import annotations

from collections.abc import Mapping


def uploads(job_id: str) -> str:
    """A job's inline images, from its submit until it ends."""
    return f"uploads/{job_id}/"


def has_uploads(job_id: str, inputs: Mapping[str, str]) -> bool:
    """Whether a job's inputs (field path -> storage key) name images its submit stored."""
    return any(key.startswith(uploads(job_id)) for key in inputs.values())


def work(job_id: str) -> str:
    """A job's checkpoints too large for the ledger, until it ends."""
    return f"work/{job_id}/"


def outputs(tenant: str, project_id: str, job_id: str) -> str:
    """A job's renditions, kept after it ends (a cancelled job keeps none)."""
    return f"renders/{tenant}/{project_id or '-'}/{job_id}/"
