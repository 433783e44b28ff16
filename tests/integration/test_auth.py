"""Who may call: API keys (minted, scoped, expiring, revoked on every replica within seconds), JWTs of
a configured issuer, and tenants that cannot reach each other's jobs. Real Redis, real gRPC."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import grpc
import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf.duration_pb2 import Duration

from devstack import scenes
from gateway.auth.jwt_tokens import JwtSettings
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.admin.v1 import admin_service_pb2 as admin_pb
from render.admin.v1 import admin_service_pb2_grpc as admin_grpc
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import RenderClient, material_swap_request, room_render, room_render_request
from renderkit import imaging
from tests.conftest import gateway_settings
from tests.credentials import bearer, key_for

DB = "/14"
ISSUER = "https://login.example.com/"
AUDIENCE = "render-pipeline"
SCENE = scenes.room_scene(320, 240)
PHOTO = imaging.encode(SCENE.photo)[0]
SWATCH = imaging.encode(scenes.plank_texture(64))[0]
QUAD = [(float(x), float(y)) for x, y in SCENE.quad]
ROOM = room_render_request(room_render("hall", dry_run=True))


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def replicas(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path_factory: pytest.TempPathFactory,
    signing_key: rsa.RSAPrivateKey,
) -> tuple[Gateway, Gateway]:
    """Two replicas on one ledger that accept API keys and the issuer's JWTs (JWKS from a file)."""
    redis.Redis.from_url(redis_url + DB).flushdb()
    folder = tmp_path_factory.mktemp("auth")
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    (folder / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}))
    trusted = JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks=str(folder / "jwks.json"))
    settings = replace(gateway_settings(redis_url + DB, folder / "storage", stages), jwt=trusted)
    return start_gateway(settings), start_gateway(settings)


def address(gateway: Gateway) -> str:
    return f"127.0.0.1:{gateway.port}"


@pytest.fixture()
def channel(replicas: tuple[Gateway, Gateway]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(address(replicas[0])) as c:
        yield c


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def first_reply(call: Any) -> Any:
    """A stream's first message; the rest of the stream is cancelled."""
    try:
        return next(iter(call))
    finally:
        call.cancel()


def every_call(stub: pb_grpc.RenderServiceStub, metadata: Any, job_id: str = "job-1") -> dict[str, grpc.StatusCode]:
    """The status of each public RPC made with the metadata."""
    calls: dict[str, Callable[[], Any]] = {
        "SubmitRender": lambda: stub.SubmitRender(
            room_render_request(room_render("hall", dry_run=True)), metadata=metadata
        ),
        "SubmitAndWatch": lambda: first_reply(
            stub.SubmitAndWatch(pb.SubmitAndWatchRequest(request=ROOM), metadata=metadata, timeout=5)
        ),
        "GetJob": lambda: stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=metadata),
        "WatchJob": lambda: list(stub.WatchJob(pb.WatchJobRequest(job_id=job_id), metadata=metadata, timeout=5)),
        "CancelJob": lambda: stub.CancelJob(pb.CancelJobRequest(job_id=job_id), metadata=metadata),
        "ListJobs": lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=metadata),
    }
    return {name: code_of(call) for name, call in calls.items()}


def token(signing_key: rsa.RSAPrivateKey, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-7", "tenant": "jwt-tenant", "iat": now, "exp": now + 300}
    body.update(claims)
    return jwt.encode(body, signing_key, algorithm="RS256", headers={"kid": "k1"})


def test_a_caller_without_a_valid_credential_can_do_nothing(
    channel: grpc.Channel, redis_url: str, signing_key: rsa.RSAPrivateKey
) -> None:
    stub = pb_grpc.RenderServiceStub(channel)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    refused = {
        "no credential": (),
        "not a bearer": (("authorization", "Basic dXNlcjpwYXNz"),),
        "malformed key": bearer("rk_short_key"),
        "made-up key": bearer("rk_aaaaaaaaaaaa_" + "A" * 43),
        "another issuer": bearer(token(signing_key, iss="https://evil.example.com/")),
        "another audience": bearer(token(signing_key, aud="someone-else")),
        "expired token": bearer(token(signing_key, iat=now - 900, exp=now - 600)),
        "another signer": bearer(token(stranger)),
        "no tenant claim": bearer(token(signing_key, tenant=None)),
        # A public key used as an HMAC secret (the classic algorithm-confusion attack).
        "HS256": bearer(
            jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "tenant": "x", "exp": now + 60}, "s" * 32, "HS256")
        ),
    }
    for name, metadata in refused.items():
        codes = every_call(stub, metadata)
        assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}, (name, codes)


