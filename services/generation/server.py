"""GenerationService: image providers in failover order (OpenAI images, the diffusion model on Triton)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import grpc
import numpy as np
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from opentelemetry import metrics

from render.generation.v1 import generation_service_pb2 as pb
from render.generation.v1 import generation_service_pb2_grpc as pb_grpc
from render.imaging.v1 import imaging_pb2
from renderkit import budget as memory
from renderkit import imaging
from renderkit.edge import Dependency, Edge
from renderkit.errors import abort, bad_request, error_info
from renderkit.material_maps import material_map_images
from renderkit.settings import SettingsError, env_bool, env_float, env_int, env_str
from renderkit.triton import TritonModels
from services.common.admission import MemoryGate, report
from services.common.stage import StageSettings, stage_edge, triton_dependency, triton_for
from services.generation.drift import Drift, measure_drift
from services.generation.generator import (
    Attempt,
    BudgetExceeded,
    GenerationError,
    Generator,
    Outcome,
    Unavailable,
    over_budget,
)
from services.generation.openai_images import DEFAULT_IMAGE_MODEL, OpenAIProvider, task_size
from services.generation.providers import Cost, ImageTask, PriceTable, Provider
from services.generation.quality import edit_problem, quality_problem
from services.generation.reliability import CircuitBreaker, RetryPolicy
from services.generation.triton_diffusion import TritonDiffusionProvider

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GenerationService"].full_name
# The longest side a generated image may be asked at: twice the gateway's largest size (1792 px).
# The diffusion provider resizes its output to the size asked (a 40,000 px square is 4.8 GB).
MAX_GENERATED_SIDE = 4096
# The most reference images a generation may carry (OpenAI's edit endpoint takes at most 16; the
# gateway sends one a surface).
MAX_REFERENCE_IMAGES = 16
DEFAULT_REFINE_PROMPT = (
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
    openai_max_retries: int  # rate-limit retries per provider before failing over
    providers: tuple[str, ...] = ("openai", "triton")
    diffusion_model: str = "diffusion"
    breaker_threshold: int = 5
    breaker_open_s: float = 60.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    quality_retries: int = 1
    max_color_drift: float = 12.0
    min_texture_similarity: float = 0.5
    price_table: str = ""
    allow_private_urls: bool = False  # whether a provider's image URL may be on a private address

    @classmethod
    def from_env(cls) -> GenerationSettings:
        return cls(
            stage=StageSettings.from_env("GENERATION", 50064),
            openai_api_key=env_str("OPENAI_API_KEY", ""),
            openai_base_url=env_str("OPENAI_BASE_URL", ""),
            openai_model=env_str("OPENAI_IMAGE_MODEL", DEFAULT_IMAGE_MODEL),
            openai_timeout_s=env_float("OPENAI_TIMEOUT_SECONDS", 120.0, minimum=1.0),
            openai_max_retries=env_int("OPENAI_MAX_RETRIES", 3, minimum=0),
            providers=_providers(),
            diffusion_model=env_str("DIFFUSION_MODEL", "diffusion"),
            breaker_threshold=env_int("CIRCUIT_BREAKER_THRESHOLD", 5, minimum=1),
            breaker_open_s=env_float("CIRCUIT_BREAKER_OPEN_SECONDS", 60.0, minimum=0.0),
            backoff_base_s=env_float("RATE_LIMIT_BACKOFF_SECONDS", 1.0, minimum=0.0),
            backoff_max_s=env_float("RATE_LIMIT_BACKOFF_MAX_SECONDS", 30.0, minimum=0.0),
            quality_retries=env_int("QUALITY_CHECK_RETRIES", 1, minimum=0),
            max_color_drift=env_float("REFINEMENT_MAX_COLOR_DRIFT", 12.0, minimum=0.0),
            min_texture_similarity=env_float("REFINEMENT_MIN_TEXTURE_SIMILARITY", 0.5, minimum=-1.0),
            price_table=env_str("GENERATION_PRICE_TABLE", ""),
            allow_private_urls=env_bool("ALLOW_PRIVATE_URLS", False),
        )


def build_generator(
    settings: GenerationSettings, triton: TritonModels | None, prices: PriceTable, meter: metrics.Meter | None = None
) -> Generator:
    """The providers named in settings.providers that are configured here, in that order."""
    providers: list[Provider] = []
    for name in settings.providers:
        if name == "openai" and settings.openai_api_key:
            openai_provider = OpenAIProvider(
                settings.openai_api_key,
                base_url=settings.openai_base_url,
                model=settings.openai_model,
                prices=prices,
                allow_private_urls=settings.allow_private_urls,
            )
            providers.append(openai_provider)
        elif name == "triton" and triton is not None:
            providers.append(TritonDiffusionProvider(triton, model=settings.diffusion_model, prices=prices))
    meter = meter or metrics.get_meter(__name__)
    calls = meter.create_counter("render.generation.provider.calls", description="Provider attempts by outcome")
    generator = Generator(
        providers,
        policy=RetryPolicy(
            rate_limit_retries=settings.openai_max_retries,
            backoff_base_s=settings.backoff_base_s,
            backoff_max_s=settings.backoff_max_s,
            quality_retries=settings.quality_retries,
        ),
        breaker=lambda: CircuitBreaker(settings.breaker_threshold, settings.breaker_open_s),
        call_timeout_s=settings.openai_timeout_s,
        on_event=lambda provider, outcome: calls.add(1, {"provider": provider, "outcome": outcome}),
    )
    levels = {"closed": 0, "half_open": 1, "open": 2}

    def breaker_states(_options: metrics.CallbackOptions) -> list[metrics.Observation]:
        return [metrics.Observation(levels[b.state], {"provider": n}) for n, b in generator.breakers.items()]

    meter.create_observable_gauge(
        "render.generation.breaker.state", [breaker_states], description="0 closed, 1 half-open, 2 open"
    )
    return generator


def _cost(cost: Cost) -> pb.Cost:
    return pb.Cost(tokens=cost.tokens, cents=cost.cents)


def _call(outcome: Outcome, prompt: str, dry_run: bool = False) -> pb.ProviderCall:
    return pb.ProviderCall(
        provider=outcome.provider,
        model=outcome.model,
        prompt=prompt,
        revised_prompt=outcome.revised_prompt,
        cost=_cost(outcome.cost),
        estimated_cost=_cost(outcome.estimate),
        attempts=[_attempt(a) for a in outcome.attempts],
        dry_run=dry_run,
    )


def _attempt(attempt: Attempt) -> pb.Attempt:
    return pb.Attempt(provider=attempt.provider, outcome=attempt.outcome, detail=attempt.detail)


def provider_health_name(provider: str) -> str:
    """The health-check service name that reports one provider's breaker (NOT_SERVING while open)."""
    return f"{SERVICE_NAME}/{provider}"


