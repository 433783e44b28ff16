"""Every Redis key and channel the gateway uses, in one place."""

from __future__ import annotations

ACTIVE_SET = "jobs:active"
# Every uploaded asset ("tenant/id") by expiry (ms): the sweeper deletes the files of expired ones.
EXPIRING_ASSETS = "assets:expiring"
# Dispatch: the tenants with queued jobs, by virtual time (weighted fair queuing), the virtual
# clock, and every running job's lease ("tenant|job" by expiry), which the reaper scans.
QUEUED_TENANTS = "queue:tenants"
# Tenants with jobs queued that a take found at their concurrency, by virtual time (lib/parking.lua).
PARKED_TENANTS = "queue:parked"
QUEUE_CLOCK = "queue:clock"
# Each tenant's virtual finish time when a take emptied its queue: a tenant that queues again
# starts there (or at the clock, if later), not at the clock ahead of the tenants still waiting.
QUEUE_FINISH = "queue:finish"
RUNNING = "running:all"
# Pub/sub: a cancelled job's id (its dispatcher stops it). Each job also has a notice channel
# (job_channel) that its events are announced on; a gateway subscribes to it while it has watchers
# of the job, so no gateway hears of the events nobody there watches.
CANCEL_CHANNEL = "jobs:cancel"
# Pub/sub: the id of an API key just revoked (every gateway drops it from its cache at once).
REVOKED_KEYS_CHANNEL = "apikeys:revoked"
# Pub/sub: work to take (a job queued or requeued, a slot freed while jobs are queued): idle
# dispatchers try to take one.
# It is sent only while some dispatcher waits for work: each take that finds nothing (or empties
# the queue with a slot of its dispatcher still free) puts its dispatcher in WAITING_DISPATCHERS
# (by time) and the next that finds a job takes it out, so a busy stack publishes nothing per submit.
WORK_CHANNEL = "jobs:work"
WAITING_DISPATCHERS = "dispatch:waiting"
# take.lua's keys, in its order.
TAKE_KEYS = [QUEUED_TENANTS, QUEUE_CLOCK, RUNNING, WAITING_DISPATCHERS, PARKED_TENANTS, QUEUE_FINISH]
# Webhooks: every pending delivery by when it is due (ms), claimed by moving it a lease ahead; and
# the channel the scripts that queue deliveries announce them on, so idle delivery workers look now.
WEBHOOKS_DUE = "webhooks:due"
WEBHOOKS_CHANNEL = "webhooks:notice"
# Ended jobs' storage folders (uploads/<job>/, work/<job>/) whose delete failed, for the reapers to
# delete later: a customer's photo is not left in storage because the storage failed once.
RELEASES_DUE = "storage:releases_due"

# Per-tenant keys that scripts find from a tenant or job id read inside them, as templates ("%s"
# is the id); every name below is what the functions return.
JOB_TEMPLATE = "job:%s"
QUEUE_TEMPLATE = "queue:%s"
TENANT_RUNNING_TEMPLATE = "tenant:%s:running"
TENANT_ACTIVE_TEMPLATE = "tenant:%s:active"
TENANT_LIMITS_TEMPLATE = "tenant:%s:limits"
CREDITS_BALANCE_TEMPLATE = "credits:%s:balance"
CREDITS_RESERVED_TEMPLATE = "credits:%s:reserved"
CREDITS_LOG_TEMPLATE = "credits:%s:log"
WEBHOOK_ENDPOINTS_TEMPLATE = "tenant:%s:webhooks"
WEBHOOK_SECRETS_TEMPLATE = "tenant:%s:webhook_secrets"
WEBHOOK_DELIVERY_TEMPLATE = "webhook:%s"
WEBHOOK_IN_FLIGHT_TEMPLATE = "tenant:%s:webhooks_in_flight"
JOB_WEBHOOKS_TEMPLATE = "job:%s:webhooks"
CHECKPOINTS_TEMPLATE = "job:%s:ckpt"
JOB_CANCELLING_TEMPLATE = "job:%s:cancelling"
JOB_CANCEL_ASKED_TEMPLATE = "job:%s:cancel-asked"


