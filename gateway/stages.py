"""Clients of the four stage services: channels that balance over a stage's replicas, reconnect
quickly after a restart, and retry a refused call at once (the job's own retry, bounded by its
budget, waits out longer outages: gateway/context.py). With INTERNAL_TLS_DIR every channel is
mutual TLS, and new channels replace them when the certificate files change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc

from render.depth.v1 import depth_service_pb2_grpc
from render.generation.v1 import generation_service_pb2_grpc
from render.projection.v1 import projection_service_pb2_grpc
from render.segmentation.v1 import segmentation_service_pb2_grpc
from renderkit import telemetry
from renderkit.serving import CHANNEL_OPTIONS
from renderkit.tls import ClientCertificates

log = logging.getLogger(__name__)
STAGES = ("segmentation", "depth", "projection", "generation")
# How often the certificate files are looked at, and how long a channel replaced after a rotation
# keeps its calls in flight before it is closed (longer than any stage call's deadline).
RELOAD_INTERVAL_S = 10.0
RETIRED_CHANNEL_GRACE_S = 600.0

# Generation calls cost money and the generation service runs its own retry and failover rules;
# they wait for the channel to be ready, so nothing is sent to a stage that is not there. The
# channel repeats no call itself: the job repeats an unavailable model-free call (a pure function of
# its request), counting the times the stage stopped while it worked on it (gateway.context).
_SERVICE_CONFIG = json.dumps(
    {
        # A stage address that resolves to several replicas (a Kubernetes headless service) spreads
        # calls over all of them, and a call repeated after one replica died goes to another.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {"name": [{"service": "render.generation.v1.GenerationService"}], "waitForReady": True},
        ],
    }
)


# gRPC's reconnect backoff grows to 120 s by default: a stage that restarted would wait minutes for
# the channel to try it again. Capped at 2 s, a restart costs the job about the restart.
_RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def stage_channel(address: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.aio.Channel:
    """A channel to a stage with the pipeline's message limits and retry policy: mutual TLS with
    `credentials` (the stage's certificate must name the address's host), else plaintext."""
    options = [
        *CHANNEL_OPTIONS,
        *_RECONNECT_OPTIONS,
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
    ]
    interceptors = telemetry.client_interceptors()
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)


@dataclass
class StageClients:
    """Stubs of every stage service. Callers read a stub at each call (`stages.depth.EstimatePlane`),
    so a rotation that swaps the stubs sends every later call over the new channels."""

    segmentation: segmentation_service_pb2_grpc.SegmentationServiceStub
    depth: depth_service_pb2_grpc.DepthServiceStub
    projection: projection_service_pb2_grpc.ProjectionServiceStub
    generation: generation_service_pb2_grpc.GenerationServiceStub
    channels: list[grpc.aio.Channel]
    addresses: tuple[str, ...] = ()
    tls: ClientCertificates | None = None
    reload_interval_s: float = RELOAD_INTERVAL_S
    _retired: list[grpc.aio.Channel] = field(default_factory=list, init=False, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)
    _quarantines: dict[str, asyncio.Lock] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def connect(
        cls,
        segmentation: str,
        depth: str,
        projection: str,
        generation: str,
        *,
        tls: ClientCertificates | None = None,
        reload_interval_s: float = RELOAD_INTERVAL_S,
    ) -> StageClients:
        """Channels to the four stages; with `tls`, mutual TLS with that identity."""
        addresses = (segmentation, depth, projection, generation)
        credentials = tls.credentials() if tls is not None else None
        channels = [stage_channel(a, credentials) for a in addresses]
        segmentation_stub, depth_stub, projection_stub, generation_stub = _stubs(channels)
        return cls(
            segmentation=segmentation_stub,
            depth=depth_stub,
            projection=projection_stub,
            generation=generation_stub,
            channels=channels,
            addresses=addresses,
            tls=tls,
            reload_interval_s=reload_interval_s,
        )

    def start(self) -> None:
        """Starts following the certificate files (with TLS; nothing to do without)."""
        if self.tls is not None:
            self._keep(self._follow_certificates())

    async def _follow_certificates(self) -> None:
        assert self.tls is not None
        while True:
            await asyncio.sleep(self.reload_interval_s)
            if self.tls.reload_if_changed():
                self.rotate()

    def rotate(self) -> None:
        """New channels with the current certificates; calls in flight finish on the old ones,
        which are closed once they have (or after RETIRED_CHANNEL_GRACE_S)."""
        credentials = self.tls.credentials() if self.tls is not None else None
        old, channels = self.channels, [stage_channel(a, credentials) for a in self.addresses]
        self.segmentation, self.depth, self.projection, self.generation = _stubs(channels)
        self.channels = channels
        self._retired += old
        log.info("stage channels renewed with the rotated certificates")

        async def close_old() -> None:
            for channel in old:
                await channel.close(RETIRED_CHANNEL_GRACE_S)
                self._retired.remove(channel)

        self._keep(close_old())

    def _keep(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def quarantine(self, stage: str) -> asyncio.Lock:
        """The lock a call the stage stopped under holds while it is sent again, so that such calls
        go one at a time and a stop under one of them is that call's own (gateway.context)."""
        return self._quarantines.setdefault(stage, asyncio.Lock())

    def connected(self, stage: str) -> bool:
        """Whether a stage's channel is connected now (a call sent now reaches a stage process)."""
        return self.channels[STAGES.index(stage)].get_state(try_to_connect=False) == grpc.ChannelConnectivity.READY

    async def wait_ready(self, stage: str, timeout_s: float) -> bool:
        """Waits until a stage's channel is connected (False when it is not within the timeout)."""
        channel = self.channels[STAGES.index(stage)]
        if channel.get_state(try_to_connect=False) == grpc.ChannelConnectivity.READY:
            return True  # connected (every generation call asks): no task and timer to wait on
        try:
            async with asyncio.timeout(timeout_s):  # not wait_for: Python 3.11's can swallow a cancel
                await channel.channel_ready()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Closes every channel (and stops following the certificate files)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in [*self._retired, *self.channels]:
            with contextlib.suppress(Exception):
                await channel.close()
        self._retired.clear()


def _stubs(
    channels: list[grpc.aio.Channel],
) -> tuple[
    segmentation_service_pb2_grpc.SegmentationServiceStub,
    depth_service_pb2_grpc.DepthServiceStub,
    projection_service_pb2_grpc.ProjectionServiceStub,
    generation_service_pb2_grpc.GenerationServiceStub,
]:
    return (
        segmentation_service_pb2_grpc.SegmentationServiceStub(channels[0]),
        depth_service_pb2_grpc.DepthServiceStub(channels[1]),
        projection_service_pb2_grpc.ProjectionServiceStub(channels[2]),
        generation_service_pb2_grpc.GenerationServiceStub(channels[3]),
    )
