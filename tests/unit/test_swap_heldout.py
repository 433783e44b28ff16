"""benchmarks.swap_heldout: its truth places a material the way the renderer places the room's own,
and the pipeline's swap given the true light and the exact quad reproduces it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from benchmarks import segmentation_heldout as heldout
from benchmarks import swap_heldout
from benchmarks.quality import metrics, modes
from benchmarks.quality.render import linear_image

SMALL = (320, 240)


def test_the_truth_with_the_rooms_own_floor_is_its_photo_without_noise() -> None:
    spec = replace(heldout.ROOMS[0], size=SMALL)  # herringbone, a sofa, sun through the bars
    room = swap_heldout.build(spec, swap_heldout.SWATCHES[0]())
    assert 0.1 < room.visible.mean() < 0.9
    # The corners lie inside the photo, the first at the far left.
    assert (room.quad > 0).all() and (room.quad[:, 0] < SMALL[0]).all() and (room.quad[:, 1] < SMALL[1]).all()
    assert room.quad[0, 0] < room.quad[1, 0] and room.quad[0, 1] < room.quad[3, 1]
    # The old material found through the rectangle's metres, under the same light and lens, is the
    # renderer's own noise-free photo wherever a pixel is all rectangle.
    old = heldout.srgb_bgr(room.lit(room.old_albedo()) * room.white)
    clean = heldout.srgb_bgr(heldout.lens(heldout.reduce(spec, room.shot.albedo * room.shot.light * spec.exposure)))
    whole = metrics.inner(room.visible) & (room.coverage > 0.999)
    assert whole.sum() > 1000
    assert np.abs(old.astype(int) - clean)[whole].max() <= 1
    # ... and near the photo as delivered (noise and JPEG apart).
    assert metrics.psnr(old, room.photo, whole) > 28
    # The truth is the swatch's albedo under the shading, 1 at the surface's median: its ratio to
    # the shading averages the swatch's own colour.
    albedo = linear_image(room.truth)[whole] / room.shading[whole]
    assert np.allclose(albedo.mean(0), linear_image(room.swatch.image).mean((0, 1)), rtol=0.1)


def test_the_swap_under_the_true_light_through_the_exact_quad_scores_high() -> None:
    # A light of one colour (the sky alone), so that the true shading is grey as the oracle's is.
    spec = replace(heldout.ROOMS[0], size=SMALL, window=None)
    room = swap_heldout.build(spec, swap_heldout.SWATCHES[0]())
    region = metrics.inner(room.visible)
    quad = modes.quad(room)
    out, _ = swap_heldout._swap(room, quad, swap_heldout.oracle_shading(room))
    assert metrics.psnr(out, quad.truth, region) > 40
    # The truth's shading is 1 at the rectangle's median and follows the light across it.
    assert np.allclose(np.median(room.shading[room.visible], axis=0), 1, atol=1e-3)
    assert np.ptp(room.shading[region][:, 1]) > 0.2
