"""The per-request memory model: monotone in pixels, the heaviest stage counts, honest messages."""

from __future__ import annotations

import pytest

from renderkit import budget

MP = 1_000_000


def test_a_swap_needs_its_heaviest_stage_and_its_largest_swatch() -> None:
    plain = budget.material_swap_bytes(8 * MP, [MP])
    assert plain == budget.FIXED_BYTES + budget.SEGMENTATION_BYTES_PER_PIXEL * 8 * MP
    assert budget.material_swap_bytes(8 * MP, [MP, 4 * MP]) == budget.material_swap_bytes(8 * MP, [4 * MP])
    assert budget.material_swap_bytes(8 * MP, [MP], refinement=True) > plain
    # The swatch's maps are made after the composite: the heavier of the two phases counts.
    with_maps = budget.material_swap_bytes(MP, [16 * MP], material_maps=True)
    assert with_maps >= budget.material_swap_bytes(MP, [16 * MP])
    assert with_maps >= budget.FIXED_BYTES + budget.MAPS_BYTES_PER_PIXEL * 16 * MP


def test_the_largest_size_that_fits_is_the_inverse_of_the_need() -> None:
    def need(pixels: int) -> int:
        return budget.material_swap_bytes(pixels, [MP])

    allowed = budget.DEFAULT_REQUEST_BYTES
    largest = budget.largest_pixels(need, allowed)
    assert need(largest) <= allowed < need(largest + 1)
    assert budget.largest_pixels(need, budget.FIXED_BYTES // 2) == 0


@pytest.mark.parametrize(
    "need, allowed, text",
    [
        (int(2.7 * 1024**3), 2 * 1024**3, "needs about 2.7 GB to render; a request may use 2.0 GB"),
        (int(2.02 * 1024**3), 2 * 1024**3, "needs about 2.02 GB to render; a request may use 2.00 GB"),
    ],
)
def test_refusals_say_what_is_needed_and_what_is_allowed(need: int, allowed: int, text: str) -> None:
    message = budget.over_budget_text(6300, 6300, "photo", need, allowed, 30 * MP)
    assert message.startswith("a 6300x6300 photo ") and text in message and message.endswith("(at most about 30 MP)")
