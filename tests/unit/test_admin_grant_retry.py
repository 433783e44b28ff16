"""renderctl's credit grant: an UNAVAILABLE may follow a grant the ledger applied (Redis restarted
between the write and its reply), so the grant carries an idempotency key and is repeated with it."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from render.admin.v1 import admin_service_pb2 as pb
from render_client.admin_cli import grant_once


class Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the job ledger is unavailable; retry in a moment"


class LedgerLosingReplies:
    """Applies each grant once per idempotency key (as grant.lua does); the first `lost` replies
    are lost after the grant was applied."""

    def __init__(self, lost: int) -> None:
        self.lost = lost
        self.applied: dict[str, int] = {}
        self.keys: list[str] = []

    def GrantCredits(self, request: pb.GrantCreditsRequest, **_: Any) -> pb.GrantCreditsResponse:
        self.keys.append(request.idempotency_key)
        repeated = bool(request.idempotency_key) and request.idempotency_key in self.applied
        if not repeated:
            self.applied[request.idempotency_key or f"anonymous-{len(self.applied)}"] = request.amount
        if self.lost:
            self.lost -= 1
            raise Unavailable()
        return pb.GrantCreditsResponse(balance=sum(self.applied.values()), deduplicated=repeated)


def test_a_grant_whose_reply_was_lost_is_applied_once() -> None:
    ledger = LedgerLosingReplies(lost=2)
    granted = grant_once(ledger, "acme", 500, "invoice 42", "", (), sleep=lambda _s: None)  # type: ignore[arg-type]
    assert sum(ledger.applied.values()) == 500 and granted.balance == 500
    assert len(set(ledger.keys)) == 1 and ledger.keys[0]  # one key, made up for the grant, on every try


def test_the_callers_key_is_kept_and_other_errors_are_not_repeated() -> None:
    ledger = LedgerLosingReplies(lost=0)
    grant_once(ledger, "acme", 5, "", "pay-1", ())  # type: ignore[arg-type]
    assert ledger.keys == ["pay-1"]

    class Refusing:
        calls = 0

        def GrantCredits(self, request: pb.GrantCreditsRequest, **_: Any) -> pb.GrantCreditsResponse:
            self.calls += 1
            error = Unavailable()
            error.code = lambda: grpc.StatusCode.PERMISSION_DENIED  # type: ignore[method-assign]
            raise error

    refusing = Refusing()
    with pytest.raises(grpc.RpcError):
        grant_once(refusing, "acme", 5, "", "", (), sleep=lambda _s: None)  # type: ignore[arg-type]
    assert refusing.calls == 1


def test_a_ledger_away_for_good_ends_with_the_key_to_repeat_by(capsys: pytest.CaptureFixture[str]) -> None:
    ledger = LedgerLosingReplies(lost=10**6)
    with pytest.raises(grpc.RpcError):
        grant_once(ledger, "acme", 5, "", "", (), retry_s=1.0, sleep=lambda _s: None)  # type: ignore[arg-type]
    assert f"--idempotency-key {ledger.keys[0]}" in capsys.readouterr().err
    assert sum(ledger.applied.values()) == 5


class Deadline(Unavailable):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_grant_past_its_deadline_is_repeated_with_its_key(capsys: pytest.CaptureFixture[str]) -> None:
    """A deadline that passed while the gateway waited on the ledger leaves the grant as unsure as
    an UNAVAILABLE: it raised at once, and the key made up for it was never shown."""

    class Slow(LedgerLosingReplies):
        def GrantCredits(self, request: pb.GrantCreditsRequest, **kwargs: Any) -> pb.GrantCreditsResponse:
            try:
                return super().GrantCredits(request, **kwargs)
            except Unavailable:
                raise Deadline() from None

    ledger = Slow(lost=1)
    granted = grant_once(ledger, "acme", 500, "", "", (), sleep=lambda _s: None)  # type: ignore[arg-type]
    assert granted.balance == 500 and len(ledger.keys) == 2 and len(set(ledger.keys)) == 1

    away = Slow(lost=10**6)
    with pytest.raises(grpc.RpcError):
        grant_once(away, "acme", 5, "", "", (), retry_s=1.0, sleep=lambda _s: None)  # type: ignore[arg-type]
    assert f"--idempotency-key {away.keys[0]}" in capsys.readouterr().err
