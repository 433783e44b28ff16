"""Who is calling: the principal a credential proves, and what it may do."""

from __future__ import annotations

import contextvars
import enum
import re
from dataclasses import dataclass

from gateway.ledger.keys import RESERVED_TENANT_NAMES


class Scope(enum.StrEnum):
    """What a credential may do."""

    RENDER = "render"  # submit and cancel jobs
    READ = "read"  # read, watch and list jobs; read the credit balance and log
    ADMIN = "admin"  # the admin API: keys, tenants, limits, credits


ALL_SCOPES = frozenset(Scope)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its tenant (every job it touches is the tenant's), who it is within
    the tenant, and its scopes."""

    tenant: str
    subject: str  # an API key's id ("key:<id>") or a JWT's subject ("user:<sub>")
    scopes: frozenset[Scope]
    key_id: str = ""  # set for API keys
    # When the credential stops proving it (epoch seconds; 0: never): a key's expiry, a token's
    # (with the leeway). A stream opened with it ends there (Authenticator.still_valid).
    expires_s: float = 0.0

    def may(self, scope: Scope) -> bool:
        return scope in self.scopes


_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


def set_principal(principal: Principal) -> contextvars.Token[Principal]:
    """Makes the principal the current call's (the authentication interceptor does)."""
    return _current.set(principal)


def current_principal() -> Principal:
    """The current call's principal; LookupError outside an authenticated call (a bug)."""
    return _current.get()


# What a tenant may be called (the admin API, tokens' tenant claims, the bootstrap): the name is
# part of Redis keys and lease members, so it holds no separator of theirs, and is none of the names
# that would make one of its keys a global one (queue:{tenant} and queue:tenants, queue:clock, ...).
_RESERVED = "|".join(re.escape(n) for n in sorted(RESERVED_TENANT_NAMES))
TENANT_NAME = re.compile(rf"^(?!(?:{_RESERVED})\Z)[A-Za-z0-9_-]{{1,64}}\Z")
TENANT_NAME_RULE = "use 1-64 letters, digits, _ or -, but not " + ", ".join(sorted(RESERVED_TENANT_NAMES))


def parse_scopes(values: object) -> frozenset[Scope]:
    """Scopes from a space- or comma-separated string or a list of names; unknown names are ignored.
    ValueError for anything else (a token's claim may hold any JSON)."""
    if values is None:
        return frozenset()
    if isinstance(values, str):
        items: list[object] = list(values.replace(",", " ").split())
    elif isinstance(values, (list, tuple)):
        items = list(values)
    else:
        raise ValueError("scopes must be a string or a list of names")
    names = [v for v in items if isinstance(v, str)]
    if len(names) != len(items):
        raise ValueError("scopes must be a string or a list of names")
    return frozenset(Scope(v) for v in names if v in Scope._value2member_map_)
