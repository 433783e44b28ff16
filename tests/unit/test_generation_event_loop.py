"""The generation stage's own pixel work (the edit's blend, its quality check, a refinement's
drift) runs off the event loop: a 12 MP texture edit or refinement must not stop the stage's other
calls (health probes, GetCapabilities, other jobs' provider calls) for seconds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import cv2
import numpy as np
import pytest

from render.generation.v1 import generation_service_pb2 as pb
from services.common.stage import StageSettings
from services.generation.generator import Generator
from services.generation.providers import Cost, ImageTask, PriceTable, ProviderImage
from services.generation.server import GenerationServicer, GenerationSettings


class _Provider:
    """Answers at once with a provider-sized picture (a gentle change of the texture)."""

    name = "openai"
    model = "fake"
    can_edit = True

    async def ready(self) -> bool:
        return True

    async def coming_back(self) -> bool:
        return False

    async def run(self, task: ImageTask, timeout_s: float) -> ProviderImage:
        assert task.image is not None
        image = cv2.resize(task.image, (1536, 1024), interpolation=cv2.INTER_AREA)
        return ProviderImage(np.clip(image.astype(np.int16) + 9, 0, 255).astype(np.uint8), "fake")

    def estimate(self, task: ImageTask) -> Cost:
        return Cost(0, 1.0)

    def actual_cost(self, task: ImageTask, tokens: int | None) -> Cost:
        return Cost(0, 1.0)

    async def close(self) -> None:
        return None


class _Context:
    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> None:
        raise AssertionError(f"aborted: {code} {details}")


def _texture(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 200, y / height * 200, (x + y) / (width + height) * 255], -1)
    image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _longest_stall(call: Any) -> float:
    async def scenario() -> float:
        stalls = [0.0]

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                stalls.append(now - last)
                last = now

        beside = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        try:
            await call()
        finally:
            beside.cancel()
        return max(stalls)

    return asyncio.run(scenario())


def _settings() -> GenerationSettings:
    """A stage on a free port with an OpenAI provider that is never called (a fake provider runs)."""
    return GenerationSettings(
        stage=StageSettings("127.0.0.1:0", "", 1.0),
        openai_api_key="sk-test",
        openai_base_url="",
        openai_model="gpt-image-1",
        openai_timeout_s=10,
        openai_max_retries=0,
    )


@pytest.mark.parametrize("method", ["Edit", "Refine"])
def test_a_large_edit_or_refinement_does_not_stall_the_event_loop(method: str) -> None:
    settings = _settings()
    servicer = GenerationServicer(settings, Generator([_Provider()]), PriceTable())
    image = _texture(4240, 2832)  # 12 MP
    if method == "Edit":
        request: Any = pb.EditRequest(image=image, prompt="walnut", budget=pb.Budget(max_tokens=10**6, max_cents=100))
    else:
        request = pb.RefineRequest(image=image)
    stall = _longest_stall(lambda: getattr(servicer, method)(request, _Context()))
    # Decoding and encoding go to worker threads; what is left on the loop is bookkeeping.
    assert stall < 0.3, f"{method} held the event loop for {stall:.2f} s"


def test_edits_finishing_together_are_admitted_by_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three 12 MP edits whose answers come back together: with an allowance that holds one, their
    work at the texture's size runs one at a time (each fits REQUEST_MEMORY_MB; three at once would
    not fit the pod); all three succeed."""
    from renderkit import budget
    from services.common.admission import MemoryGate
    from services.generation import server

    settings = _settings()
    width, height = 4240, 2832
    gate = MemoryGate(budget.texture_edit_bytes(width * height) + 1)
    servicer = GenerationServicer(settings, Generator([_Provider()]), PriceTable(), gate)
    blending, most = 0, 0
    blend = server._blend_inside

    def counted(*args: Any) -> np.ndarray:
        nonlocal blending, most
        blending += 1
        most = max(most, blending)
        try:
            time.sleep(0.2)
            return blend(*args)
        finally:
            blending -= 1

    monkeypatch.setattr(server, "_blend_inside", counted)
    image = _texture(width, height)
    request = pb.EditRequest(image=image, prompt="walnut", budget=pb.Budget(max_tokens=10**6, max_cents=100))

    async def scenario() -> list[Any]:
        context: Any = _Context()
        return list(await asyncio.gather(*(servicer.Edit(request, context) for _ in range(3))))

    answers = asyncio.run(scenario())
    assert [len(a.images) > 0 for a in answers] == [True] * 3
    assert most == 1 and gate.in_use == 0


def test_a_dry_run_without_references_is_checked_on_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its checks are a few comparisons: a worker thread's hop there and back would cost more than
    they do (~0.1 ms of a dry-run job's time). References, which are probed, still go to a thread."""
    settings = _settings()
    servicer = GenerationServicer(settings, Generator([_Provider()]), PriceTable())

    def no_thread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a thread was asked to check a request without references")

    monkeypatch.setattr(asyncio, "to_thread", no_thread)
    request = pb.GenerateRequest(prompt="a room", dry_run=True, budget=pb.Budget(max_tokens=10**6, max_cents=100))
    response = asyncio.run(servicer.Generate(request, _Context()))  # type: ignore[arg-type]
    assert response.call.dry_run and response.call.provider == "openai"
