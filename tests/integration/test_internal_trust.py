"""Internal hops trust no one: stages and Triton take only clients with a certificate of the
internal CA (mutual TLS), Redis takes only clients with the password, and the gateway's public
port serves TLS when it has a certificate."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import numpy as np
import pytest
import redis
import tritonclient.grpc as triton_grpc
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from devstack.certificates import CertificateAuthority, ensure_development_certificates, write_material
from devstack.launcher import Ports, Stack
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from gateway.stages import StageClients
from render.depth.v1 import depth_service_pb2 as depth_pb
from render.depth.v1 import depth_service_pb2_grpc as depth_grpc
from render.projection.v1 import projection_service_pb2 as projection_pb
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from renderkit import imaging
from renderkit.edge import Edge
from renderkit.settings import SettingsError
from renderkit.tls import (
    ClientCertificates,
    TlsFiles,
    TlsMaterial,
    channel_credentials,
    internal_client,
    internal_server_credentials,
)
from renderkit.triton import TritonModels
from services.depth.server import create_server as create_depth
from services.projection.server import create_server as create_projection
from tests.conftest import EmbeddedTriton, LoopThread, gateway_settings, stage_settings
from tests.credentials import bearer, key_for


@pytest.fixture(scope="module")
def internal_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """The development CA and certificate, as the embedded stack makes them."""
    base = tmp_path_factory.mktemp("internal-tls")
    return ensure_development_certificates(base / "internal-tls", base / "ca.key")


def foreign_material(files: TlsFiles) -> TlsMaterial:
    """A certificate for the same hosts from another CA, trusting the real CA for the server: what a
    process that is not part of the stack could make for itself."""
    assert files.ca is not None
    issued = CertificateAuthority.create("an impostor CA").issue(["127.0.0.1", "localhost"])
    return TlsMaterial(cert=issued.cert, key=issued.key, ca=files.ca.read_bytes())


def health_code(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """The status code of one health check (OK when it was answered)."""
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def refused_by_anyone_but_the_stack(address: str, files: TlsFiles) -> None:
    """A plaintext client, a TLS client without a certificate and one with a certificate of another
    CA are refused in the handshake (UNAVAILABLE); the stack's certificate is answered."""
    assert files.ca is not None
    ca = files.ca.read_bytes()
    assert health_code(address, None) == grpc.StatusCode.UNAVAILABLE
    assert health_code(address, grpc.ssl_channel_credentials(ca)) == grpc.StatusCode.UNAVAILABLE
    assert health_code(address, channel_credentials(foreign_material(files))) == grpc.StatusCode.UNAVAILABLE
    assert health_code(address, ClientCertificates(files).credentials()) == grpc.StatusCode.OK


def test_a_stage_takes_only_clients_with_a_certificate_of_the_internal_ca(
    internal_tls: TlsFiles, start_stage: Callable[[Callable[[], Edge]], Edge]
) -> None:
    settings = replace(stage_settings(), internal_tls_dir=str(internal_tls.cert.parent))
    server = start_stage(lambda: create_projection(settings))
    address = f"127.0.0.1:{server.port}"
    refused_by_anyone_but_the_stack(address, internal_tls)
    # The certificate names localhost too, so either spelling of loopback verifies.
    assert health_code(f"localhost:{server.port}", ClientCertificates(internal_tls).credentials()) == (
        grpc.StatusCode.OK
    )


