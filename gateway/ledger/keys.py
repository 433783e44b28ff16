"""Every Redis key and channel the gateway uses, in one place."""

from __future__ import annotations

WORK_STREAM = "jobs:work"
WORK_GROUP = "dispatchers"
ACTIVE_SET = "jobs:active"
# Pub/sub: a cancelled job's id (its dispatcher stops it); the id of every job that got an event
# (each gateway's one reader then reads that job's stream for its watchers).
CANCEL_CHANNEL = "jobs:cancel"
EVENTS_CHANNEL = "jobs:events"


def job(job_id: str) -> str:
    """The hash holding a job's state, request, result and error."""
    return f"job:{job_id}"


def events(job_id: str) -> str:
    """The stream of a job's progress events; stream ids are the resumable cursors."""
    return f"job:{job_id}:events"


def job_of_events(key: str) -> str:
    """The job id of an events stream's key (the inverse of events())."""
    return key.removeprefix("job:").removesuffix(":events")


def checkpoints(job_id: str) -> str:
    """The hash of a job's stage outputs, so a new dispatcher resumes at the first unfinished stage
    (for a batch also its child jobs, as child:{room index})."""
    return f"job:{job_id}:ckpt"


def tenant_index(tenant: str) -> str:
    """The sorted set of a tenant's job ids by creation time (ms)."""
    return f"tenant:{tenant}:jobs"


def geometry(fingerprint: str) -> str:
    """Cached segmentation and geometry of a photo with its hints, shared by later jobs."""
    return f"geometry:{fingerprint}"


def idempotency(tenant: str, key: str) -> str:
    """Maps a client's idempotency key to its job id."""
    return f"idem:{tenant}:{key}"
