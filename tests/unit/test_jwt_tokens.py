"""The JWT verifier's memory of tokens it verified: the same token is taken again for a few seconds
without its signature checked, never past its expiry, and a token with the same claims but another
signature is checked in full."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth.api_keys import AuthenticationError
from gateway.auth.jwt_tokens import JwtSettings, JwtVerifier
from gateway.auth.verified import make_room
from gateway.settings import GatewaySettings
from renderkit.settings import SettingsError

ISSUER = "https://id.example.com/"
AUDIENCE = "render"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def settings(tmp_path: Path, key: rsa.RSAPrivateKey, **overrides: Any) -> JwtSettings:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1"}]}))
    return JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks=str(tmp_path / "jwks.json"), **overrides)


def token(key: rsa.RSAPrivateKey, exp: int) -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u1", "tenant": "acme", "exp": exp}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def counting_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every signature check the verifier makes."""
    checked: list[str] = []
    real = jwt.decode

    def decode(token: str, *args: Any, **kwargs: Any) -> Any:
        checked.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", decode)  # the module the verifier calls it from
    return checked


@pytest.mark.parametrize(("cache_s", "checks"), [(60.0, 1), (0.0, 3)], ids=["cached", "no cache"])
def test_a_repeated_token_is_checked_once_while_cached(
    tmp_path: Path, signing_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch, cache_s: float, checks: int
) -> None:
    checked = counting_decodes(monkeypatch)
    verifier = JwtVerifier(settings(tmp_path, signing_key, cache_s=cache_s))
    good = token(signing_key, int(time.time()) + 300)

    async def calls() -> None:
        for _ in range(3):
            principal = await verifier.authenticate(good)
            assert (principal.tenant, principal.subject) == ("acme", "user:u1")

    asyncio.run(calls())
    assert checked == [good] * checks


def test_a_remembered_token_does_not_vouch_for_another_signature(
    tmp_path: Path, signing_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = counting_decodes(monkeypatch)
    verifier = JwtVerifier(settings(tmp_path, signing_key, cache_s=60.0))
    exp = int(time.time()) + 300
    good = token(signing_key, exp)
    asyncio.run(verifier.authenticate(good))
    # The same claims under another key's signature: checked in full, and refused.
    forged = token(rsa.generate_private_key(public_exponent=65537, key_size=2048), exp)
    with pytest.raises(AuthenticationError):
        asyncio.run(verifier.authenticate(forged))
    assert checked == [good, forged]


def test_a_remembered_token_is_refused_once_it_expires(tmp_path: Path, signing_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(settings(tmp_path, signing_key, cache_s=60.0, leeway_s=0.0))
    expires = int(time.time()) + 1
    short = token(signing_key, expires)
    asyncio.run(verifier.authenticate(short))
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(AuthenticationError, match="expired"):
        asyncio.run(verifier.authenticate(short))


def test_the_memory_of_verified_credentials_stays_bounded() -> None:
    """At the bound, the entries no longer fresh go first, then the oldest down to three quarters of
    it: memory stays bounded when every credential is fresh, and a pass over the entries is paid
    once per quarter of the bound, not on every new credential."""
    most, inserts = 8, 40
    entries: dict[str, int] = {}
    checks = 0

    def fresh(n: int) -> bool:
        nonlocal checks
        checks += 1
        return n != 3  # entry 3 has lapsed

    for n in range(inserts):
        entries = make_room(entries, fresh, most)
        entries[f"token-{n}"] = n
        assert len(entries) <= most
    assert list(entries)[-1] == f"token-{inserts - 1}"
    assert checks <= most * (inserts // (most // 4))  # one pass of `most` checks per two inserts
    kept = make_room({f"t{n}": n for n in range(most)}, lambda n: n != 3, most)
    assert list(kept) == ["t1", "t2", "t4", "t5", "t6", "t7"]  # the lapsed t3, then the oldest, t0


def test_the_cache_time_is_at_most_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_CACHE_SECONDS", "120")
    with pytest.raises(SettingsError, match="JWT_CACHE_SECONDS must be at most 60"):
        GatewaySettings.from_env()


def test_tokens_are_accepted_only_with_an_audience_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """An issuer and keys without an audience would take a token the same issuer made for another
    service: the gateway refuses to start so configured."""
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_JWKS", "/etc/render/jwks.json")
    with pytest.raises(SettingsError, match="JWT_AUDIENCE"):
        GatewaySettings.from_env()
    monkeypatch.setenv("JWT_AUDIENCE", AUDIENCE)
    assert GatewaySettings.from_env().jwt.enabled


def test_a_token_grants_admin_only_where_the_deployment_allows_it(
    tmp_path: Path, signing_key: rsa.RSAPrivateKey
) -> None:
    """The admin API manages every tenant: a token asking for the admin scope gets it only with
    JWT_ALLOW_ADMIN; its other scopes are kept."""
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u1", "tenant": "acme", "exp": int(time.time()) + 60}
    asked = jwt.encode({**claims, "scope": "render read admin"}, signing_key, algorithm="RS256", headers={"kid": "k1"})
    plain = asyncio.run(JwtVerifier(settings(tmp_path, signing_key)).authenticate(asked))
    assert {s.value for s in plain.scopes} == {"render", "read"}
    allowed = asyncio.run(JwtVerifier(settings(tmp_path, signing_key, allow_admin=True)).authenticate(asked))
    assert {s.value for s in allowed.scopes} == {"render", "read", "admin"}
    unaddressed = jwt.encode(claims | {"aud": "another-service"}, signing_key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(AuthenticationError, match="not meant for this service"):
        asyncio.run(JwtVerifier(settings(tmp_path, signing_key)).authenticate(unaddressed))


def test_a_tenant_claim_is_matched_whole(tmp_path: Path, signing_key: rsa.RSAPrivateKey) -> None:
    """'acme\\n' is not the tenant acme, nor a tenant of its own."""
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u1", "tenant": "acme\n", "exp": int(time.time()) + 60}
    forged = jwt.encode(claims, signing_key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(AuthenticationError, match="no valid tenant claim"):
        asyncio.run(JwtVerifier(settings(tmp_path, signing_key)).authenticate(forged))


@pytest.mark.parametrize("scope", [5, ["read", {"x": 1}], {"read": True}])
def test_a_scopes_claim_that_is_not_names_is_a_bad_token(
    tmp_path: Path, signing_key: rsa.RSAPrivateKey, scope: object
) -> None:
    """A claim of another shape raised TypeError inside the check: an internal error for a token
    that is simply not valid (a review found it)."""
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u1", "tenant": "acme", "exp": int(time.time()) + 60}
    odd = jwt.encode({**claims, "scope": scope}, signing_key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(AuthenticationError, match="scope claim"):
        asyncio.run(JwtVerifier(settings(tmp_path, signing_key)).authenticate(odd))


def test_a_token_whose_algorithm_does_not_fit_its_key_is_refused(
    tmp_path: Path, signing_key: rsa.RSAPrivateKey
) -> None:
    """An EC algorithm named for the provider's RSA key (PyJWT raises TypeError there, not one of
    its own errors) is an invalid token, not a failure of the check."""
    header = {"alg": "ES256", "kid": "k1", "typ": "JWT"}
    encode = lambda part: jwt.utils.base64url_encode(json.dumps(part).encode()).decode()  # noqa: E731
    forged = f"{encode(header)}.{encode({'iss': ISSUER, 'aud': AUDIENCE, 'tenant': 'acme', 'exp': 2**31})}.AAAA"
    with pytest.raises(AuthenticationError, match="not valid"):
        asyncio.run(JwtVerifier(settings(tmp_path, signing_key)).authenticate(forged))


def test_an_api_key_is_trusted_from_its_cache_at_most_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Revocation reaches every replica within seconds: the cache cannot be set longer."""
    monkeypatch.setenv("API_KEY_CACHE_SECONDS", "3600")
    with pytest.raises(SettingsError, match="API_KEY_CACHE_SECONDS must be at most 60"):
        GatewaySettings.from_env()
