"""What a stage does with a model's answer its contract does not allow (TritonModels.infer against
a fake client that answers as told): the model's fault, never a crash of the stage nor a render
from NaN."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from renderkit.triton import (
    DEPTH,
    INTRINSIC,
    PROMPT_DECODER,
    SEGMENTATION,
    ModelContract,
    ModelOutputError,
    TritonModels,
)
from services.generation.providers import ImageTask, ProviderTimeout
from services.generation.triton_diffusion import TritonDiffusionProvider
from services.segmentation.prompting import mask_from_logits
from tests.triton_stand_in import StandInModels


class Answer:
    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.outputs = outputs

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self.outputs.get(name)


class Client:
    """A tritonclient that answers every inference with the given outputs, or raises."""

    def __init__(self, outputs: dict[str, np.ndarray] | None = None, raises: Exception | None = None) -> None:
        self.outputs, self.raises = outputs or {}, raises

    async def infer(self, *args: Any, **kwargs: Any) -> Answer:
        if self.raises is not None:
            raise self.raises
        return Answer(self.outputs)


def models(client: Client) -> TritonModels:
    return StandInModels(client)


def infer(contract: ModelContract, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    inputs = {spec.name: np.zeros([1, *[max(1, d) for d in spec.dims]], np.float32) for spec in contract.inputs}
    return asyncio.run(models(Client(outputs)).infer(contract, inputs))


@pytest.mark.parametrize(
    ("contract", "outputs"),
    [
        (SEGMENTATION, {"logits": np.full((1, 150, 16, 16), np.nan, np.float32)}),  # became an empty mask
        (SEGMENTATION, {"logits": np.zeros((1, 19, 16, 16), np.float32)}),  # another model's classes: IndexError
        (DEPTH, {"predicted_depth": np.ones((1, 64), np.float32)}),  # 1-D: IndexError in the plane fit
        (INTRINSIC, {"shading": np.ones((1, 1, 0, 0), np.float32)}),  # empty: cv2.error
        (INTRINSIC, {"shading": np.ones((1, 32, 32), np.float32)}),  # no channel: IndexError
        (
            PROMPT_DECODER,
            {"mask_logits": np.ones((1, 0, 256, 256), np.float32), "iou_scores": np.ones((1, 0), np.float32)},
        ),
    ],
)
def test_an_answer_the_contract_does_not_allow_is_the_models_fault(
    contract: ModelContract, outputs: dict[str, np.ndarray]
) -> None:
    """A review found each crashing the stage (UNKNOWN) or taken as the answer."""
    with pytest.raises(ModelOutputError):
        infer(contract, outputs)


def test_an_answer_the_contract_allows_is_handed_over() -> None:
    logits = np.zeros((1, 150, 16, 16), np.float32)
    assert infer(SEGMENTATION, {"logits": logits})["logits"] is logits


def test_prompt_candidates_that_select_nothing_are_no_answer() -> None:
    """An all-negative candidate with a NaN or the best score was taken (an empty mask)."""
    photo = np.full((64, 64, 3), 120, np.uint8)
    logits = np.full((2, 256, 256), -5.0, np.float32)
    logits[1, :8, :8] = 5.0
    mask, score = mask_from_logits(photo, logits, np.array([0.99, 0.5], np.float32), 4.0)
    assert score == pytest.approx(0.5) and mask.any()
    with pytest.raises(ModelOutputError, match="selects nothing"):
        mask_from_logits(photo, np.full((2, 256, 256), -5.0, np.float32), np.array([0.9, 0.8], np.float32), 4.0)
    with pytest.raises(ModelOutputError, match="scores"):
        mask_from_logits(photo, logits, np.array([0.9, 0.8, 0.7], np.float32), 4.0)


def test_a_diffusion_inference_past_its_deadline_is_a_timeout() -> None:
    """The sanitised message hid the deadline: the provider reported a failure, and the
    generator's one retry of a timeout never happened (a review found it)."""
    deadline = InferenceServerException(msg="Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED")
    provider = TritonDiffusionProvider(models(Client(raises=deadline)))
    with pytest.raises(ProviderTimeout):
        asyncio.run(provider.run(ImageTask(kind="generate", prompt="oak floor", seed=1), timeout_s=5.0))


def test_a_constant_disparity_is_no_plane() -> None:
    """Its R^2 came out 1: a full confidence in a plane the model never saw (a review found it)."""
    from services.depth.plane import fit_affine_disparity

    mask = np.full((64, 64), 255, np.uint8)
    with pytest.raises(ValueError, match="constant"):
        fit_affine_disparity(np.ones((64, 64), np.float32), mask)
    slope = np.tile(np.linspace(1.0, 2.0, 64, dtype=np.float32), (64, 1))
    assert fit_affine_disparity(slope, mask)[2] > 0.99
