"""The admin API's grant when the ledger goes away mid-grant: a grant without an idempotency key may
have been applied, so its UNAVAILABLE does not invite a plain repeat (no RetryInfo, a message that
says so); a keyed grant's does, since a repeat with its key adds nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from gateway.admin import UNSURE_GRANT, AdminServicer
from gateway.ledger import LedgerUnavailable
from render.admin.v1 import admin_service_pb2 as pb


class LedgerGone:
    async def grant(self, *_: Any) -> None:
        raise LedgerUnavailable()


class Aborted(Exception):
    pass


class Context:
    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str, Any] | None = None

    async def abort(self, code: grpc.StatusCode, message: str, trailing_metadata: Any = ()) -> None:
        self.aborted = (code, message, trailing_metadata)
        raise Aborted()


def grant(idempotency_key: str) -> Context:
    servicer = AdminServicer(api_keys=None, ledger=LedgerGone())  # type: ignore[arg-type]
    context = Context()
    request = pb.GrantCreditsRequest(tenant="acme", amount=5, note="invoice 7", idempotency_key=idempotency_key)
    with pytest.raises((Aborted, LedgerUnavailable)):
        asyncio.run(servicer.GrantCredits(request, context))  # type: ignore[arg-type]
    return context


def test_a_keyless_grant_the_ledger_may_have_applied_is_not_called_retryable() -> None:
    context = grant("")
    assert context.aborted is not None
    code, message, trailer = context.aborted
    assert code == grpc.StatusCode.UNAVAILABLE and message == UNSURE_GRANT
    assert b"RetryInfo" not in b"".join(value for _, value in trailer)


def test_a_keyed_grant_leaves_the_ledgers_retryable_answer_to_the_edge() -> None:
    assert grant("pay-7").aborted is None  # LedgerUnavailable propagates: the edge answers "retry in a moment"
