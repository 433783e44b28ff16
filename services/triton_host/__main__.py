"""Runs the embedded Triton server until SIGTERM.

For every model of deploy/triton/model_repository whose weights exist as
MODELS_DIR/<name>/1/model.onnx, PyTriton binds an onnxruntime session under the model's name
and tensor contract (MODELS_DIR/<name>/config.pbtxt when `make models` wrote one), so clients
cannot tell it from `tritonserver` serving the same repository.

Its gRPC port is the one the stages use: with INTERNAL_TLS_DIR it takes only clients with a
certificate of that directory's CA (mutual TLS). Its HTTP port serves PyTriton itself (it loads
the models through it): every API there needs this process's access token. Both it and the
metrics port listen on loopback only.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.constants import PYTRITON_HOME
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

from renderkit.settings import env_int, env_str
from renderkit.telemetry import configure_logging
from renderkit.tls import TlsFiles
from renderkit.triton import REPOSITORY, read_config

log = logging.getLogger("triton_host")

# Triton's HTTP endpoint is there for PyTriton alone: it controls its server over HTTP (with HTTP
# off it would need the gRPC port, which takes only clients with a certificate, and PyTriton's own
# client has none). Every API there but health (PyTriton waits for readiness without the token;
# health tells only live or ready) asks for the token only this process and PyTriton hold.
HTTP_RESTRICTED = (
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)
# On gRPC, statistics stay readable (monitoring, and tests proving inference went through Triton);
# the endpoints that change the server (shared memory, repository, trace, logging) keep the token.
GRPC_RESTRICTED = ("shared-memory", "model-repository", "trace", "logging")
ACCESS_HEADER = "triton-access-token"
LOOPBACK = "127.0.0.1"

_NUMPY_TYPES = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8}


@dataclass(frozen=True)
class HostSettings:
    """What the embedded Triton reads from the environment."""

    models_dir: Path
    repository: Path
    grpc_port: int
    http_port: int
    metrics_port: int
    threads: int
    internal_tls_dir: str = ""  # empty: plaintext gRPC (tests, development without TLS)

    @classmethod
    def from_env(cls) -> HostSettings:
        return cls(
            models_dir=Path(env_str("MODELS_DIR", "models")),
            repository=Path(env_str("TRITON_MODEL_REPOSITORY", str(REPOSITORY))),
            grpc_port=env_int("TRITON_GRPC_PORT", 8001, minimum=1),
            http_port=env_int("TRITON_HTTP_PORT", 8000, minimum=1),
            metrics_port=env_int("TRITON_METRICS_PORT", 8002, minimum=1),
            threads=env_int("TRITON_ORT_THREADS", 2, minimum=1),
            internal_tls_dir=env_str("INTERNAL_TLS_DIR", ""),
        )


def make_infer_function(session: ort.InferenceSession, input_names: list[str], output_names: list[str]):  # type: ignore[no-untyped-def]
    """A PyTriton batch function that runs an onnxruntime session."""

    @batch  # type: ignore[misc, untyped-decorator]
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {name: inputs[name] for name in input_names}
        results = session.run(output_names, feeds)
        return dict(zip(output_names, results, strict=True))

    return infer


def bind_models(triton: Triton, settings: HostSettings) -> list[str]:
    """Binds every model that has both a config and ONNX weights; returns their names."""
    bound = []
    for config_path in sorted(settings.repository.glob("*/config.pbtxt")):
        # `make models` writes each model's own config beside its weights (a metric depth model
        # declares another output): that one wins over the repository's.
        installed = settings.models_dir / config_path.parent.name / "config.pbtxt"
        config = read_config(installed if installed.exists() else config_path)
        weights = settings.models_dir / config.name / "1" / "model.onnx"
        if not weights.exists():
            log.info("model %s: no weights at %s, not served", config.name, weights)
            continue
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.threads
        session = ort.InferenceSession(str(weights), options, providers=["CPUExecutionProvider"])

        def tensors(specs) -> list[Tensor]:  # type: ignore[no-untyped-def]
            from renderkit.triton import datatype_name

            return [
                Tensor(name=s.name, dtype=_NUMPY_TYPES[datatype_name(s.data_type)], shape=tuple(s.dims)) for s in specs
            ]

        triton.bind(
            model_name=config.name,
            infer_func=make_infer_function(session, [i.name for i in config.input], [o.name for o in config.output]),
            inputs=tensors(config.input),
            outputs=tensors(config.output),
            config=ModelConfig(
                max_batch_size=config.max_batch_size,
                batcher=DynamicBatcher(
                    max_queue_delay_microseconds=config.dynamic_batching.max_queue_delay_microseconds
                ),
            ),
            strict=True,
        )
        bound.append(config.name)
        log.info("model %s: serving %s", config.name, weights)
    return bound


def triton_config(settings: HostSettings, access_token: str) -> TritonConfig:
    """The server's configuration: every port on loopback, every HTTP API but health behind the
    token, and gRPC with mutual TLS when INTERNAL_TLS_DIR is set (tritonserver reads the files once,
    at start: a rotated certificate takes a restart)."""
    files = TlsFiles.directory(settings.internal_tls_dir) if settings.internal_tls_dir else None
    if files is not None:
        files.read()  # fails here, with a clear message, rather than inside tritonserver
    return TritonConfig(
        grpc_address=LOOPBACK,
        grpc_port=settings.grpc_port,
        http_address=LOOPBACK,
        http_port=settings.http_port,
        metrics_address=LOOPBACK,
        metrics_port=settings.metrics_port,
        http_restricted_api=f"{','.join(HTTP_RESTRICTED)}:{ACCESS_HEADER}={access_token}",
        grpc_restricted_protocol=f"{','.join(GRPC_RESTRICTED)}:{ACCESS_HEADER}={access_token}",
        # None leaves a flag out: plaintext gRPC without INTERNAL_TLS_DIR.
        grpc_use_ssl=files is not None or None,
        grpc_use_ssl_mutual=files is not None or None,
        grpc_server_cert=files.cert if files else None,
        grpc_server_key=files.key if files else None,
        grpc_root_cert=files.ca if files else None,
        log_verbose=0,
    )


def workspace_for(grpc_port: int, home: Path = PYTRITON_HOME) -> Path:
    """PyTriton's workspace for a host on this port (its sockets, its tritonserver's files: ~22 MB):
    one path per port, removed first when a host killed before it could clean up left it (each
    SIGKILLed host, as the tests' and `make run`'s restarts, left one behind: 3.7 GB here)."""
    path = home / f"render-triton-{grpc_port}"
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    return path


def main() -> None:
    configure_logging("triton")
    settings = HostSettings.from_env()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # PyTriton sends the token on its own calls; with no endpoints listed here it leaves the
    # restrictions to the configuration above (it would otherwise give HTTP and gRPC one list).
    access_token = secrets.token_urlsafe(32)
    security = TritonSecurityConfig(access_token=access_token, restricted_endpoints=[])
    workspace = workspace_for(settings.grpc_port)
    with Triton(config=triton_config(settings, access_token), workspace=workspace, security_config=security) as triton:
        models = bind_models(triton, settings)
        triton.run()
        mode = "mutual TLS" if settings.internal_tls_dir else "plaintext"
        log.info("ready on %s:%d (%s) with models %s", LOOPBACK, settings.grpc_port, mode, models or "(none)")
        stop.wait()
        log.info("stopping")


if __name__ == "__main__":
    main()