def test_a_key_just_accepted_does_not_vouch_for_another_secret_with_its_id(
    channel: grpc.Channel, redis_url: str
) -> None:
    # The gateway remembers the keys it verified for a few seconds; what it remembers is the whole
    # key, so the same id with another secret is checked (and refused) in full.
    secret = key_for(redis_url + DB, "verified")
    stub = pb_grpc.RenderServiceStub(channel)
    assert code_of(lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=bearer(secret))) == grpc.StatusCode.OK
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert code_of(lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=bearer(forged))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert code_of(lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=bearer(secret))) == grpc.StatusCode.OK


def test_a_tenant_cannot_reach_another_tenants_jobs(
    replicas: tuple[Gateway, Gateway], redis_url: str, channel: grpc.Channel
) -> None:
    owner = key_for(redis_url + DB, "tenant-a")
    with RenderClient(address(replicas[0]), api_key=owner) as client:
        job = client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD, project_id="p")).job
    stub = pb_grpc.RenderServiceStub(channel)
    other = bearer(key_for(redis_url + DB, "tenant-b"))
    codes = every_call(stub, other, job.id)
    assert codes["SubmitRender"] == codes["SubmitAndWatch"] == codes["ListJobs"] == grpc.StatusCode.OK
    assert {codes[m] for m in ("GetJob", "WatchJob", "CancelJob")} == {grpc.StatusCode.NOT_FOUND}
    listed = stub.ListJobs(pb.ListJobsRequest(), metadata=other).jobs
    assert job.id not in [j.id for j in listed]
    # The tenant is the credential's: a header naming another tenant changes nothing.
    spoofed = (*other, ("x-tenant-id", "tenant-a"))
    assert code_of(lambda: stub.GetJob(pb.GetJobRequest(job_id=job.id), metadata=spoofed)) == grpc.StatusCode.NOT_FOUND
    # The owner still sees it, whatever another tenant tried.
    assert stub.GetJob(pb.GetJobRequest(job_id=job.id), metadata=bearer(owner)).job.id == job.id


def test_scopes_limit_what_a_key_may_do(redis_url: str, channel: grpc.Channel) -> None:
    from gateway.auth.principal import Scope

    stub = pb_grpc.RenderServiceStub(channel)
    reader = bearer(key_for(redis_url + DB, "scoped", frozenset({Scope.READ})))
    codes = every_call(stub, reader)
    assert codes["SubmitRender"] == codes["SubmitAndWatch"] == codes["CancelJob"] == grpc.StatusCode.PERMISSION_DENIED
    assert codes["ListJobs"] == grpc.StatusCode.OK and codes["GetJob"] == grpc.StatusCode.NOT_FOUND
    renderer = bearer(key_for(redis_url + DB, "scoped", frozenset({Scope.RENDER, Scope.READ})))
    admin = admin_grpc.AdminServiceStub(channel)
    denied = code_of(lambda: admin.ListApiKeys(admin_pb.ListApiKeysRequest(tenant="scoped"), metadata=renderer))
    assert denied == grpc.StatusCode.PERMISSION_DENIED


