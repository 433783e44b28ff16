"""render.admin.v1.AdminService: every tenant's API keys, limits and credits (the authentication
interceptor admits only credentials with the admin scope)."""

from __future__ import annotations

import hashlib
import logging
import re

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.auth.api_keys import ApiKeyRecord, KeyStore
from gateway.auth.principal import TENANT_NAME, TENANT_NAME_RULE, Scope, current_principal
from gateway.ledger import Ledger, LedgerUnavailable, TenantLimits
from gateway.validation import IDENTIFIER, IDENTIFIER_RULE
from render.admin.v1 import admin_service_pb2 as pb
from render.admin.v1 import admin_service_pb2_grpc as pb_grpc
from renderkit.errors import abort, bad_request

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AdminService"].full_name
_KEY_ID = re.compile(r"^[a-z0-9]{12}\Z")
_SCOPES = {pb.SCOPE_RENDER: Scope.RENDER, pb.SCOPE_READ: Scope.READ, pb.SCOPE_ADMIN: Scope.ADMIN}
_PROTO_SCOPES = {scope: value for value, scope in _SCOPES.items()}
MAX_KEY_TTL_S = 10 * 365 * 24 * 3600
MAX_GRANT = 1_000_000_000
# A grant without an idempotency key that the ledger may have applied before it went away.
UNSURE_GRANT = (
    "the job ledger went away during the grant, which may have been applied: read the credit log"
    " before repeating it, or repeat it with an idempotency_key"
)
# The admin API's names of the limits, and the ledger's.
_LIMIT_FIELDS = {
    "rate_per_second": "rate_per_s",
    "burst": "burst",
    "concurrency": "concurrency",
    "queue_quota": "queue_quota",
    "weight": "weight",
}


def _time(ms: int) -> Timestamp | None:
    if not ms:
        return None
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


def api_key_message(record: ApiKeyRecord) -> pb.ApiKey:
    """A key's record as the admin API describes it."""
    return pb.ApiKey(
        key_id=record.key_id,
        tenant=record.tenant,
        name=record.name,
        scopes=sorted(_PROTO_SCOPES[s] for s in record.scopes),
        create_time=_time(record.created_ms),
        expire_time=_time(record.expires_ms),
        revoke_time=_time(record.revoked_ms),
        last_use_time=_time(record.last_used_ms),
    )


def limits_message(limits: TenantLimits) -> pb.TenantLimits:
    """A tenant's limits as the admin API shows them."""
    return pb.TenantLimits(**{api: getattr(limits, ours) for api, ours in _LIMIT_FIELDS.items()})


