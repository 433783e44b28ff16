"""Shared fixtures: one Redis and one Triton per session, in-process services, the whole stack."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from devstack.launcher import REDIS_DURABILITY, ROOT, Ports, Stack, free_port, redis_server_binary, write_redis_auth
from gateway.server import Gateway, create_server
from gateway.settings import GatewaySettings
from renderkit.edge import Edge
from renderkit.tls import TlsFiles
from services.common.stage import StageSettings
from services.depth.server import create_server as create_depth
from services.generation.server import GenerationSettings
from services.generation.server import create_server as create_generation
from services.projection.server import create_server as create_projection
from services.segmentation.server import create_server as create_segmentation
from tests.gcs_emulator import gcs_emulator, service_account_key  # noqa: F401 (fixtures)
from tests.openai_fake import FakeOpenAI, fake_openai
from tests.outputs import register_storage
from tests.tiny_models import write_tiny_models

T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests carry the marker of their tier's folder (tests/unit, tests/integration, tests/system,
    tests/chaos, tests/browser)."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in ("unit", "integration", "system", "chaos", "browser"):
            item.add_marker(getattr(pytest.mark, tier))


class RedisServer:
    """A real redis-server (the bundled one) on a loopback port, AOF on, requiring a password (as
    every Redis of the stack does; `url` carries it); a test may kill it and start it again on the
    same port and data directory, as a restart would."""

    def __init__(self, data: Path, port: int = 0) -> None:
        self.data = data
        self.port = port or free_port()
        self.password = secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}"

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                str(write_redis_auth(self.data / "auth.conf", self.password)),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data),
                "--appendonly",
                "yes",
                *REDIS_DURABILITY,
                "--save",
                "",
                # Test modules with dispatching gateways each need a database of their own.
                "--databases",
                "64",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, password=self.password)
        try:
            for _ in range(200):
                with contextlib.suppress(redis.ConnectionError, redis.exceptions.BusyLoadingError):
                    client.ping()
                    return
                time.sleep(0.05)
            raise RuntimeError("redis-server did not start")
        finally:
            client.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server (the bundled one) on a free loopback port, AOF on."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny ONNX models with the depth, segmentation, intrinsic and diffusion signatures."""
    directory = tmp_path_factory.mktemp("models")
    write_tiny_models(directory)
    return directory


def _shared_memory_of_group(group: int) -> set[Path]:
    """The /dev/shm files the processes of a process group have mapped."""
    found: set[Path] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            if os.getpgid(int(proc.name)) != group:
                continue
            for line in (proc / "maps").read_text().splitlines():
                path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
                if path.startswith("/dev/shm/"):
                    found.add(Path(path.removesuffix(" (deleted)")))
    return found


