"""The Python client and renderctl over TLS: a gateway whose public port has a certificate
(GATEWAY_TLS_CERT, GATEWAY_TLS_KEY) of a throwaway CA is reached by clients that trust that CA, and
refused (UNAVAILABLE, in the handshake) to plaintext clients and to clients that trust other roots.
Real Redis, real gRPC on loopback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from devstack.certificates import DEVELOPMENT_HOSTS, CertificateAuthority, write_material
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render_client.cli import main
from render_client.client import RenderClient
from tests.conftest import gateway_settings
from tests.credentials import TEST_CREDITS, key_for

DB = "/12"  # shared with test_internal_trust's TLS gateway; neither dispatches, both mint fresh keys


@dataclass(frozen=True)
class TlsGateway:
    """A gateway serving TLS on its public port, its CA, and the Redis its keys are minted in."""

    port: int
    ca: CertificateAuthority
    ca_file: Path
    redis_url: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def tls_gateway(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path_factory: pytest.TempPathFactory,
) -> TlsGateway:
    """A gateway whose public certificate (for 127.0.0.1 and localhost) is issued by a CA made here."""
    folder = tmp_path_factory.mktemp("public-tls")
    ca = CertificateAuthority.create("a throwaway public CA")
    files = write_material(folder / "tls", ca.issue(DEVELOPMENT_HOSTS, common_name="render-gateway"))
    assert files.ca is not None
    url = redis_url + DB
    settings = gateway_settings(
        url, folder / "storage", stages, dispatch=False, tls_cert=str(files.cert), tls_key=str(files.key)
    )
    return TlsGateway(start_gateway(settings).port, ca, files.ca, url)


def get_code(client: RenderClient, job_id: str = "no-such-job") -> grpc.StatusCode:
    """The status code of a GetJob (OK when it was answered with a job)."""
    with client:
        try:
            client.get(job_id, timeout=10)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def test_a_client_that_trusts_the_gateways_ca_calls_it_over_tls(tls_gateway: TlsGateway) -> None:
    key = key_for(tls_gateway.redis_url, "tls-client")
    root = tls_gateway.ca.cert_pem
    with RenderClient(tls_gateway.address, api_key=key, tls=True, root_certificates=root) as client:
        assert client.tls
        assert list(client.list().jobs) == []  # answered: the tenant has no jobs yet
    # NOT_FOUND is the gateway's answer, past the handshake and the key check.
    assert get_code(RenderClient(tls_gateway.address, api_key=key, tls=True, root_certificates=root)) == (
        grpc.StatusCode.NOT_FOUND
    )
    # The certificate names localhost too, and root certificates alone imply TLS.
    localhost = f"localhost:{tls_gateway.port}"
    assert get_code(RenderClient(localhost, api_key=key, root_certificates=root)) == grpc.StatusCode.NOT_FOUND


def test_a_plaintext_client_is_refused_by_a_tls_port(tls_gateway: TlsGateway) -> None:
    key = key_for(tls_gateway.redis_url, "tls-plaintext")
    plaintext = RenderClient(tls_gateway.address, api_key=key)
    assert not plaintext.tls
    assert get_code(plaintext) == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_trusts_other_roots_is_refused(tls_gateway: TlsGateway) -> None:
    key = key_for(tls_gateway.redis_url, "tls-stranger")
    other = CertificateAuthority.create("another throwaway CA").cert_pem
    assert get_code(RenderClient(tls_gateway.address, api_key=key, root_certificates=other)) == (
        grpc.StatusCode.UNAVAILABLE
    )
    # tls=True alone trusts the system's roots, which never signed the throwaway CA's certificate.
    assert get_code(RenderClient(tls_gateway.address, api_key=key, tls=True)) == grpc.StatusCode.UNAVAILABLE


def test_renderctl_with_cacert_calls_the_gateway_over_tls(
    tls_gateway: TlsGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    key = key_for(tls_gateway.redis_url, "tls-cli")
    common = ["--address", tls_gateway.address, "--api-key", key, "--cacert", str(tls_gateway.ca_file)]
    assert main([*common, "list"]) == 0
    assert main([*common, "credits", "balance"]) == 0  # an admin-module command on the same channel
    assert capsys.readouterr().out.startswith(f"balance {TEST_CREDITS},")
    assert main([*common, "get", "no-such-job"]) == 2
    assert capsys.readouterr().err.startswith("error: NOT_FOUND: ")


def test_renderctl_reads_tls_and_cacert_from_the_environment(
    tls_gateway: TlsGateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = key_for(tls_gateway.redis_url, "tls-cli-env")
    common = ["--address", tls_gateway.address, "--api-key", key, "--give-up-after", "1"]
    monkeypatch.setenv("RENDER_CACERT", str(tls_gateway.ca_file))
    assert main([*common, "list"]) == 0
    monkeypatch.delenv("RENDER_CACERT")
    monkeypatch.setenv("RENDER_TLS", "1")  # TLS with the system's roots: the handshake fails
    assert main([*common, "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: UNAVAILABLE: ")
    assert f"is a gateway running at {tls_gateway.address}?" in err and "(--cacert or RENDER_CACERT)" in err
    monkeypatch.delenv("RENDER_TLS")  # plaintext again: refused by the TLS port
    assert main([*common, "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: UNAVAILABLE: ") and "RENDER_CACERT" not in err