def job(job_id: str) -> str:
    """The hash holding a job's state, request, result and error."""
    return JOB_TEMPLATE % job_id


def events(job_id: str) -> str:
    """The stream of a job's progress events; stream ids are the resumable cursors."""
    return f"job:{job_id}:events"


def job_channel(job_id: str) -> str:
    """The pub/sub channel a job's new events are announced on."""
    return f"job:{job_id}:notice"


def job_of_events(key: str) -> str:
    """The job id of an events stream's key (the inverse of events())."""
    return key.removeprefix("job:").removesuffix(":events")


def job_cancelling(job_id: str) -> str:
    """Set for a while as a CancelJob cancels a batch's rooms before the batch, so that its run does
    not end it as rooms it did not cancel end (Jobs.cancelling)."""
    return JOB_CANCELLING_TEMPLATE % job_id


def job_cancel_asked(job_id: str) -> str:
    """Set (for a day) when a CancelJob of a batch began: once its hold (job_cancelling) has passed
    without the batch ending, the cancelling gateway died, and the batch's run finishes the cancel."""
    return JOB_CANCEL_ASKED_TEMPLATE % job_id


def checkpoints(job_id: str) -> str:
    """The hash of a job's stage outputs, so a new dispatcher resumes at the first unfinished stage
    (for a batch also its child jobs, as child:{room index})."""
    return CHECKPOINTS_TEMPLATE % job_id


def tenant_index(tenant: str) -> str:
    """The sorted set of a tenant's job ids by creation time (ms)."""
    return f"tenant:{tenant}:jobs"


def geometry(fingerprint: str) -> str:
    """Cached segmentation and geometry of a photo with its hints, shared by later jobs."""
    return f"geometry:{fingerprint}"


def idempotency(tenant: str, key: str) -> str:
    """Maps a client's idempotency key to its job id."""
    return f"idem:{tenant}:{key}"


def api_key(key_id: str) -> str:
    """The hash of one API key: its tenant, name, scopes, times and the SHA-256 of the key."""
    return f"apikey:{key_id}"


def tenant_api_keys(tenant: str) -> str:
    """The set of a tenant's API key ids."""
    return f"tenant:{tenant}:apikeys"


def queue(tenant: str) -> str:
    """The list of a tenant's queued job ids, oldest first (a requeued job goes to the front)."""
    return QUEUE_TEMPLATE % tenant


def tenant_running(tenant: str) -> str:
    """The sorted set of a tenant's running jobs (its concurrency slots) by lease expiry (ms)."""
    return TENANT_RUNNING_TEMPLATE % tenant


def tenant_active(tenant: str) -> str:
    """The set of a tenant's unfinished jobs (its queue quota counts them)."""
    return TENANT_ACTIVE_TEMPLATE % tenant


def tenant_limits(tenant: str) -> str:
    """The hash of a tenant's limits set by an admin (rate, burst, concurrency, queue_quota, weight)."""
    return TENANT_LIMITS_TEMPLATE % tenant


def tenant_rate(tenant: str) -> str:
    """A tenant's request-rate state: the GCRA's theoretical arrival time (ms)."""
    return f"tenant:{tenant}:rate"


def counted(tenant: str, op: str) -> str:
    """That operation `op` of a tenant was counted against its rate (for a minute): a retry of a
    precheck or an upload's admission whose reply was lost is not counted again."""
    return f"tenant:{tenant}:counted:{op}"


def take(op: str) -> str:
    """What one take of work handed out ("job|attempt"), so a retried take returns the same job."""
    return f"take:{op}"


def credits_balance(tenant: str) -> str:
    """A tenant's credit balance (an integer: what it may still spend)."""
    return CREDITS_BALANCE_TEMPLATE % tenant


def credits_reserved(tenant: str) -> str:
    """The credits a tenant's unfinished jobs hold reserved."""
    return CREDITS_RESERVED_TEMPLATE % tenant


