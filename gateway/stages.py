"""Clients of the four stage services: channels that balance over a stage's replicas, reconnect
quickly after a restart, and retry a refused call at once (the job's own retry, bounded by its
budget, waits out longer outages: gateway/context.py)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import grpc

from render.depth.v1 import depth_service_pb2_grpc
from render.generation.v1 import generation_service_pb2_grpc
from render.projection.v1 import projection_service_pb2_grpc
from render.segmentation.v1 import segmentation_service_pb2_grpc
from renderkit.serving import CHANNEL_OPTIONS

# Model-free stage calls are pure functions of their request, so retrying UNAVAILABLE is safe.
# Generation calls cost money and the generation service runs its own retry and failover rules, so
# the channel never repeats them, and they wait for the channel to be ready, so nothing is sent to
# a stage that is not there (the more specific service entry wins over the default one).
_SERVICE_CONFIG = json.dumps(
    {
        # A stage address that resolves to several replicas (a Kubernetes headless service) spreads
        # calls over all of them, and a call retried after one replica died goes to another.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {"name": [{"service": "render.generation.v1.GenerationService"}], "waitForReady": True},
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            },
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


def stage_channel(address: str) -> grpc.aio.Channel:
    """An insecure channel to a stage with the pipeline's message limits and retry policy."""
    return grpc.aio.insecure_channel(
        address,
        options=[
            *CHANNEL_OPTIONS,
            *_RECONNECT_OPTIONS,
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
        ],
    )


@dataclass
class StageClients:
    """Stubs of every stage service."""

    segmentation: segmentation_service_pb2_grpc.SegmentationServiceStub
    depth: depth_service_pb2_grpc.DepthServiceStub
    projection: projection_service_pb2_grpc.ProjectionServiceStub
    generation: generation_service_pb2_grpc.GenerationServiceStub
    channels: list[grpc.aio.Channel]

    @classmethod
    def connect(cls, segmentation: str, depth: str, projection: str, generation: str) -> StageClients:
        channels = [stage_channel(a) for a in (segmentation, depth, projection, generation)]
        return cls(
            segmentation=segmentation_service_pb2_grpc.SegmentationServiceStub(channels[0]),
            depth=depth_service_pb2_grpc.DepthServiceStub(channels[1]),
            projection=projection_service_pb2_grpc.ProjectionServiceStub(channels[2]),
            generation=generation_service_pb2_grpc.GenerationServiceStub(channels[3]),
            channels=channels,
        )

    async def wait_ready(self, stage: str, timeout_s: float) -> bool:
        """Waits until a stage's channel is connected (False when it is not within the timeout)."""
        channel = self.channels[("segmentation", "depth", "projection", "generation").index(stage)]
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Closes every channel."""
        for channel in self.channels:
            await channel.close()
