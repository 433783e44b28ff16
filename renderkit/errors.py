"""Typed errors at the gRPC edges: rich google.rpc statuses built and read in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "render.pipeline"
_DETAILS_KEY = "grpc-status-details-bin"


def rich_status(code: grpc.StatusCode, message: str, *details: object) -> status_pb2.Status:
    """A google.rpc.Status with packed details."""
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)  # type: ignore[arg-type]
        status.details.append(packed)
    return status


async def abort(
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    message: str,  # type: ignore[type-arg]
    *details: object,
) -> NoReturn:
    """Ends an RPC with a status whose details travel in the standard trailer."""
    status = rich_status(code, message, *details)
    await context.abort(code, message, trailing_metadata=((_DETAILS_KEY, status.SerializeToString()),))
    raise AssertionError("unreachable")


def error_info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    """An ErrorInfo in the pipeline's domain; reason is a job ErrorCode name such as TIMEOUT."""
    return error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)


def bad_request(violations: Sequence[tuple[str, str]]) -> error_details_pb2.BadRequest:
    """A BadRequest detail naming each offending field."""
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in violations
        ]
    )


def retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    """A RetryInfo telling the client how long to wait."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def status_details(metadata: Sequence[tuple[str, str | bytes]] | None) -> status_pb2.Status | None:
    """The google.rpc.Status carried in trailing metadata, if any."""
    for key, value in metadata or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    return None


def unpack_detail(status: status_pb2.Status | None, kind: type) -> object | None:
    """The first detail of a type in a status, if any."""
    if status is None:
        return None
    for packed in status.details:
        detail: object = kind()
        if packed.Unpack(detail):  # type: ignore[arg-type]
            return detail
    return None


def error_reason(exc: grpc.aio.AioRpcError) -> str | None:
    """The ErrorInfo reason a stage attached to its error, if any."""
    info = unpack_detail(status_details(exc.trailing_metadata()), error_details_pb2.ErrorInfo)  # type: ignore[arg-type]
    return info.reason if isinstance(info, error_details_pb2.ErrorInfo) else None


assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT
