"""GenerationService: OpenAI images when OPENAI_API_KEY is set; otherwise it says it cannot refine."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
import openai

from render.generation.v1 import generation_service_pb2 as pb
from render.generation.v1 import generation_service_pb2_grpc as pb_grpc
from renderkit import imaging
from renderkit.errors import abort, error_info
from renderkit.settings import env_float, env_int, env_str
from services.common.stage import StageServer, StageSettings, build_server
from services.generation.openai_images import ContentPolicyError, ProviderError, refine_with_openai

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GenerationService"].full_name
DEFAULT_PROMPT = (
    "Blend the new floor material naturally into the room's lighting. Keep the material's "
    "pattern, colour and scale exactly as they are."
)


@dataclass(frozen=True)
class GenerationSettings:
    """What the generation stage reads from the environment."""

    stage: StageSettings
    openai_api_key: str
    openai_base_url: str
    openai_model: str
    openai_timeout_s: float
    openai_max_retries: int

    @classmethod
    def from_env(cls) -> GenerationSettings:
        return cls(
            stage=StageSettings.from_env("GENERATION", 50064),
            openai_api_key=env_str("OPENAI_API_KEY", ""),
            openai_base_url=env_str("OPENAI_BASE_URL", ""),
            openai_model=env_str("OPENAI_IMAGE_MODEL", "gpt-image-1"),
            openai_timeout_s=env_float("OPENAI_TIMEOUT_SECONDS", 120.0, minimum=1.0),
            openai_max_retries=env_int("OPENAI_MAX_RETRIES", 2, minimum=0),
        )


class GenerationServicer(pb_grpc.GenerationServiceServicer):
    """Refines composites with an image model."""

    def __init__(self, settings: GenerationSettings) -> None:
        self.settings = settings
        self.client = (
            openai.OpenAI(
                api_key=settings.openai_api_key,
                base_url=settings.openai_base_url or None,
                timeout=settings.openai_timeout_s,
                max_retries=settings.openai_max_retries,
            )
            if settings.openai_api_key
            else None
        )

    def _capabilities(self) -> pb.GetCapabilitiesResponse:
        if self.client is None:
            return pb.GetCapabilitiesResponse(
                refine_available=False, unavailable_reason="no image provider is configured (OPENAI_API_KEY)"
            )
        return pb.GetCapabilitiesResponse(refine_available=True, provider="openai", model=self.settings.openai_model)

    async def GetCapabilities(
        self,
        request: pb.GetCapabilitiesRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.GetCapabilitiesResponse:
        return self._capabilities()

    async def Refine(
        self,
        request: pb.RefineRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.RefineResponse:
        if self.client is None:
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "refinement is unavailable: no image provider is configured",
                error_info("PROVIDER_UNAVAILABLE"),
            )
        try:
            image = await asyncio.to_thread(imaging.decode_bgr, request.image)
            mask = await asyncio.to_thread(imaging.decode_gray, request.mask_png)
        except imaging.ImageError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        prompt = request.prompt or DEFAULT_PROMPT
        assert self.client is not None
        try:
            result = await asyncio.to_thread(
                refine_with_openai, self.client, self.settings.openai_model, image, mask, prompt
            )
        except ContentPolicyError as exc:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc), error_info("CONTENT_POLICY"))
        except ProviderError as exc:
            await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc), error_info("PROVIDER_UNAVAILABLE"))
        images = await asyncio.to_thread(imaging.encode_renditions, result.image, request.output)
        return pb.RefineResponse(images=images, provider="openai", model=result.model)


def create_server(settings: GenerationSettings) -> StageServer:
    """A generation server bound to settings.stage.listen (port 0 picks a free port)."""

    return build_server(
        settings.stage,
        [SERVICE_NAME],
        lambda s: pb_grpc.add_GenerationServiceServicer_to_server(GenerationServicer(settings), s),
    )
