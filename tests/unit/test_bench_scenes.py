"""The projection benchmark's floor scenes: each builds a request the projection stage renders."""

from __future__ import annotations

import numpy as np

from benchmarks import shading_views
from benchmarks.e2e import sample
from benchmarks.projection import FLOOR_SCENES, scene_inputs
from renderkit import imaging
from services.projection import server
from services.projection.shading import BLUR, TEXTURE_SPACE


def test_every_floor_scene_renders_and_the_issues_is_the_e2e_benchmarks_room() -> None:
    photo, room_swatch, room_quad = sample(3840, 2160)
    for scene in FLOOR_SCENES:
        quad, swatch, request = scene_inputs(scene, photo, room_quad)
        if scene.quad is None:  # the issue's scene: the e2e benchmark's own room and swatch
            assert quad == room_quad and swatch == room_swatch
        assert imaging.probe(swatch).width == scene.swatch_px
        # Within the gateway's bounds for a quad's corners (validation._points).
        assert all(-3840 <= x <= 2 * 3840 and -2160 <= y <= 2 * 2160 for x, y in quad)
        response = server._project(request, request.photo, request.swatch, request.mask_png)
        images, source = response.images, response.shading_source
        full = imaging.decode_bgr(images[0].data)
        assert full.shape == (2160, 3840, 3), scene.name
        assert source, scene.name
        # The surface was re-covered: a good part of the photo changed.
        changed = np.abs(full.astype(np.int16) - imaging.decode_bgr(photo)).max(axis=2) > 8
        assert changed.mean() > 0.2, scene.name


def test_the_light_on_another_renderers_tiles_is_estimated_without_them() -> None:
    """benchmarks.shading_views on one small view: devstack's tiles under its window, shadow and
    sun, where the texture-space estimate leaves the tiles out and the blur keeps them."""
    swatch = shading_views.old_surfaces()["tiles"]
    result = shading_views.measure("tiles", swatch, shading_views.VIEWS[0], (320, 240))
    assert result.psnr[TEXTURE_SPACE] > result.psnr[BLUR] + 3
