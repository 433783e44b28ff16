"""Credits: reserved with the job at submit, settled once at its end (charged, the rest refunded),
every movement in an append-only log whose amounts sum to the balance. Real Redis, real gRPC."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import pytest
import redis
from google.rpc import error_details_pb2

from devstack import scenes
from gateway.auth.principal import Scope
from gateway.ledger import InsufficientCredits, Ledger, NewJob, TenantLimits, connect
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.admin.v1 import admin_service_pb2 as admin_pb
from render.admin.v1 import admin_service_pb2_grpc as admin_grpc
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import RenderClient, material_swap_request, room_render, room_render_request
from renderkit import imaging
from renderkit.errors import status_details, unpack_detail
from renderkit.storage.local import LocalStorage
from tests.conftest import gateway_settings
from tests.credentials import bearer, key_for

DB = "/1"
SCENE = scenes.room_scene(320, 240)
PHOTO = imaging.encode(SCENE.photo)[0]
SWATCH = imaging.encode(scenes.plank_texture(64))[0]
QUAD = [(float(x), float(y)) for x, y in SCENE.quad]
LEASE_S = 30.0


def run(body: Callable[[Ledger], Coroutine[Any, Any, None]], redis_url: str) -> None:
    async def main() -> None:
        client = connect(redis_url + DB)
        await client.flushdb()
        ledger = Ledger(client, tenant_defaults=TenantLimits(rate_per_s=0, concurrency=100, queue_quota=0))
        try:
            await body(ledger)
        finally:
            await ledger.aclose()
            await client.flushdb()
            await client.aclose()

    asyncio.run(main())


def priced(tenant: str, base: int, reserved: int) -> NewJob:
    return NewJob(
        job_id=uuid.uuid4().hex,
        tenant=tenant,
        kind="room_render",
        request=b"",
        inputs={},
        fingerprint="f",
        project_id="",
        user_id="",
        idempotency_key="",
        total_steps=3,
        credits_base=base,
        credits_reserved=reserved,
    )


async def audit(ledger: Ledger, tenant: str) -> list[tuple[str, int, str]]:
    """The log as (kind, amount, job); asserts it sums to the balance."""
    entries = await ledger.all_credit_entries(tenant)
    balance, _ = await ledger.balance(tenant)
    assert sum(e.amount for e in entries) == balance
    assert all(e.balance == sum(x.amount for x in entries[: i + 1]) for i, e in enumerate(entries))
    return [(e.kind, e.amount, e.job_id) for e in entries]


def test_every_end_settles_its_job_once(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        await ledger.grant("t", 100, "welcome")
        ok, failed, blamed, running, queued = (priced("t", 2, 12) for _ in range(5))
        for new in (ok, failed, blamed, running, queued):
            await ledger.submit(new)
        assert await ledger.balance("t") == (40, 60)
        taken = [await ledger.take("w", LEASE_S, frozenset()) for _ in range(4)]  # all but the last
        assert [t[0] for t in taken if t] == [ok.job_id, failed.job_id, blamed.job_id, running.job_id]
        await ledger.succeed(ok.job_id, "w", pb.JobResult(), 3, charge=5)  # base 2 + 3 spent at the provider
        await ledger.fail(failed.job_id, "w", pb.JobError(code=pb.ERROR_CODE_PIPELINE_ERROR, message="x"), 3, charge=0)
        await ledger.fail(blamed.job_id, "w", pb.JobError(code=pb.ERROR_CODE_CONTENT_POLICY, message="x"), 3, charge=2)
        await ledger.cancel(queued.job_id)  # before it started: everything back
        await ledger.cancel(running.job_id)  # after it started: the base stays
        # Ending again changes nothing: one charge, at most one refund per job.
        await ledger.cancel(ok.job_id)
        assert await ledger.balance("t") == (100 - 5 - 0 - 2 - 0 - 2, 0)
        log = await audit(ledger, "t")
        assert [k for k, _, _ in log].count("reserve") == 5
        refunds = {job: amount for kind, amount, job in log if kind == "refund"}
        assert refunds == {
            ok.job_id: 7,
            failed.job_id: 12,
            blamed.job_id: 10,
            queued.job_id: 12,
            running.job_id: 10,
        }
        charged = {new.job_id: (await ledger.get(new.job_id)).job.credits_charged for new in (ok, failed, blamed)}  # type: ignore[union-attr]
        assert charged == {ok.job_id: 5, failed.job_id: 0, blamed.job_id: 2}

    run(body, redis_url)


def test_a_submit_the_balance_cannot_cover_creates_nothing(redis_url: str) -> None:
    async def body(ledger: Ledger) -> None:
        await ledger.grant("poor", 10, "a little")
        new = priced("poor", 5, 11)
        with pytest.raises(InsufficientCredits) as info:
            await ledger.submit(new)
        assert (info.value.balance, info.value.price) == (10, 11)
        assert await ledger.get(new.job_id) is None and await ledger.balance("poor") == (10, 0)
        fits = priced("poor", 5, 10)
        await ledger.submit(fits)
        await ledger.submit(fits)  # a retried submit reserves nothing twice
        assert await ledger.balance("poor") == (0, 10)
        assert [k for k, _, _ in await audit(ledger, "poor")] == ["grant", "reserve"]

    run(body, redis_url)


@pytest.fixture(scope="module")
def billed(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """A gateway with credits on (the default prices), on its own ledger."""
    redis.Redis.from_url(redis_url + DB).flushdb()
    gateway = start_gateway(gateway_settings(redis_url + DB, tmp_path_factory.mktemp("billed"), stages))
    return f"127.0.0.1:{gateway.port}"


def test_jobs_are_paid_from_the_callers_tenant_only(
    billed: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = redis_url + DB
    payer = key_for(url, "payer", credits=200)
    broke = key_for(url, "broke", credits=0)
    written: list[str] = []
    put = LocalStorage.put

    def recording_put(self: LocalStorage, key: str, data: bytes, content_type: str) -> Any:
        written.append(key)
        return put(self, key, data, content_type)

    monkeypatch.setattr(LocalStorage, "put", recording_put)
    with grpc.insecure_channel(billed) as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitRender(material_swap_request(PHOTO, SWATCH, quad=QUAD), metadata=bearer(broke))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        assert written == []  # refused before its images were written to storage
        failure = unpack_detail(status_details(info.value.trailing_metadata()), error_details_pb2.PreconditionFailure)  # type: ignore[attr-defined, arg-type]
        assert isinstance(failure, error_details_pb2.PreconditionFailure)
        assert failure.violations[0].type == "CREDITS" and "balance 0" in failure.violations[0].description
        assert not stub.ListJobs(pb.ListJobsRequest(), metadata=bearer(broke)).jobs  # nothing was created
        before = stub.GetBalance(pb.GetBalanceRequest(), metadata=bearer(payer)).balance
    with RenderClient(billed, api_key=payer) as client:
        swap = client.wait(client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job.id, timeout=60)
        room = client.wait(client.submit(room_render_request(room_render("hall", dry_run=True))).job.id, timeout=60)
        refine = client.wait(client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD, refine=True)).job.id, 60)
    assert swap.state == room.state == pb.JOB_STATE_SUCCEEDED
    assert (swap.credits_reserved, swap.credits_charged) == (10, 10)
    assert (room.credits_reserved, room.credits_charged) == (2, 2)
    # No image provider here: the refinement fails, not by the caller's fault, and is refunded.
    assert refine.state == pb.JOB_STATE_FAILED and refine.error.code == pb.ERROR_CODE_PROVIDER_UNAVAILABLE
    assert (refine.credits_reserved, refine.credits_charged) == (110, 0)  # 10 + the provider budget
    with grpc.insecure_channel(billed) as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        after = stub.GetBalance(pb.GetBalanceRequest(), metadata=bearer(payer))
        entries = stub.ListCreditEntries(pb.ListCreditEntriesRequest(page_size=100), metadata=bearer(payer)).entries
        assert stub.GetBalance(pb.GetBalanceRequest(), metadata=bearer(broke)).balance == 0
    assert (after.balance, after.reserved) == (before - 12, 0)
    assert sum(e.amount for e in entries) == after.balance  # the whole log, newest first
    assert entries[-1].kind == pb.CREDIT_ENTRY_KIND_GRANT and entries[0].balance == after.balance


def test_an_admin_grants_credits(billed: str, redis_url: str) -> None:
    url = redis_url + DB
    operator = bearer(key_for(url, "operators"))
    with grpc.insecure_channel(billed) as channel:
        admin = admin_grpc.AdminServiceStub(channel)
        granted = admin.GrantCredits(
            admin_pb.GrantCreditsRequest(tenant="newcomer", amount=500, note="trial"), metadata=operator
        )
        assert granted.balance == 500
        tenant = admin.GetTenant(admin_pb.GetTenantRequest(tenant="newcomer"), metadata=operator).tenant
        assert (tenant.credit_balance, tenant.credits_reserved) == (500, 0)
        with pytest.raises(grpc.RpcError) as info:
            admin.GrantCredits(admin_pb.GrantCreditsRequest(tenant="newcomer", amount=0), metadata=operator)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        renderer = bearer(key_for(url, "newcomer", frozenset({Scope.RENDER}), credits=0))
        with pytest.raises(grpc.RpcError) as denied:
            admin.GrantCredits(admin_pb.GrantCreditsRequest(tenant="newcomer", amount=5), metadata=renderer)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]


def test_a_grant_sent_again_with_its_idempotency_key_adds_nothing_again(
    billed: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A payment provider repeats its notice, or an operator retries after a lost reply: one grant.
    from render_client.cli import main

    url = redis_url + DB
    operator_key = key_for(url, "operators")
    operator = bearer(operator_key)
    with grpc.insecure_channel(billed) as channel:
        admin = admin_grpc.AdminServiceStub(channel)

        def grant(tenant: str, amount: int, key: str, note: str = "invoice 17") -> Any:
            asked = admin_pb.GrantCreditsRequest(tenant=tenant, amount=amount, note=note, idempotency_key=key)
            return admin.GrantCredits(asked, metadata=operator)

        first = grant("payer-2", 300, "inv-17")
        assert (first.balance, first.deduplicated) == (300, False)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:  # repeats racing one another
            repeats = list(pool.map(lambda _: grant("payer-2", 300, "inv-17"), range(8)))
        assert {(r.entry_id, r.balance, r.deduplicated) for r in repeats} == {(first.entry_id, 300, True)}
        for changed in ((400, "invoice 17"), (300, "invoice 18")):
            with pytest.raises(grpc.RpcError) as conflict:
                grant("payer-2", changed[0], "inv-17", changed[1])
            assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS  # type: ignore[attr-defined]
            assert "idempotency_key" in str(conflict.value.details())  # type: ignore[attr-defined]
        assert grant("payer-3", 300, "inv-17").deduplicated is False  # another tenant's key is its own
        with pytest.raises(grpc.RpcError) as malformed:
            grant("payer-2", 300, "no spaces please")
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        start = ["--address", billed, "--api-key", operator_key, "credits", "grant", "--tenant", "payer-2"]
        for _ in range(2):
            assert main([*start, "--amount", "50", "--idempotency-key", "inv-18"]) == 0
        printed = capsys.readouterr().out.splitlines()
        assert printed[0].startswith("balance 350 (entry ") and printed[0].endswith(")")
        assert printed[1].startswith("balance 350 (entry ") and printed[1].endswith(
            "; a repeat of that grant, nothing added)"
        )
        tenant = admin.GetTenant(admin_pb.GetTenantRequest(tenant="payer-2"), metadata=operator).tenant
        assert tenant.credit_balance == 350
        log = pb_grpc.RenderServiceStub(channel).ListCreditEntries(
            pb.ListCreditEntriesRequest(page_size=100), metadata=bearer(key_for(url, "payer-2", credits=0))
        )
        assert [e.amount for e in log.entries] == [50, 300]


def test_the_least_cursor_ends_the_credit_log(billed: str, redis_url: str) -> None:
    """A page token of the least stream id ("0-0") has nothing before it: an empty last page,
    not the INTERNAL of the bound Redis refuses."""
    reader = bearer(key_for(redis_url + DB, "zero-cursor", credits=30))
    with grpc.insecure_channel(billed) as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        first = stub.ListCreditEntries(pb.ListCreditEntriesRequest(page_size=1), metadata=reader)
        assert len(first.entries) == 1
        for token in ("0-0", "00-0", "0-00"):
            page = stub.ListCreditEntries(pb.ListCreditEntriesRequest(page_token=token), metadata=reader)
            assert list(page.entries) == [] and page.next_page_token == ""