def test_a_jwt_of_the_issuer_authenticates_its_tenant(
    channel: grpc.Channel, signing_key: rsa.RSAPrivateKey, redis_url: str
) -> None:
    key_for(redis_url + DB, "jwt-tenant")  # the tenant gets credits to spend
    stub = pb_grpc.RenderServiceStub(channel)
    user = bearer(token(signing_key))
    job = stub.SubmitRender(room_render_request(room_render("hall", dry_run=True)), metadata=user).job
    assert stub.ListJobs(pb.ListJobsRequest(), metadata=user).jobs[0].id == job.id
    read_only = bearer(token(signing_key, scope="read"))
    assert code_of(lambda: stub.CancelJob(pb.CancelJobRequest(job_id=job.id), metadata=read_only)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    admin = admin_grpc.AdminServiceStub(channel)  # a frontend user is never an admin by default
    assert code_of(lambda: admin.ListApiKeys(admin_pb.ListApiKeysRequest(tenant="x"), metadata=user)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )


def test_keys_are_minted_listed_and_revoked_on_every_replica_within_seconds(
    replicas: tuple[Gateway, Gateway], redis_url: str
) -> None:
    operator = bearer(key_for(redis_url + DB, "operators"))
    with grpc.insecure_channel(address(replicas[0])) as first, grpc.insecure_channel(address(replicas[1])) as second:
        admin = admin_grpc.AdminServiceStub(first)
        created = admin.CreateApiKey(
            admin_pb.CreateApiKeyRequest(
                tenant="acme", name="backend", scopes=[admin_pb.SCOPE_RENDER, admin_pb.SCOPE_READ]
            ),
            metadata=operator,
        )
        assert created.secret.startswith(f"rk_{created.key.key_id}_")
        listed = admin.ListApiKeys(admin_pb.ListApiKeysRequest(tenant="acme"), metadata=operator).keys
        assert [k.key_id for k in listed] == [created.key.key_id] and not listed[0].HasField("revoke_time")
        stored: Any = redis.Redis.from_url(redis_url + DB).hgetall(f"apikey:{created.key.key_id}")
        assert created.secret.encode() not in b"".join(stored.values())  # only its digest is kept
        on_second = pb_grpc.RenderServiceStub(second)
        key = bearer(created.secret)
        assert code_of(lambda: on_second.ListJobs(pb.ListJobsRequest(), metadata=key)) == grpc.StatusCode.OK
        admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(key_id=created.key.key_id), metadata=operator)
        revoked_at = time.monotonic()
        while code_of(lambda: on_second.ListJobs(pb.ListJobsRequest(), metadata=key)) == grpc.StatusCode.OK:
            assert time.monotonic() - revoked_at < 5.0, "the revocation did not reach the second replica"
            time.sleep(0.05)
        assert (
            code_of(lambda: on_second.ListJobs(pb.ListJobsRequest(), metadata=key)) == grpc.StatusCode.UNAUTHENTICATED
        )


def test_an_expired_key_stops_working(replicas: tuple[Gateway, Gateway], redis_url: str, channel: grpc.Channel) -> None:
    operator = bearer(key_for(redis_url + DB, "operators"))
    admin = admin_grpc.AdminServiceStub(channel)
    ttl = Duration(seconds=1)
    created = admin.CreateApiKey(
        admin_pb.CreateApiKeyRequest(tenant="brief", name="one second", scopes=[admin_pb.SCOPE_READ], ttl=ttl),
        metadata=operator,
    )
    stub = pb_grpc.RenderServiceStub(channel)
    assert code_of(lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=bearer(created.secret))) == grpc.StatusCode.OK
    time.sleep(1.2)
    assert code_of(lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=bearer(created.secret))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )


def test_health_and_reflection_need_no_credential(channel: grpc.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    "ttl",
    [
        Duration(seconds=2**62),  # overflowed timedelta: INTERNAL
        Duration(nanos=400_000),  # rounded to 0 ms: a key expired as it was made
        Duration(seconds=1, nanos=-999_999_999),  # a Duration its spec forbids
    ],
)
def test_a_key_lifetime_that_is_no_lifetime_is_refused_naming_it(
    replicas: tuple[Gateway, Gateway], redis_url: str, ttl: Duration
) -> None:
    operator = bearer(key_for(redis_url + DB, "operators"))
    with grpc.insecure_channel(address(replicas[0])) as channel:
        request = admin_pb.CreateApiKeyRequest(tenant="acme", name="short", scopes=[admin_pb.SCOPE_READ], ttl=ttl)
        with pytest.raises(grpc.RpcError) as refused:
            admin_grpc.AdminServiceStub(channel).CreateApiKey(request, metadata=operator)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "ttl" in (refused.value.details() or "")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "argv",
    [
        ["--tenant", "a|b", "--name", "x"],  # a lease member's separator: a key the admin API cannot manage
        ["--tenant", "ok", "--name", ""],
        ["--tenant", "ok", "--name", "x", "--ttl-days", "0"],
        ["--tenant", "ok", "--name", "x", "--ttl-days", "nan"],
        ["--tenant", "ok", "--name", "x", "--credits", str(2**63)],
        # A misspelt scope was dropped: "admn,render,read" minted a key without admin, exit 0.
        ["--tenant", "ok", "--name", "x", "--scopes", "admn,render,read"],
        ["--tenant", "ok", "--name", "x", "--scopes", "render,bogus"],
    ],
)
def test_the_bootstrap_refuses_what_the_admin_api_refuses(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It minted working admin keys for tenants the API then refused to manage, keys already
    expired or never expiring, and granted past the API's cap (a review found it)."""
    from gateway import bootstrap

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")  # nothing is written: it is refused first
    with pytest.raises(SystemExit) as stopped:
        bootstrap.main(argv)
    assert stopped.value.code == 2 and "error:" in capsys.readouterr().err


@pytest.fixture(scope="module")
def queueing_replicas(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path_factory: pytest.TempPathFactory,
    signing_key: rsa.RSAPrivateKey,
) -> tuple[Gateway, Gateway]:
    """Two replicas that only queue (a job waits there until cancelled, its watch open) and send a
    keep-alive every 0.2 s; the issuer's JWTs accepted with no leeway."""
    redis.Redis.from_url(redis_url + "/40").flushdb()
    folder = tmp_path_factory.mktemp("auth-watch")
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    (folder / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}))
    trusted = JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks=str(folder / "jwks.json"), leeway_s=0)
    settings = replace(
        gateway_settings(redis_url + "/40", folder / "storage", stages),
        jwt=trusted,
        dispatch=False,
        watch_keepalive_s=0.2,
    )
    return start_gateway(settings), start_gateway(settings)


def test_an_open_watch_ends_when_its_key_is_revoked_or_its_token_expires(
    queueing_replicas: tuple[Gateway, Gateway], redis_url: str, signing_key: rsa.RSAPrivateKey
) -> None:
    """A watch lasts as long as its job: one opened with a key revoked since (on another replica)
    or a token that has expired since went on receiving the job's events, outputs' links included,
    until the job ended."""
    operator = bearer(key_for(redis_url + "/40", "operators"))
    key_for(redis_url + "/40", "acme")  # credits for its jobs
    first, second = (grpc.insecure_channel(address(g)) for g in queueing_replicas)
    try:
        admin = admin_grpc.AdminServiceStub(first)
        created = admin.CreateApiKey(
            admin_pb.CreateApiKeyRequest(tenant="acme", name="w", scopes=[admin_pb.SCOPE_RENDER, admin_pb.SCOPE_READ]),
            metadata=operator,
        )
        watcher = pb_grpc.RenderServiceStub(second)
        stream = watcher.SubmitAndWatch(
            pb.SubmitAndWatchRequest(request=ROOM), metadata=bearer(created.secret), timeout=30
        )
        assert next(stream).event.state == pb.JOB_STATE_QUEUED
        admin.RevokeApiKey(admin_pb.RevokeApiKeyRequest(key_id=created.key.key_id), metadata=operator)
        revoked_at = time.monotonic()
        with pytest.raises(grpc.RpcError) as ended:
            for _ in stream:
                pass
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert time.monotonic() - revoked_at < 5.0
        # A token: its watch ends at its expiry.
        short = token(signing_key, tenant="acme", exp=int(time.time()) + 2)
        stream = watcher.SubmitAndWatch(pb.SubmitAndWatchRequest(request=ROOM), metadata=bearer(short), timeout=30)
        assert next(stream).event.state == pb.JOB_STATE_QUEUED
        with pytest.raises(grpc.RpcError) as ended:
            for _ in stream:
                pass
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    finally:
        first.close()
        second.close()