def credits_log(tenant: str) -> str:
    """The append-only stream of a tenant's credit movements; their amounts sum to the balance."""
    return CREDITS_LOG_TEMPLATE % tenant


def grant(op: str) -> str:
    """What one credit grant wrote (its log entry), so a retried grant adds nothing again."""
    return f"grant:{op}"


def asset(tenant: str, asset_id: str) -> str:
    """The hash of one uploaded asset: its storage key, name, media type, size, digest and times."""
    return f"asset:{tenant}:{asset_id}"


def asset_sweep(tenant: str, asset_id: str) -> str:
    """A sweep's claim of an expired asset (its lease end, ms), while it deletes the file: an upload
    of the same bytes waits for it (scripts/sweep_asset.lua, asset.lua)."""
    return f"asset-sweep:{tenant}:{asset_id}"


def asset_jobs(tenant: str, asset_id: str) -> str:
    """The sorted set of the jobs that named an asset, by when each was submitted (ms): the sweep
    keeps the asset's file while one of them has not ended (scripts/use_assets.lua, sweep_asset.lua).
    It outlives the asset's hash, which the sweep finds gone."""
    return f"asset-jobs:{tenant}:{asset_id}"


def tenant_assets(tenant: str) -> str:
    """The sorted set of a tenant's assets by expiry (ms); its asset quota counts them."""
    return f"tenant:{tenant}:assets"


def webhook_endpoints(tenant: str) -> str:
    """The hash of a tenant's webhook endpoints: endpoint id -> its configuration (JSON: url,
    events, description, created_ms, disabled), which the transition script reads."""
    return WEBHOOK_ENDPOINTS_TEMPLATE % tenant


def webhook_secrets(tenant: str) -> str:
    """The hash of a tenant's webhook signing secrets: "tenant" (the webhooks set on requests) or
    "endpoint:{id}" -> JSON {current, previous, previous_until_ms}."""
    return WEBHOOK_SECRETS_TEMPLATE % tenant


def webhook_endpoint_key(tenant: str, key: str) -> str:
    """What a caller's idempotency key for a new webhook endpoint made: "endpoint id fingerprint"."""
    return f"webhook_key:{tenant}:{key}"


def webhook_in_flight(tenant: str) -> str:
    """A tenant's webhook attempts in flight: delivery id -> the end of its claim's lease (ms)."""
    return WEBHOOK_IN_FLIGHT_TEMPLATE % tenant


def webhook_delivery(delivery_id: str) -> str:
    """The hash of one webhook delivery: its target, event, status, claim and attempts."""
    return WEBHOOK_DELIVERY_TEMPLATE % delivery_id


def job_webhooks(job_id: str) -> str:
    """The list of a job's webhook delivery ids, oldest first (a batch's also holds its rooms')."""
    return JOB_WEBHOOKS_TEMPLATE % job_id


# Per-tenant keys, by the function that names them; a tenant name that turns one of them into a
# global key above ("queue:%s" and the queued tenants' "queue:tenants", say) is refused wherever a
# tenant is named (gateway.auth.principal.TENANT_NAME): a tenant called "tenants" would push its
# jobs into the dispatchers' sorted set, and every tenant's submit and every take would fail.
_PER_TENANT = (
    queue,
    tenant_running,
    tenant_active,
    tenant_limits,
    tenant_rate,
    tenant_index,
    tenant_api_keys,
    tenant_assets,
    credits_balance,
    credits_reserved,
    credits_log,
    webhook_endpoints,
    webhook_secrets,
    webhook_in_flight,
)
_GLOBAL = frozenset(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and "%s" not in v)


def _reserved_tenant_names() -> frozenset[str]:
    names = set()
    for name_key in _PER_TENANT:
        prefix, _, suffix = name_key("\0").partition("\0")
        for taken in _GLOBAL:
            if len(taken) > len(prefix) + len(suffix) and taken.startswith(prefix) and taken.endswith(suffix):
                names.add(taken[len(prefix) : len(taken) - len(suffix)])
    return frozenset(names)


RESERVED_TENANT_NAMES = _reserved_tenant_names()
