"""The diffusion model on Triton as a provider: text-to-image and inpainting at the model's 512 px."""

from __future__ import annotations

import cv2
import numpy as np

from renderkit.triton import DIFFUSION, ModelOutputError, TritonError, TritonModels, prompt_ids
from services.generation.providers import (
    Cost,
    ImageTask,
    MalformedOutput,
    PriceTable,
    ProviderFailure,
    ProviderImage,
    ProviderTimeout,
)

_EDIT_STRENGTH = 0.85


class TritonDiffusionProvider:
    """Runs the `diffusion` model of deploy/triton/model_repository through the Triton client."""

    name = "triton"
    can_edit = True

    def __init__(self, triton: TritonModels, *, model: str = "diffusion", prices: PriceTable | None = None) -> None:
        self.triton = triton
        self.model = model
        self.prices = prices or PriceTable()

    async def close(self) -> None:
        return None  # the Triton client belongs to the server

    async def ready(self) -> bool:
        """Whether Triton serves the model now (a Triton without diffusion weights, or one that
        does not answer, is skipped: the next provider in the failover order is tried)."""
        try:
            return await self.triton.model_deployed(self.model)
        except TritonError:
            return False

    async def coming_back(self) -> bool:
        """Triton not answering, or the model seen ready before and loading again: a restart.
        Triton answering that a model it never served is not ready: not deployed."""
        try:
            return await self.triton.model_deployed(self.model)
        except TritonError:
            return True

    def estimate(self, task: ImageTask) -> Cost:
        return self.prices.estimate(self.name, self.model, task, "*")

    def actual_cost(self, task: ImageTask, tokens: int | None) -> Cost:
        return self.estimate(task)

    async def run(self, task: ImageTask, timeout_s: float) -> ProviderImage:
        side = DIFFUSION.input_size
        if task.kind == "edit" and task.image is not None and task.mask is not None:
            rgb = cv2.cvtColor(cv2.resize(task.image, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            image = rgb.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
            mask = (cv2.resize(task.mask, (side, side), interpolation=cv2.INTER_LINEAR) > 127).astype(np.float32)
            strength = _EDIT_STRENGTH
        else:
            image = np.zeros((1, 3, side, side), np.float32)
            mask = np.ones((side, side), np.float32)
            strength = 1.0
        inputs = {
            "prompt_ids": prompt_ids(task.prompt),
            "seed": np.array([[task.seed]], np.int64),
            "image": np.ascontiguousarray(image),
            "mask": np.ascontiguousarray(mask[None, None]),
            "strength": np.array([[strength]], np.float32),
        }
        try:
            outputs = await self.triton.infer(DIFFUSION, inputs, timeout_s=timeout_s)
        except ModelOutputError as exc:
            raise MalformedOutput(str(exc)) from exc
        except TritonError as exc:
            if exc.timed_out:  # (its message is the one safe to show, which does not say so)
                raise ProviderTimeout(f"no answer within {timeout_s:.0f} s") from exc
            raise ProviderFailure(str(exc)) from exc
        generated = outputs["generated"]
        if generated.ndim != 4 or generated.shape[1] != 3 or not np.isfinite(generated).all():
            raise MalformedOutput(f"the model returned a tensor of shape {generated.shape}")
        rgb8 = np.clip(generated[0].transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        bgr = cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR)
        if task.kind == "generate" and (task.width, task.height) != bgr.shape[1::-1]:  # the size it came at
            bgr = cv2.resize(bgr, (task.width, task.height), interpolation=cv2.INTER_CUBIC)
        return ProviderImage(image=bgr, model=self.model)