def test_rotated_certificates_are_served_and_followed_without_a_restart(
    tmp_path: Path, start_stage: Callable[[Callable[[], Edge]], Edge], loop_thread: LoopThread
) -> None:
    """A new CA and certificate written over the files (as cert-manager renews them): the stage
    serves the new ones at the next handshake, and the gateway's stage channels are remade with
    them, so its calls go on succeeding."""
    directory = tmp_path / "tls"
    files = ensure_development_certificates(directory, tmp_path / "ca.key")
    old = ClientCertificates(files).credentials()
    settings = replace(stage_settings(), internal_tls_dir=str(directory))
    server = start_stage(lambda: create_projection(settings))
    address = f"127.0.0.1:{server.port}"

    async def connect() -> StageClients:
        return StageClients.connect(
            address, address, address, address, tls=ClientCertificates(files), reload_interval_s=0.1
        )

    stages = loop_thread.run(connect())
    loop_thread.run(_started(stages))

    async def project() -> grpc.StatusCode:
        try:
            await stages.projection.Project(projection_pb.ProjectRequest(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    try:
        answered = loop_thread.run(project())
        assert answered == grpc.StatusCode.INVALID_ARGUMENT  # an empty request reached the servicer
        before = list(stages.channels)
        write_material(directory, CertificateAuthority.create("the renewed CA").issue(["127.0.0.1", "localhost"]))
        assert health_code(address, old) == grpc.StatusCode.UNAVAILABLE
        assert health_code(address, ClientCertificates(files).credentials()) == grpc.StatusCode.OK
        deadline = time.monotonic() + 10
        while stages.channels == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stages.channels != before
        assert loop_thread.run(project()) == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        loop_thread.run(stages.close())


async def _started(stages: StageClients) -> None:
    stages.start()


@pytest.fixture(scope="module")
def secure_triton(
    internal_tls: TlsFiles, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedTriton]:
    """The embedded Triton serving the tiny depth model with mutual TLS on its gRPC port."""
    server = EmbeddedTriton(models_dir, tmp_path_factory.mktemp("secure-triton"), ("depth",), internal_tls.cert.parent)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_triton_takes_only_clients_with_a_certificate_of_the_internal_ca(
    secure_triton: EmbeddedTriton, internal_tls: TlsFiles, tmp_path: Path
) -> None:
    plain = triton_grpc.InferenceServerClient(secure_triton.url)
    with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
        plain.is_server_live(client_timeout=5)
    plain.close()
    impostor = write_material(tmp_path / "impostor", foreign_material(internal_tls))
    assert impostor.ca is not None
    foreign = triton_grpc.InferenceServerClient(
        secure_triton.url,
        ssl=True,
        root_certificates=str(impostor.ca),
        private_key=str(impostor.key),
        certificate_chain=str(impostor.cert),
    )
    with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
        foreign.is_model_ready("depth", client_timeout=5)
    foreign.close()


def test_the_stage_to_triton_hop_runs_over_mutual_tls(
    secure_triton: EmbeddedTriton, internal_tls: TlsFiles, start_stage: Callable[[Callable[[], Edge]], Edge]
) -> None:
    directory = str(internal_tls.cert.parent)
    settings = replace(stage_settings(secure_triton.url), internal_tls_dir=directory)
    server = start_stage(lambda: create_depth(settings))
    ramp = np.linspace(40, 220, 240, dtype=np.float32)[:, None].repeat(320, 1)
    photo = imaging.encode(np.stack([ramp] * 3, axis=2).astype(np.uint8))[0]
    mask = np.zeros((240, 320), np.uint8)
    mask[130:, :] = 255
    with grpc.secure_channel(f"127.0.0.1:{server.port}", ClientCertificates(internal_tls).credentials()) as channel:
        reply = depth_grpc.DepthServiceStub(channel).EstimatePlane(
            depth_pb.EstimatePlaneRequest(width=320, height=240, photo=photo, mask_png=imaging.encode_mask(mask)),
            timeout=30,
        )
    assert reply.used_depth_model and reply.source == "depth_model"


def test_tritons_http_and_metrics_ports_are_loopback_only_and_http_needs_the_token(
    secure_triton: EmbeddedTriton,
) -> None:
    """PyTriton drives its server over HTTP; nobody else gets more than health out of that port."""
    http = f"http://127.0.0.1:{secure_triton.http_port}"
    with urllib.request.urlopen(f"{http}/v2/health/live", timeout=5) as live:
        assert live.status == 200  # health stays open: PyTriton waits for its server without the token
    for method, path, body in (
        ("GET", "/v2/models/depth", None),
        ("GET", "/v2/models/depth/config", None),
        ("POST", "/v2/models/depth/infer", b"{}"),
        ("POST", "/v2/repository/index", b"{}"),
        ("GET", "/v2/models/stats", None),
    ):
        request = urllib.request.Request(f"{http}{path}", data=body, method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 403, path
    for port in (secure_triton.grpc_port, secure_triton.http_port, secure_triton.metrics_port):
        # 127.0.0.2 is loopback too, but not the address a loopback-only socket is bound to.
        with pytest.raises(OSError), socket.create_connection(("127.0.0.2", port), timeout=2):
            pass


def test_the_triton_client_follows_its_certificate_files(
    secure_triton: EmbeddedTriton, internal_tls: TlsFiles, tmp_path: Path, loop_thread: LoopThread
) -> None:
    """A stage's Triton client made from files that are not (yet) trusted is refused; once the files
    hold the stack's certificate, the next health probe reconnects with it."""
    directory = tmp_path / "client-tls"
    write_material(directory, foreign_material(internal_tls))

    async def probe_twice() -> tuple[bool, bool]:
        models = TritonModels(secure_triton.url, tls=ClientCertificates(TlsFiles.directory(directory)))
        try:
            before = await models.healthy(("depth",))
            write_material(directory, internal_tls.read())
            return before, await models.healthy(("depth",))
        finally:
            await models.close()

    assert loop_thread.run(probe_twice()) == (False, True)


def test_redis_refuses_clients_without_the_password(redis_url: str) -> None:
    parts = urlsplit(redis_url)
    assert parts.password, "the tests' Redis runs with a password"
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as raw:
        raw.sendall(b"PING\r\n")
        assert raw.recv(200).startswith(b"-NOAUTH")
    anonymous = redis.Redis(host=parts.hostname or "", port=parts.port or 0)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    wrong = redis.Redis(host=parts.hostname or "", port=parts.port or 0, password="not-the-password")
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    with redis.Redis.from_url(redis_url) as client:
        assert client.ping()
    anonymous.close()
    wrong.close()


def test_the_gateways_public_port_serves_tls_when_it_has_a_certificate(
    internal_tls: TlsFiles,
    redis_url: str,
    stages: dict[str, str],
    tmp_path: Path,
    start_gateway: Callable[[GatewaySettings], Gateway],
) -> None:
    url = redis_url + "/12"
    redis.Redis.from_url(url).flushdb()
    settings = gateway_settings(
        url, tmp_path, stages, dispatch=False, tls_cert=str(internal_tls.cert), tls_key=str(internal_tls.key)
    )
    gateway = start_gateway(settings)
    address = f"127.0.0.1:{gateway.port}"
    assert internal_tls.ca is not None
    # The public port asks for no client certificate: the CA's root certificate is all a client needs.
    root_only = grpc.ssl_channel_credentials(internal_tls.ca.read_bytes())
    assert health_code(address, root_only) == grpc.StatusCode.OK
    assert health_code(address, None) == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(address, root_only) as channel, pytest.raises(grpc.RpcError) as info:
        pb_grpc.RenderServiceStub(channel).GetJob(
            pb.GetJobRequest(job_id="no-such-job"), metadata=bearer(key_for(url, "tls")), timeout=5
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_a_certificate_without_its_key_is_a_settings_error() -> None:
    base = GatewaySettings.from_env()
    with pytest.raises(SettingsError, match="GATEWAY_TLS_CERT and GATEWAY_TLS_KEY"):
        replace(base, tls_cert="cert.pem", tls_key="")


def test_unusable_certificate_files_fail_at_start_naming_the_variable(internal_tls: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^INTERNAL_TLS_DIR: the TLS certificate files cannot be read$"):
        internal_server_credentials(str(tmp_path / "empty"))
    other = CertificateAuthority.create().issue(["127.0.0.1"])
    write_material(tmp_path / "mixed", TlsMaterial(cert=internal_tls.read().cert, key=other.key, ca=other.ca))
    with pytest.raises(SettingsError, match=r"^INTERNAL_TLS_DIR: the TLS key does not belong to the certificate$"):
        internal_client(str(tmp_path / "mixed"))


def test_the_development_ca_is_made_once_with_private_keys_and_loopback_names(tmp_path: Path) -> None:
    files = ensure_development_certificates(tmp_path / "tls", tmp_path / "ca.key")
    first = files.read()
    for key in (files.key, tmp_path / "ca.key"):
        assert os.stat(key).st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(first.cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    # Reused on the next start; a missing certificate is issued again by the same CA.
    assert ensure_development_certificates(tmp_path / "tls", tmp_path / "ca.key").read() == first
    files.cert.unlink()
    again = ensure_development_certificates(tmp_path / "tls", tmp_path / "ca.key").read()
    assert again.ca == first.ca and again.cert != first.cert


def test_the_stack_keeps_its_redis_password_private_and_in_its_url(tmp_path: Path) -> None:
    stack = Stack(data_dir=tmp_path, ports=Ports.free(), with_triton=False)
    password = stack.redis_password
    assert os.stat(tmp_path / "redis-password").st_mode & 0o777 == 0o600
    assert urlsplit(stack.redis_url).password == password
    assert Stack(data_dir=tmp_path, ports=stack.ports).redis_password == password  # kept across restarts