class EmbeddedTriton:
    """services.triton_host in its own process group (PyTriton runs tritonserver as a child), so a
    test can kill all of it at once, as a crash would, and start it again on the same ports. With
    `tls_dir` (a directory of ca.crt, tls.crt, tls.key) its gRPC port serves mutual TLS."""

    def __init__(self, models_dir: Path, log_dir: Path, models: tuple[str, ...], tls_dir: Path | None = None) -> None:
        self.models = models
        self.log_path = log_dir / "triton.log"
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.metrics_port = free_port()
        self.tls_dir = tls_dir
        self.env = {
            **os.environ,
            "MODELS_DIR": str(models_dir),
            "TRITON_GRPC_PORT": str(self.grpc_port),
            "TRITON_HTTP_PORT": str(self.http_port),
            "TRITON_METRICS_PORT": str(self.metrics_port),
            "INTERNAL_TLS_DIR": str(tls_dir) if tls_dir is not None else "",
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout_s: float = 90) -> None:
        """Starts it and waits until the models are ready."""
        import tritonclient.grpc as triton_grpc

        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.triton_host"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.tls_dir is not None:
            files = TlsFiles.directory(self.tls_dir)
            client = triton_grpc.InferenceServerClient(
                self.url,
                ssl=True,
                root_certificates=str(files.ca),
                private_key=str(files.key),
                certificate_chain=str(files.cert),
            )
        else:
            client = triton_grpc.InferenceServerClient(self.url)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                with contextlib.suppress(Exception):
                    if all(client.is_model_ready(m) for m in self.models):
                        return
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Triton did not start; see {self.log_path}")
                time.sleep(0.2)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL to the whole process group: Triton dies as in a crash. What a crash would leave
        of it in /dev/shm (PyTriton's shared memory, which only a clean stop unlinks) is removed:
        over many runs it filled this machine's memory until the kernel killed the test run."""
        if self.process is not None and self.process.poll() is None:
            shared = _shared_memory_of_group(self.process.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
            for path in shared:
                with contextlib.suppress(OSError):
                    path.unlink()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(ProcessLookupError):  # anything of it still running
            os.killpg(self.process.pid, signal.SIGKILL)


@contextlib.contextmanager
def embedded_triton(models_dir: Path, log_dir: Path, models: tuple[str, ...]) -> Iterator[str]:
    """Runs services.triton_host over a models directory until the given models are ready."""
    triton = EmbeddedTriton(models_dir, log_dir, models)
    try:
        triton.start()
        yield triton.url
    finally:
        triton.stop()


@pytest.fixture(scope="session")
def triton(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTriton]:
    """The embedded Triton (PyTriton) serving the tiny models; a test may kill and restart it."""
    served = ("depth", "segmentation", "intrinsic", "diffusion")
    server = EmbeddedTriton(models_dir, tmp_path_factory.mktemp("triton"), served)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def triton_url(triton: EmbeddedTriton) -> str:
    return triton.url


class LoopThread:
    """An asyncio loop in a background thread, for in-process async servers driven by sync tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def stage_settings(triton_url: str = "") -> StageSettings:
    return StageSettings(listen="127.0.0.1:0", triton_url=triton_url, grace_seconds=1.0)


@pytest.fixture(scope="session")
def start_stage(loop_thread: LoopThread) -> Iterator[Callable[[Callable[[], Edge]], Edge]]:
    """Starts in-process stage servers on port 0 (created inside the loop) and stops them at the end."""
    started: list[Edge] = []

    def start(factory: Callable[[], Edge]) -> Edge:
        async def create_and_start() -> Edge:
            server = factory()
            await server.start()
            await server.wait_serving(30)
            return server

        server = loop_thread.run(create_and_start())
        started.append(server)
        return server

    yield start
    for server in started:
        loop_thread.run(server.stop(0.5))


@pytest.fixture(scope="session")
def stages(start_stage: Callable[[Callable[[], Edge]], Edge]) -> dict[str, str]:
    """The four stage services in-process without Triton; addresses by name."""
    servers = {
        "segmentation": start_stage(lambda: create_segmentation(stage_settings())),
        "depth": start_stage(lambda: create_depth(stage_settings())),
        "projection": start_stage(lambda: create_projection(stage_settings())),
        "generation": start_stage(
            lambda: create_generation(
                GenerationSettings(
                    stage=stage_settings(),
                    openai_api_key="",
                    openai_base_url="",
                    openai_model="gpt-image-1",
                    openai_timeout_s=5,
                    openai_max_retries=0,
                )
            )
        ),
    }
    return {name: f"127.0.0.1:{server.port}" for name, server in servers.items()}


def gateway_settings(redis_url: str, storage: Path, stages: dict[str, str], **overrides: Any) -> GatewaySettings:
    register_storage(storage)
    base = GatewaySettings.from_env()
    settings = replace(
        base,
        listen="127.0.0.1:0",
        redis_url=redis_url,
        storage_url=str(storage),
        segmentation_addr=stages["segmentation"],
        depth_addr=stages["depth"],
        projection_addr=stages["projection"],
        generation_addr=stages["generation"],
        grace_seconds=1.0,
        # A lease no stall outlasts: all in-process servers share one loop, and a busy CI machine
        # once stalled it past a 2 s lease, so the job was (rightly) run again and a test counting
        # its model calls saw two. Tests of expiry set their own short lease. The lease also sets
        # how long the dispatcher's ledger calls retry while Redis is away, and how often it
        # renews (a third of it) and reaps (a quarter).
        lease_s=30.0,
        http=replace(base.http, listen=""),  # no HTTP port unless a test asks for one
    )
    return replace(settings, **overrides)


@pytest.fixture(scope="session")
def start_gateway(loop_thread: LoopThread) -> Iterator[Callable[[GatewaySettings], Gateway]]:
    """Starts in-process gateways (with their dispatchers) and stops them at the end."""
    with _gateways(loop_thread) as start:
        yield start


@contextlib.contextmanager
def _gateways(loop_thread: LoopThread) -> Iterator[Callable[[GatewaySettings], Gateway]]:
    """A function that starts in-process gateways (serving when it returns); they stop on exit,
    the newest first."""
    started: list[Gateway] = []

    def start(settings: GatewaySettings) -> Gateway:
        async def create_and_start() -> Gateway:
            gateway = create_server(settings)
            await gateway.start()
            await gateway.edge.wait_serving(30)
            return gateway

        gateway = loop_thread.run(create_and_start())
        started.append(gateway)
        return gateway

    try:
        yield start
    finally:
        for gateway in reversed(started):
            loop_thread.run(gateway.stop(0.5))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, started (the test may kill and restart it)."""
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_own_gateway(
    own_redis: RedisServer, loop_thread: LoopThread
) -> Iterator[Callable[[GatewaySettings], Gateway]]:
    """Starts in-process gateways on the test's own Redis and stops them when the test ends, while
    that Redis still runs (a gateway stopped after it would wait out its retries first)."""
    with _gateways(loop_thread) as start:
        yield start


@pytest.fixture(scope="session")
def gateway(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    """A gateway in-process over real Redis and real gRPC stages; private URLs refused (the default)."""
    return start_gateway(gateway_settings(redis_url, tmp_path_factory.mktemp("storage"), stages))


@pytest.fixture(scope="session")
def gateway_address(gateway: Gateway) -> str:
    return f"127.0.0.1:{gateway.port}"


@pytest.fixture(scope="session")
def openai_server() -> Iterator[FakeOpenAI]:
    """A local server speaking the OpenAI images API."""
    with fake_openai() as server:
        yield server


@pytest.fixture(scope="session")
def generation_openai() -> Iterator[FakeOpenAI]:
    """The local OpenAI images server behind the in-process generation stage."""
    with fake_openai() as server:
        yield server


def generation_settings(
    openai: FakeOpenAI | None, triton_url: str = "", providers: tuple[str, ...] = ("openai",)
) -> GenerationSettings:
    return GenerationSettings(
        stage=stage_settings(triton_url),
        openai_api_key="sk-test" if openai else "",
        openai_base_url=openai.base_url if openai else "",
        openai_model="gpt-image-1",
        openai_timeout_s=10,
        openai_max_retries=2,
        providers=providers,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
    )


@pytest.fixture(scope="session")
def generation_gateway_address(
    redis_url: str,
    stages: dict[str, str],
    generation_openai: FakeOpenAI,
    start_stage: Callable[[Callable[[], Edge]], Edge],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """A gateway whose generation stage talks to the local OpenAI images server, over its own Redis
    database (so no other gateway's dispatcher takes its jobs)."""
    generation = start_stage(lambda: create_generation(generation_settings(generation_openai)))
    with_provider = {**stages, "generation": f"127.0.0.1:{generation.port}"}
    redis.Redis.from_url(redis_url + "/8").flushdb()
    storage = tmp_path_factory.mktemp("gen-storage")
    gateway = start_gateway(gateway_settings(redis_url + "/8", storage, with_provider))
    return f"127.0.0.1:{gateway.port}"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, openai_server: FakeOpenAI) -> Iterator[Stack]:
    """The whole embedded stack as separate processes (what `make run` starts), private URLs allowed,
    generation pointed at the local OpenAI images server."""
    data = tmp_path_factory.mktemp("stack")
    env = {
        "ALLOW_PRIVATE_URLS": "true",
        "JOB_LEASE_SECONDS": "3",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_MAX_RETRIES": "0",
    }
    with Stack(data_dir=data, ports=Ports.free(), models_dir=data / "no-models", env=env) as running:
        register_storage(running.storage_dir)
        yield running