class AdminServicer(pb_grpc.AdminServiceServicer):
    """Keys and limits, for operators."""

    def __init__(self, api_keys: KeyStore, ledger: Ledger) -> None:
        self.api_keys = api_keys
        self.ledger = ledger

    async def _tenant_message(self, tenant: str) -> pb.Tenant:
        limits, overridden = await self.ledger.tenant_limits(tenant)
        usage = await self.ledger.tenant_usage(tenant)
        balance, reserved = await self.ledger.balance(tenant)
        ours = {v: k for k, v in _LIMIT_FIELDS.items()}
        return pb.Tenant(
            tenant=tenant,
            limits=limits_message(limits),
            overridden=sorted(ours[name] for name in overridden),
            unfinished_jobs=usage.unfinished,
            running_jobs=usage.running,
            credit_balance=balance,
            credits_reserved=reserved,
        )

    async def GrantCredits(
        self,
        request: pb.GrantCreditsRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.GrantCreditsResponse:
        tenant = await self._tenant(request.tenant, context)
        violations = []
        if not 1 <= request.amount <= MAX_GRANT:
            violations.append(("amount", f"must be between 1 and {MAX_GRANT:,}"))
        if len(request.note) > 200:
            violations.append(("note", "at most 200 characters"))
        if request.idempotency_key and not IDENTIFIER.match(request.idempotency_key):
            violations.append(("idempotency_key", IDENTIFIER_RULE))
        if violations:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid request: {violations[0][0]}: {violations[0][1]}",
                bad_request(violations),
            )
        note = request.note or f"granted by {current_principal().subject}"
        # What a repeat must match: the caller's amount and note (not the note made up for it).
        fingerprint = f"{request.amount}:{hashlib.sha256(request.note.encode()).hexdigest()[:32]}"
        try:
            grant = await self.ledger.grant(tenant, request.amount, note, request.idempotency_key, fingerprint)
        except LedgerUnavailable:
            if request.idempotency_key:
                raise  # a repeat with the key adds nothing: "retry in a moment" holds
            # Redis may have applied the script and gone before its reply: a plain repeat could
            # grant twice, so this answer does not invite one (no RetryInfo).
            log.warning("a grant to tenant %s may or may not have been applied: the ledger went away", tenant)
            await abort(context, grpc.StatusCode.UNAVAILABLE, UNSURE_GRANT)
        if grant.conflict:
            await abort(
                context,
                grpc.StatusCode.ALREADY_EXISTS,
                "idempotency_key was already used for a different grant",
                bad_request([("idempotency_key", "was used for a different grant")]),
            )
        if not grant.repeated:
            log.info("%d credits granted to tenant %s by %s", request.amount, tenant, current_principal().subject)
        return pb.GrantCreditsResponse(
            balance=grant.balance, entry_id=grant.entry.entry_id, deduplicated=grant.repeated
        )

    async def GetTenant(
        self,
        request: pb.GetTenantRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.GetTenantResponse:
        return pb.GetTenantResponse(tenant=await self._tenant_message(await self._tenant(request.tenant, context)))

    async def UpdateTenantLimits(
        self,
        request: pb.UpdateTenantLimitsRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.UpdateTenantLimitsResponse:
        tenant = await self._tenant(request.tenant, context)
        violations = [(f"reset[{i}]", "is not a limit") for i, n in enumerate(request.reset) if n not in _LIMIT_FIELDS]
        changes: dict[str, float | int | None] = {_LIMIT_FIELDS[n]: None for n in request.reset if n in _LIMIT_FIELDS}
        for api, ours in _LIMIT_FIELDS.items():
            if request.limits.HasField(api):  # type: ignore[arg-type]
                changes[ours] = getattr(request.limits, api)
        current, _ = await self.ledger.tenant_limits(tenant)
        candidate = TenantLimits(**{**vars(current), **{k: v for k, v in changes.items() if v is not None}})
        api_names = {v: k for k, v in _LIMIT_FIELDS.items()}
        # Only the values set are checked: a limit reset goes back to the default, whatever was stored
        # (an older gateway stored values that today's ranges refuse, and those must be resettable).
        violations += [
            (f"limits.{api_names[name]}", text) for name, text in candidate.problems() if changes.get(name) is not None
        ]
        if violations:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid request: {violations[0][0]}: {violations[0][1]}",
                bad_request(violations),
            )
        await self.ledger.set_tenant_limits(tenant, changes)
        log.info("tenant %s limits changed by %s: %s", tenant, current_principal().subject, changes)
        return pb.UpdateTenantLimitsResponse(tenant=await self._tenant_message(tenant))

    async def _tenant(self, tenant: str, context: grpc.aio.ServicerContext) -> str:  # type: ignore[type-arg]
        if not TENANT_NAME.match(tenant):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "tenant is not a tenant name",
                bad_request([("tenant", TENANT_NAME_RULE)]),
            )
        return tenant

    async def CreateApiKey(
        self,
        request: pb.CreateApiKeyRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.CreateApiKeyResponse:
        tenant = await self._tenant(request.tenant, context)
        violations = []
        if not request.name or len(request.name) > 200:
            violations.append(("name", "give 1 to 200 characters saying what the key is for"))
        if not request.scopes or any(s not in _SCOPES for s in request.scopes):
            violations.append(("scopes", "give one or more of SCOPE_RENDER, SCOPE_READ, SCOPE_ADMIN"))
        ttl_s = None
        if request.HasField("ttl"):  # read whole, not through timedelta (which overflows)
            ttl = request.ttl
            ttl_s = ttl.seconds + ttl.nanos / 1e9
            if not (0 <= ttl.nanos < 1_000_000_000 and 1 <= ttl_s <= MAX_KEY_TTL_S):
                violations.append(("ttl", "must be at least a second and at most ten years"))
        if violations:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid request: {violations[0][0]}: {violations[0][1]}",
                bad_request(violations),
            )
        token, record = await self.api_keys.create(
            tenant, request.name, {_SCOPES[s] for s in request.scopes}, ttl_s=ttl_s
        )
        log.info("API key %s minted for tenant %s by %s", record.key_id, tenant, current_principal().subject)
        return pb.CreateApiKeyResponse(key=api_key_message(record), secret=token)

    async def ListApiKeys(
        self,
        request: pb.ListApiKeysRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.ListApiKeysResponse:
        tenant = await self._tenant(request.tenant, context)
        return pb.ListApiKeysResponse(keys=[api_key_message(r) for r in await self.api_keys.list(tenant)])

    async def RevokeApiKey(
        self,
        request: pb.RevokeApiKeyRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.RevokeApiKeyResponse:
        if not _KEY_ID.match(request.key_id):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "key_id is not a key id",
                bad_request([("key_id", "the 12 characters after rk_ in the key")]),
            )
        record = await self.api_keys.revoke(request.key_id)
        if record is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"no API key {request.key_id}")
        assert record is not None
        log.info("API key %s revoked by %s", record.key_id, current_principal().subject)
        return pb.RevokeApiKeyResponse(key=api_key_message(record))
