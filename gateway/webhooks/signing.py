"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` with the
key inside a `whsec_<base64>` secret, one per secret that signs (two during a rotation's overlap),
space-separated in the webhook-signature header."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_...` secret holds."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(delivery_id: str, timestamp_s: int, body: bytes, secret: str) -> str:
    """One `v1,...` signature of a payload."""
    signed = f"{delivery_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(delivery_id: str, timestamp_s: int, body: bytes, secrets: Sequence[str]) -> dict[str, str]:
    """The headers of one attempt: its id (the same on every attempt), its time, its signatures."""
    return {
        "Content-Type": "application/json",
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": " ".join(signature(delivery_id, timestamp_s, body, s) for s in secrets),
    }
