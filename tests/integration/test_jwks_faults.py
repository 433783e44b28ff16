"""The identity provider's keys when they cannot be read: a JWKS URL that is slow or answers
garbage, a JWKS file caught mid-rewrite. Valid tokens are answered UNAVAILABLE (never told they are
bad), a slow provider holds no thread other calls need, and a file's last good keys are kept."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack import scenes
from gateway.auth.jwt_tokens import JWKS_TIMEOUT_S, JwtSettings
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import room_render, room_render_request
from renderkit import imaging
from tests.conftest import gateway_settings
from tests.credentials import bearer, key_for
from tests.integration.test_auth import code_of

DB = "/23"
ISSUER = "https://login.example.com/"
AUDIENCE = "render-pipeline"
ROOM = room_render_request(room_render("hall", dry_run=True))
PHOTO = imaging.encode(scenes.plank_texture(128))[0]


class Provider:
    """A JWKS on 127.0.0.1 that answers its keys, garbage, or its keys after a wait."""

    def __init__(self, keys: dict[str, Any]) -> None:
        self.keys = keys
        self.mode = "keys"
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if provider.mode == "slow":
                    time.sleep(JWKS_TIMEOUT_S + 3)
                body = (
                    b"<html>not a key set</html>" if provider.mode == "garbage" else json.dumps(provider.keys).encode()
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if provider.mode != "slow":  # a slow one's client has given up by then
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks(signing_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    return {"keys": [{**jwk, "kid": "k1", "use": "sig"}]}


@pytest.fixture
def provider(jwks: dict[str, Any]) -> Iterator[Provider]:
    served = Provider(jwks)
    yield served
    served.close()


def token(signing_key: rsa.RSAPrivateKey, kid: str = "k1") -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u1", "tenant": "jwks-tenant", "exp": int(time.time()) + 600}
    return jwt.encode(claims, signing_key, algorithm="RS256", headers={"kid": kid})


def gateway_with(
    start_gateway: Callable[[GatewaySettings], Gateway],
    redis_url: str,
    stages: dict[str, str],
    tmp_path: Path,
    jwks: str,
) -> Gateway:
    redis.Redis.from_url(redis_url + DB).flushdb()
    trusted = JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks=jwks)
    return start_gateway(replace(gateway_settings(redis_url + DB, tmp_path / "storage", stages), jwt=trusted))


def test_a_provider_answering_garbage_is_unavailable_not_a_bad_token(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    provider: Provider,
    signing_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    provider.mode = "garbage"
    gateway = gateway_with(start_gateway, redis_url, stages, tmp_path, provider.url)
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        assert code_of(lambda: stub.SubmitRender(ROOM, metadata=bearer(token(signing_key)), timeout=10)) == (
            grpc.StatusCode.UNAVAILABLE
        )
        provider.mode = "keys"
        key_for(redis_url + DB, "jwks-tenant")  # credits to spend
        assert stub.SubmitRender(ROOM, metadata=bearer(token(signing_key)), timeout=10).job.id


def test_a_slow_provider_holds_no_thread_other_calls_need(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    provider: Provider,
    signing_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """Tokens with made-up key ids (anyone can send them) while the provider hangs: each is
    answered within about one fetch's timeout, and an API key's upload (which uses the gateway's
    worker threads) is not held up meanwhile."""
    provider.mode = "slow"
    gateway = gateway_with(start_gateway, redis_url, stages, tmp_path, provider.url)
    key = key_for(redis_url + DB, "uploader")
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel, ThreadPoolExecutor(8) as pool:
        stub = pb_grpc.RenderServiceStub(channel)

        def forged(i: int) -> tuple[grpc.StatusCode, float]:
            started = time.monotonic()
            code = code_of(
                lambda: stub.GetBalance(pb.GetBalanceRequest(), metadata=bearer(token(signing_key, f"x{i}")))
            )
            return code, time.monotonic() - started

        waiting = [pool.submit(forged, i) for i in range(6)]
        time.sleep(0.5)  # the first fetch is under way
        started = time.monotonic()
        stub.UploadAsset(pb.UploadAssetRequest(data=PHOTO, name="swatch"), metadata=bearer(key), timeout=30)
        upload_s = time.monotonic() - started
        answers = [w.result(timeout=60) for w in waiting]
    assert upload_s < 2.0, f"an API key's upload waited {upload_s:.1f} s behind the provider"
    assert {code for code, _ in answers} == {grpc.StatusCode.UNAVAILABLE}
    assert max(seconds for _, seconds in answers) < JWKS_TIMEOUT_S + 2.0


def test_a_made_up_key_id_does_not_fail_a_cached_key_while_the_provider_is_down(
    provider: Provider, signing_key: rsa.RSAPrivateKey
) -> None:
    """Every lookup waited for the one under way and took its failure: while the provider was
    down, one anonymous token with a made-up key id made valid tokens, whose key was cached,
    UNAVAILABLE (a review found it). A cached key is now used without waiting."""
    import asyncio

    from gateway.auth.jwt_tokens import JwtVerifier, KeysUnavailable

    verifier = JwtVerifier(JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks=provider.url).checked())

    async def scenario() -> tuple[str, str]:
        await verifier.authenticate(token(signing_key))  # the key is fetched and cached
        provider.mode = "garbage"  # the provider goes down, past PyJWT's cooldown between refreshes
        client = verifier._url_client
        assert client is not None
        client._last_successful_fetch = time.monotonic() - 31
        made_up = asyncio.ensure_future(verifier.authenticate(token(signing_key, "made-up")))
        await asyncio.sleep(0)  # its lookup is under way
        valid = await verifier.authenticate(
            jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "u2", "tenant": "jwks-tenant", "exp": int(time.time()) + 600},
                signing_key,
                algorithm="RS256",
                headers={"kid": "k1"},
            )
        )
        with pytest.raises(KeysUnavailable):
            await made_up
        return valid.tenant, valid.subject

    assert asyncio.run(scenario()) == ("jwks-tenant", "user:u2")


def test_a_jwks_file_caught_mid_rewrite_keeps_its_last_keys(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    jwks: dict[str, Any],
    signing_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    gateway = gateway_with(start_gateway, redis_url, stages, tmp_path, str(path))
    key_for(redis_url + DB, "jwks-tenant")
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)

        def balance() -> Any:
            return stub.GetBalance(pb.GetBalanceRequest(), metadata=bearer(token(signing_key)), timeout=10)

        assert code_of(balance) == grpc.StatusCode.OK
        path.write_text('{"keys": [')  # half written
        time.sleep(2.5)  # past the verified token's cache (JWT_CACHE_SECONDS 2)
        assert code_of(balance) == grpc.StatusCode.OK
        path.unlink()
        assert code_of(balance) == grpc.StatusCode.OK
