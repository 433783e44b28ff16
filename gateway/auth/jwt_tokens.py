"""JWT bearer tokens from the identity provider a deployment names (PyJWT verifies them).

For frontends whose users sign in elsewhere: the provider signs a token with its private key; the
gateway checks the signature against the provider's published keys (a JWKS, from a file or a URL),
the issuer, the audience and the expiry, and takes the tenant and the subject from configured
claims. Only asymmetric algorithms are accepted, so a public key can never serve as an HMAC secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.auth.api_keys import AuthenticationError
from gateway.auth.principal import TENANT_NAME, Principal, Scope, parse_scopes
from gateway.auth.verified import make_room
from renderkit.errors import DependencyUnavailable
from renderkit.settings import SettingsError

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
DEFAULT_SCOPES = frozenset({Scope.RENDER, Scope.READ})
# How long a fetch of a JWKS URL may take (PyJWT's default is 30 s).
JWKS_TIMEOUT_S = 3.0


class KeysUnavailable(DependencyUnavailable):
    """The identity provider's keys cannot be read now (its URL down, slow or answering garbage, or
    its file unreadable with no good copy read before): UNAVAILABLE, never a verdict on the token."""

    def __init__(self) -> None:
        super().__init__("the identity provider's key set", retry_after_s=1.0)


@dataclass(frozen=True)
class JwtSettings:
    """Which identity provider's tokens the gateway accepts (issuer empty: none)."""

    issuer: str = ""
    audience: str = ""
    jwks: str = ""  # a JWKS file's path, or an https URL the provider publishes it at
    tenant_claim: str = "tenant"
    subject_claim: str = "sub"
    scopes_claim: str = "scope"
    leeway_s: float = 30.0
    # How long a verified token is taken again without checking its signature (never past its
    # expiry); 0: every call verifies.
    cache_s: float = 2.0
    # Whether a token's scopes may include admin: the admin API manages every tenant's keys, limits
    # and credits, and many identity providers let a client ask for any scope it names.
    allow_admin: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.issuer and self.jwks)

    def checked(self) -> JwtSettings:
        """These settings, refused when tokens would be accepted without an audience (a token the
        same issuer made for another service, without an aud claim, would pass)."""
        if (self.issuer or self.jwks) and not (self.issuer and self.jwks and self.audience):
            raise SettingsError("JWT_ISSUER, JWT_JWKS and JWT_AUDIENCE are needed together to accept tokens")
        return self


class JwtVerifier:
    """Verifies tokens of one issuer; the keys are read once and again when the file changes (a
    URL's keys are cached by PyJWT and fetched again for an unknown key id).

    A frontend sends the same token with every call until it renews it, and checking a signature
    costs the event loop 130-180 µs (RS256, ES256; a URL's keys add a thread hop), more than the
    rest of a submit: a token verified here is taken again for `cache_s` seconds, but never past
    its expiry (with the leeway), and only the very same token."""

    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings
        self._url_client = (
            jwt.PyJWKClient(settings.jwks, cache_keys=True, timeout=JWKS_TIMEOUT_S) if _is_url(settings.jwks) else None
        )
        # Key lookups run here, one at a time, and never on the loop's shared threads: a slow
        # provider (which anyone can make the gateway ask, with a made-up key id) holds this
        # thread only, not the threads uploads and storage reads need.
        self._fetcher = ThreadPoolExecutor(1, thread_name_prefix="jwks")
        self._looking_up: asyncio.Task[Any] | None = None  # the lookup under way, which others wait for
        self._file_keys: jwt.PyJWKSet | None = None
        self._file_mtime = -1.0
        # token -> (monotonic time it was verified, the epoch second it stops being accepted, principal)
        self._verified: dict[str, tuple[float, float, Principal]] = {}

    async def authenticate(self, token: str) -> Principal:
        """The principal a token proves; AuthenticationError (safe to show) otherwise."""
        verified = self._verified.get(token)
        if verified is not None:
            at, until, principal = verified
            if time.monotonic() - at < self.settings.cache_s and time.time() < until:
                return principal
            del self._verified[token]
        principal, expires = await self._verify(token)
        if self.settings.cache_s > 0:
            now = time.monotonic()
            self._verified = make_room(self._verified, lambda v: now - v[0] < self.settings.cache_s)
            self._verified[token] = (now, expires + self.settings.leeway_s, principal)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        """The principal a token proves and its expiry (epoch seconds), from its signature and claims."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("the bearer token is malformed") from None
        if header.get("alg") not in ALGORITHMS:
            raise AuthenticationError("the bearer token's algorithm is not accepted")
        key = await self._signing_key(token, str(header.get("kid", "")))
        s = self.settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the bearer token has expired") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("the bearer token's issuer is not accepted") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("the bearer token is not meant for this service") from None
        except (jwt.PyJWTError, TypeError, ValueError):  # a key of another type than the token's algorithm too
            raise AuthenticationError("the bearer token is not valid") from None
        tenant = claims.get(s.tenant_claim)
        if not isinstance(tenant, str) or not TENANT_NAME.match(tenant):
            raise AuthenticationError(f"the bearer token has no valid {s.tenant_claim} claim")
        subject = str(claims.get(s.subject_claim, ""))[:128]
        raw_scopes = claims.get(s.scopes_claim)
        try:
            scopes = parse_scopes(raw_scopes) if raw_scopes is not None else DEFAULT_SCOPES
        except ValueError:
            raise AuthenticationError(f"the bearer token's {s.scopes_claim} claim is not a list of scopes") from None
        if not s.allow_admin:
            scopes = scopes - {Scope.ADMIN}
        expires = float(claims["exp"])
        return Principal(
            tenant=tenant, subject=f"user:{subject}", scopes=scopes, expires_s=expires + s.leeway_s
        ), expires

    async def _signing_key(self, token: str, kid: str) -> Any:
        if self._url_client is not None:
            cached = _cached_key(self._url_client, kid)
            if cached is not None:  # no lookup to wait for: one for a made-up key id cannot fail it
                return cached
            # One lookup at a time: a caller arriving while one is under way (a fetch of a slow
            # provider, up to JWKS_TIMEOUT_S) waits for it, and is told at once if it found the
            # provider unreadable, instead of queueing a fetch of its own behind it.
            under_way = self._looking_up
            if under_way is not None and not under_way.done():
                with contextlib.suppress(AuthenticationError):
                    await asyncio.shield(under_way)
            self._looking_up = asyncio.ensure_future(self._url_key(self._url_client, token))
            return await asyncio.shield(self._looking_up)
        keys = self._keys_from_file()
        for candidate in keys.keys:
            if not kid or candidate.key_id == kid:
                return candidate.key
        raise AuthenticationError("the bearer token's signing key is not known")

    async def _url_key(self, client: jwt.PyJWKClient, token: str) -> Any:
        """The token's key from the provider's URL (fetched only for a key id not cached yet), on
        the verifier's own thread."""
        loop = asyncio.get_running_loop()
        try:
            return (await loop.run_in_executor(self._fetcher, client.get_signing_key_from_jwt, token)).key
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError, ValueError) as exc:
            log.warning("the JWKS could not be read: %s", exc)
            raise KeysUnavailable() from None
        except jwt.PyJWKClientError:
            raise AuthenticationError("the bearer token's signing key is not known") from None

    def _keys_from_file(self) -> jwt.PyJWKSet:
        """The file's keys, read again when it changes; while it cannot be read (missing, or caught
        mid-rewrite) the keys read last are kept, and with none read yet KeysUnavailable."""
        try:
            mtime = os.stat(self.settings.jwks).st_mtime
            if self._file_keys is None or mtime != self._file_mtime:
                with open(self.settings.jwks, encoding="utf-8") as f:
                    self._file_keys = jwt.PyJWKSet.from_dict(json.load(f))
                self._file_mtime = mtime
        except (OSError, ValueError, jwt.PyJWKSetError) as exc:
            if self._file_keys is None:
                log.warning("the JWKS file could not be read: %s", exc)
                raise KeysUnavailable() from None
            log.warning("the JWKS file could not be read again (%s); its last keys are used", exc)
        return self._file_keys


def _cached_key(client: jwt.PyJWKClient, kid: str) -> Any:
    """The key of that id in the client's cached key set, None when it is not there (or the set's
    cache has expired): read without fetching anything."""
    cache = client.jwk_set_cache
    keys = cache.get() if cache is not None and kid else None
    for candidate in keys.keys if keys is not None else ():
        if candidate.key_id == kid:
            return candidate.key
    return None


def _is_url(value: str) -> bool:
    return value.startswith(("https://", "http://"))
