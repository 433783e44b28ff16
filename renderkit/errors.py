"""Typed errors at the gRPC edges: rich google.rpc statuses built and read in one place, and the
rules that keep every message safe to show (no class names, paths, addresses, unbounded echoes)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

log = logging.getLogger(__name__)

DOMAIN = "render.pipeline"
_DETAILS_KEY = "grpc-status-details-bin"
# Messages travel in trailing metadata, whose size gRPC limits (8 KiB by default): a message that
# echoes a huge input would turn the error itself into RESOURCE_EXHAUSTED.
MAX_MESSAGE_CHARS = 500


class InputError(ValueError):
    """A problem with a request's own input, worded for its sender: it names the field, or says
    what the input lacks. A stage reports its text; the text of any other exception (a library's
    ValueError from deep inside) is never shown to a caller."""


class DependencyUnavailable(RuntimeError):
    """Something a server needs is down (Redis, Triton, a stage): the caller should retry shortly.

    `dependency` names it in words safe to show ("the job ledger"); the edge answers UNAVAILABLE
    with a RetryInfo of `retry_after_s`.
    """

    def __init__(self, dependency: str, retry_after_s: float = 1.0) -> None:
        super().__init__(f"{dependency} is unavailable")
        self.dependency = dependency
        self.retry_after_s = retry_after_s


# What an internal message may carry that a caller must not see: tracebacks, qualified class names
# (redis.exceptions.ConnectionError, <class 'cv2.error'>), file paths (OpenCV's source paths,
# the server's storage) and network addresses (Redis, Triton, stages).
_LEAKS = [
    (re.compile(r"Traceback \(most recent call last\).*", re.S), ""),
    (re.compile(r"<class '[^']*'>"), "an error"),
    (re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+[A-Z][A-Za-z0-9_]*(?:Error|Exception|Exceeded|Timeout)\b"), "an error"),
    (re.compile(r"\b(?:[A-Z][a-z0-9]+)+(?:Error|Exception)\b"), "an error"),
    (re.compile(r"\b(?:file|unix|ipv4|ipv6|dns):/*[^\s,;'\")]*"), "an address"),
    # A URL with credentials (redis://:password@host), or of a service's scheme, is an address.
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/@]*@[^\s,;'\")]*"), "an address"),
    (re.compile(r"\b(?:rediss?|grpcs?|postgres(?:ql)?|amqps?):/*[^\s,;'\")]*"), "an address"),
    # A host name and a port (triton.render.svc:8001, redis-master:6379).
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9-]*(?:\.[a-zA-Z0-9-]+)*:\d{2,5}\b"), "an address"),
    # An IPv6 address in brackets has a colon; a field index ("events[0]") has none.
    (re.compile(r"\[[0-9a-fA-F.]*:[0-9a-fA-F:.]*\](?::\d+)?"), "an address"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "an address"),
    (re.compile(r"\blocalhost:\d+\b"), "an address"),
    (re.compile(r"(?<![\w.:/])(?:/[\w.@+~-]+){2,}/?"), "a path"),
]


def safe_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A message fit for a caller: leaks replaced by neutral words, bounded in length.

    The servers build their messages to be safe; this is the last line of defence at every edge
    (RPC statuses, job errors), so a library's message that slips through cannot leak.
    """
    cleaned = text
    for pattern, replacement in _LEAKS:
        cleaned = pattern.sub(replacement, cleaned)
    cleaned = " ".join(cleaned.split())
    if cleaned != text.strip() and cleaned != " ".join(text.split()):
        log.warning("an outgoing message was sanitised: %r", text[:2000])
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned or "the request failed"


def rich_status(code: grpc.StatusCode, message: str, *details: object) -> status_pb2.Status:
    """A google.rpc.Status with packed details (the message made safe and bounded)."""
    status = status_pb2.Status(code=code.value[0], message=safe_message(message))
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
    await context.abort(code, status.message, trailing_metadata=((_DETAILS_KEY, status.SerializeToString()),))
    raise AssertionError("unreachable")


def error_info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    """An ErrorInfo in the pipeline's domain; reason is a job ErrorCode name such as TIMEOUT."""
    return error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)


def bad_request(violations: Sequence[tuple[str, str]]) -> error_details_pb2.BadRequest:
    """A BadRequest detail naming each offending field."""
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=safe_message(field, 200), description=safe_message(description)
            )
            for field, description in violations[:100]
        ]
    )


def precondition_failure(kind: str, subject: str, description: str) -> error_details_pb2.PreconditionFailure:
    """A PreconditionFailure detail: what is not as the request needs it (such as the tenant's credits)."""
    return error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(type=kind, subject=subject, description=description)
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


def error_metadata(exc: grpc.aio.AioRpcError) -> dict[str, str]:
    """The ErrorInfo metadata a stage attached to its error ({} without one)."""
    info = unpack_detail(status_details(exc.trailing_metadata()), error_details_pb2.ErrorInfo)  # type: ignore[arg-type]
    return dict(info.metadata) if isinstance(info, error_details_pb2.ErrorInfo) else {}


assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT
