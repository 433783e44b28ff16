"""How many times a swatch repeats across a surface, and the unit mistakes that are refused."""

import pytest

from gateway.context import JobFailure
from gateway.material_swap import tile_aspect, tiling_for
from render.depth.v1 import depth_service_pb2 as depth_pb
from render.v1 import render_service_pb2 as pb
from renderkit import imaging

SWATCH = imaging.ImageInfo(content_type="image/jpeg", width=512, height=512)
PLANE = depth_pb.EstimatePlaneResponse(aspect_ratio=1.5, meters_per_unit=4.0)


def swap(width_m: float = 0.0, quad: tuple[float, float] | None = None, repeats: float = 0.0) -> pb.MaterialSwap:
    out = pb.MaterialSwap()
    if width_m:
        out.options.real_world_scale.swatch_size.width_meters = width_m
    if repeats:
        out.options.real_world_scale.repeats = repeats
    if quad is not None:  # a quad and its size
        out.hints.quad.extend(pb.Point(x=x, y=y) for x, y in ((10, 10), (90, 10), (90, 60), (10, 60)))
        out.hints.quad_size.width_meters, out.hints.quad_size.height_meters = quad
    return out


def test_sizes_give_the_repeats_they_imply() -> None:
    tiling = tiling_for(swap(0.5, quad=(4.0, 3.0)), PLANE, SWATCH)
    assert (tiling.repeats_u, tiling.repeats_v, tiling.source) == (8.0, 6.0, "swatch_size")
    metric = tiling_for(swap(0.5), PLANE, SWATCH)  # the plane's own metres
    assert metric.repeats_u == pytest.approx(8.0) and metric.repeats_v == pytest.approx(8.0 / 1.5)


@pytest.mark.parametrize(
    "request_, field",
    [
        (swap(0.001, quad=(100.0, 100.0)), "material_swap.options.real_world_scale.swatch_size"),  # 100,000
        (swap(1000.0, quad=(4.0, 3.0)), "material_swap.options.real_world_scale.swatch_size"),  # 0.004
        (swap(repeats=24, quad=(0.001, 10000.0)), "material_swap.hints.quad_size"),  # an aspect of 1e-7
    ],
)
def test_sizes_that_work_out_to_absurd_repeats_are_refused_naming_the_field(
    request_: pb.MaterialSwap, field: str
) -> None:
    with pytest.raises(JobFailure) as info:
        tiling_for(request_, PLANE, SWATCH)
    assert info.value.code == pb.ERROR_CODE_VALIDATION_FAILED
    assert info.value.message.startswith(f"{field}: puts the swatch ")


@pytest.mark.parametrize("repeats", [10.0, 0.0])  # a repeat count, or a swatch size on a metric plane
def test_a_quad_size_without_a_quad_does_not_distort_the_material(repeats: float) -> None:
    """Without a quad the plane's unit square is the depth plane's: a quad_size (refused at submit;
    here, a job recorded before) describes nothing and must not stretch the swatch."""
    request_ = swap(repeats=repeats) if repeats else swap(0.5)
    expected = tiling_for(request_, PLANE, SWATCH)
    request_.hints.quad_size.width_meters, request_.hints.quad_size.height_meters = 4.0, 1.0
    tiling = tiling_for(request_, PLANE, SWATCH)
    assert (tiling.repeats_u, tiling.repeats_v) == (expected.repeats_u, expected.repeats_v)


def test_a_swatch_size_with_both_sides_tells_the_projection_the_tile_s_aspect() -> None:
    """Rotation and herringbone lay the material in physical units: a height that is not the image's
    aspect goes to the projection (0 keeps the image's)."""
    request_ = swap(0.1, quad=(0.8, 0.8))
    assert tile_aspect(request_.options) == 0.0
    request_.options.real_world_scale.swatch_size.height_meters = 0.2
    assert tile_aspect(request_.options) == pytest.approx(2.0)
    assert tile_aspect(swap(repeats=8).options) == 0.0