class GenerationServicer(pb_grpc.GenerationServiceServicer):
    """Generates, edits and refines images through the generator."""

    def __init__(
        self, settings: GenerationSettings, generator: Generator, prices: PriceTable, gate: MemoryGate | None = None
    ) -> None:
        self.settings = settings
        self.prices = prices
        self.generator = generator
        self.health: HealthServicer | None = None
        # The work on an answer at the image's size (blend, drift, encodings, maps: tens of bytes a
        # pixel) is admitted by memory, as the segmentation's and projection's are: each request
        # fits REQUEST_MEMORY_MB, but several edits finishing at once did not fit the pod.
        self.gate = gate or MemoryGate(None)

    async def availability(self, provider: Provider) -> str:
        """Why a provider cannot be called now ("" when it can): its model (Triton) must be loaded
        and its breaker must let a call through (not open, and half-open with its trial free)."""
        breaker = self.generator.breakers[provider.name]
        if breaker.state == "open":
            return "its circuit breaker is open after repeated failures"
        if not breaker.accepting:
            return "its circuit breaker is half-open and its one trial call is under way"
        if not await provider.ready():
            return "its model is not loaded" if provider.name == "triton" else "it is not ready"
        return ""

    async def _publish_health(self) -> None:
        """Publishes every provider's availability at once (the probe loop repeats it every second)."""
        if self.health is None:
            return
        for provider in self.generator.providers:
            serving = not await self.availability(provider)
            status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
            await self.health.set(provider_health_name(provider.name), status)

    async def _capabilities(self) -> pb.GetCapabilitiesResponse:
        statuses = []
        for provider in self.generator.providers:
            breaker = self.generator.breakers[provider.name]
            reason = await self.availability(provider)
            statuses.append(
                pb.ProviderStatus(
                    name=provider.name,
                    model=provider.model,
                    can_edit=provider.can_edit,
                    breaker_state=str(breaker.state),
                    consecutive_failures=breaker.consecutive_failures,
                    calls_total=breaker.calls_total,
                    failures_total=breaker.failures_total,
                    breaker_opened_total=breaker.opened_total,
                    available=not reason,
                    unavailable_reason=reason,
                )
            )
        if not statuses:
            return pb.GetCapabilitiesResponse(
                refine_available=False,
                unavailable_reason="no image provider is configured (set OPENAI_API_KEY, or serve the diffusion model)",
            )
        usable = [status for status in statuses if status.available]
        if not usable:
            return pb.GetCapabilitiesResponse(
                refine_available=False,
                unavailable_reason="no configured image provider can be called now",
                providers=statuses,
            )
        return pb.GetCapabilitiesResponse(
            refine_available=any(status.can_edit for status in usable),
            provider=usable[0].name,
            model=usable[0].model,
            providers=statuses,
        )

    async def GetCapabilities(
        self,
        request: pb.GetCapabilitiesRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.GetCapabilitiesResponse:
        await self._publish_health()
        return await self._capabilities()

    async def _fail(self, context: grpc.aio.ServicerContext, exc: GenerationError) -> None:  # type: ignore[type-arg]
        await self._publish_health()
        code = {
            "CONTENT_POLICY": grpc.StatusCode.FAILED_PRECONDITION,
            "BUDGET_EXCEEDED": grpc.StatusCode.FAILED_PRECONDITION,
            "QUALITY_CHECK_FAILED": grpc.StatusCode.ABORTED,
        }.get(exc.reason, grpc.StatusCode.UNAVAILABLE)
        await abort(context, code, exc.message, error_info(exc.reason, spent_cents=f"{exc.cost.cents:.4f}"))

    async def _run(
        self,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        task: ImageTask,
        budget: pb.Budget,
        dry_run: bool,
        check: Callable[[np.ndarray], str | None] = quality_problem,
    ) -> Outcome:
        allowance = Cost(budget.max_tokens, budget.max_cents)
        if not self.generator.providers and not dry_run:
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "image generation is unavailable: no image provider is configured",
                error_info("PROVIDER_UNAVAILABLE"),
            )
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining - 0.5 if remaining is not None else None
        try:
            if dry_run:
                try:
                    return await self.generator.dry_run(task, allowance)
                except Unavailable:  # nothing configured or serving: priced as it would be
                    return self._unconfigured_estimate(task, allowance)
            outcome = await self.generator.run(task, allowance, deadline=deadline, check=check)
        except GenerationError as exc:
            await self._fail(context, exc)
            raise  # unreachable: abort raises
        await self._publish_health()
        return outcome

    def _unconfigured_estimate(self, task: ImageTask, budget: Cost) -> Outcome:
        """A dry run with no provider configured: priced as the first provider of the failover order
        would price it, so clients can see prompts and costs before a key is set."""
        name = self.settings.providers[0] if self.settings.providers else "openai"
        if name == "triton":
            model, size = self.settings.diffusion_model, "*"
        else:
            model = self.settings.openai_model
            width, height = task_size(task, model)  # an edit's by its image's shape, as the provider's
            size = f"{width}x{height}"
        estimate = self.prices.estimate(name, model, task, size)
        if not estimate.within(budget):
            raise BudgetExceeded(over_budget(estimate, budget))
        return Outcome(provider=name, model=model, image=None, estimate=estimate)

    async def _decode(self, context: grpc.aio.ServicerContext, data: bytes, what: str) -> np.ndarray:  # type: ignore[type-arg]
        try:
            return await asyncio.to_thread(imaging.decode_bgr, data)
        except imaging.ImageError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{what}: {exc}")
            raise

    async def _mask(self, context: grpc.aio.ServicerContext, data: bytes, shape: tuple[int, ...]) -> np.ndarray:  # type: ignore[type-arg]
        if not data:
            return np.full(shape[:2], 255, np.uint8)
        try:
            mask = await asyncio.to_thread(imaging.decode_gray, data)
        except imaging.ImageError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"mask: {exc}")
            raise
        if mask.shape != shape[:2]:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "mask: must be the image's size")
        return mask

    async def _check_output(self, context: grpc.aio.ServicerContext, output: imaging_pb2.OutputSpec) -> None:  # type: ignore[type-arg]
        """Refuses an output spec that cannot be met before the provider is paid (its sizes are
        known only once the image is back)."""
        problem = imaging.output_problem(output)
        if problem is not None:
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"{problem[0]}: {problem[1]}", bad_request([problem])
            )

    async def Generate(
        self,
        request: pb.GenerateRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.GenerateResponse:
        await self._check_output(context, request.output)
        # Before any pixel is decoded or any provider called: a size no provider makes failed in the
        # provider (counted against its breaker, so a few such calls opened it for every caller),
        # and references were decoded whatever their number and size.
        budget = self.settings.stage.memory_budget_bytes
        # Off the event loop only when there are references to probe (a probe walks the whole file):
        # without any the check is a few comparisons, and a thread's hop would cost ~100 us.
        if request.reference_images:
            problem = await asyncio.to_thread(generate_problem, request, budget)
        else:
            problem = generate_problem(request, budget)
        if problem is not None:
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"{problem[0]}: {problem[1]}", bad_request([problem])
            )
        references = [await self._decode(context, data, "reference_images") for data in request.reference_images]
        task = ImageTask(
            kind="generate",
            prompt=request.prompt,
            width=request.width or 1024,
            height=request.height or 1024,
            quality=request.quality or "hd",
            seed=request.seed,
            references=tuple(references),
        )
        outcome = await self._run(
            context, task, request.budget, request.dry_run, lambda output: quality_problem(output, references)
        )
        if outcome.image is None:
            return pb.GenerateResponse(call=_call(outcome, request.prompt, dry_run=True))
        images = await asyncio.to_thread(imaging.encode_renditions, outcome.image, request.output)
        return pb.GenerateResponse(images=images, call=_call(outcome, request.prompt))

    async def Edit(
        self,
        request: pb.EditRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.EditResponse:
        await self._check_output(context, request.output)
        image = await self._decode(context, request.image, "image")
        mask = await self._mask(context, request.mask_png, image.shape)
        quality = request.quality or "hd"
        task = ImageTask(kind="edit", prompt=request.prompt, quality=quality, seed=request.seed, image=image, mask=mask)
        outcome = await self._run(
            context, task, request.budget, request.dry_run, lambda output: edit_problem(image, mask, output)
        )
        if outcome.image is None:
            return pb.EditResponse(call=_call(outcome, request.prompt, dry_run=True))
        answer = outcome.image

        async def finished() -> list[imaging_pb2.EncodedImage]:
            # The blend works in float32 at the texture's size (seconds at 20 MP): off the event loop.
            edited = await asyncio.to_thread(_blend_inside, image, answer, mask)
            images = await asyncio.to_thread(imaging.encode_renditions, edited, request.output)
            if request.material_maps:
                images += await asyncio.to_thread(material_map_images, edited)
            return images

        need = memory.texture_edit_bytes(image.shape[0] * image.shape[1], material_maps=request.material_maps)
        images = await self.gate.run(need, finished())
        return pb.EditResponse(images=images, call=_call(outcome, request.prompt))

    async def Refine(
        self,
        request: pb.RefineRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.RefineResponse:
        await self._check_output(context, request.output)
        image = await self._decode(context, request.image, "image")
        mask = await self._mask(context, request.mask_png, image.shape)
        prompt = request.prompt or DEFAULT_REFINE_PROMPT
        task = ImageTask(kind="edit", prompt=prompt, seed=request.seed, image=image, mask=mask)
        budget = request.budget if request.HasField("budget") else pb.Budget(max_tokens=10**9, max_cents=1e9)
        outcome = await self._run(context, task, budget, False)
        assert outcome.image is not None
        answer = outcome.image

        async def finished() -> tuple[list[imaging_pb2.EncodedImage], Drift, str]:
            refined, drift = await asyncio.to_thread(_refined, image, answer, mask)
            reason = ""
            if drift.color > self.settings.max_color_drift:
                reason = f"the material's colour drifted {drift.color:.1f} (bound {self.settings.max_color_drift:g})"
            elif drift.texture_similarity < self.settings.min_texture_similarity:
                reason = (
                    f"the material's texture drifted (similarity {drift.texture_similarity:.2f}, "
                    f"bound {self.settings.min_texture_similarity:g})"
                )
            kept = image if reason else refined
            return await asyncio.to_thread(imaging.encode_renditions, kept, request.output), drift, reason

        need = memory.FIXED_BYTES + memory.REFINEMENT_BYTES_PER_PIXEL * image.shape[0] * image.shape[1]
        images, drift, reason = await self.gate.run(need, finished())
        return pb.RefineResponse(
            images=images,
            provider=outcome.provider,
            model=outcome.model,
            call=_call(outcome, prompt),
            drift=pb.Drift(color=drift.color, texture_similarity=drift.texture_similarity),
            applied=not reason,
            fallback_reason=reason,
        )


def generate_problem(request: pb.GenerateRequest, budget_bytes: int) -> tuple[str, str] | None:
    """What is wrong with a generation's size and references, as (field, description), from the
    references' headers alone: a side outside 0 (the default) to MAX_GENERATED_SIDE, more than
    MAX_REFERENCE_IMAGES references, one that is not an image, or more memory than the budget."""
    for name in ("width", "height"):
        if not 0 <= getattr(request, name) <= MAX_GENERATED_SIDE:
            return name, f"must be 0 (the default) to {MAX_GENERATED_SIDE}"
    references = request.reference_images
    if len(references) > MAX_REFERENCE_IMAGES:
        return "reference_images", f"at most {MAX_REFERENCE_IMAGES}, got {len(references)}"
    infos: list[imaging.ImageInfo] = []
    for i, data in enumerate(references):
        try:
            infos.append(imaging.probe(data))
        except imaging.ImageError as exc:
            return f"reference_images[{i}]", str(exc)
    pixels = [info.pixels for info in infos]
    need = memory.room_render_bytes(pixels)
    if need <= budget_bytes:
        return None
    i = max(range(len(infos)), key=lambda k: pixels[k])
    others = pixels[:i] + pixels[i + 1 :]
    largest = memory.largest_pixels(lambda px: memory.room_render_bytes([*others, px]), budget_bytes)
    info = infos[i]
    text = memory.over_budget_text(info.width, info.height, "reference image", need, budget_bytes, largest)
    return f"reference_images[{i}]", text


def _refined(image: np.ndarray, answer: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Drift]:
    """A refinement's answer blended inside the mask, and how far it drifted from the render."""
    refined = _blend_inside(image, answer, mask)
    return refined, measure_drift(image, refined, mask)


def _blend_inside(image: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The provider's edit at the image's size, kept inside the (slightly feathered) mask only."""
    height, width = image.shape[:2]
    edited = cv2.resize(edited, (width, height), interpolation=cv2.INTER_CUBIC)
    alpha = (cv2.GaussianBlur(mask, (0, 0), 1.0).astype(np.float32) / 255.0)[..., None]
    blended = image + (edited.astype(np.float32) - image) * alpha
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def create_server(settings: GenerationSettings, meter: metrics.Meter | None = None) -> Edge:
    """A generation server bound to settings.stage.listen (port 0 picks a free port).

    Triton is a dependency when the diffusion provider is configured; each provider's availability
    is published under its own health name (render.generation.v1.GenerationService/<provider>),
    which is not a service and so not in reflection.
    """
    triton = triton_for(settings.stage) if "triton" in settings.providers else None
    prices = PriceTable.load(settings.price_table)
    generator = build_generator(settings, triton, prices, meter)
    gate = MemoryGate(settings.stage.memory_allowance_bytes)
    report(gate)
    servicer = GenerationServicer(settings, generator, prices, gate)
    dependencies = [triton_dependency(triton, (settings.diffusion_model,))] if triton is not None else []
    for provider in generator.providers:

        async def available(provider: Provider = provider) -> bool:
            return not await servicer.availability(provider)

        dependencies.append(
            Dependency(
                f"provider {provider.name}", available, required=False, health_name=provider_health_name(provider.name)
            )
        )
    edge = stage_edge(
        settings.stage,
        SERVICE_NAME,
        lambda s: pb_grpc.add_GenerationServiceServicer_to_server(servicer, s),
        dependencies,
    )
    edge.on_close.append(generator.close)
    if triton is not None:
        edge.on_close.append(triton.close)
    servicer.health = edge.health
    return edge


KNOWN_PROVIDERS = ("openai", "triton")


def _providers() -> tuple[str, ...]:
    """GENERATION_PROVIDERS: names of KNOWN_PROVIDERS in failover order; a misspelt one is refused
    at start rather than leaving the stage with no provider."""
    raw = env_str("GENERATION_PROVIDERS", "openai,triton")
    names = tuple(p.strip() for p in raw.split(",") if p.strip())
    unknown = [n for n in names if n not in KNOWN_PROVIDERS]
    if unknown:
        raise SettingsError(
            f"GENERATION_PROVIDERS: unknown provider(s) {', '.join(unknown)} (known: {', '.join(KNOWN_PROVIDERS)})"
        )
    return names
