import numpy as np
import pytest

from gateway.validation import Limits, validate_submit
from render.v1 import render_service_pb2 as pb
from renderkit import imaging

PHOTO = imaging.encode(np.full((300, 400, 3), 128, np.uint8))[0]
SWATCH = imaging.encode(np.full((64, 64, 3), 90, np.uint8))[0]
QUAD = [pb.Point(x=100, y=150), pb.Point(x=300, y=150), pb.Point(x=390, y=290), pb.Point(x=10, y=290)]


def request(**swap_fields: object) -> pb.SubmitRenderRequest:
    swap = pb.MaterialSwap(
        photo=pb.ImageSource(data=PHOTO), swatch=pb.ImageSource(data=SWATCH), hints=pb.SurfaceHints(quad=QUAD)
    )
    for name, value in swap_fields.items():
        getattr(swap, name).CopyFrom(value)
    return pb.SubmitRenderRequest(material_swap=swap)


def fields(req: pb.SubmitRenderRequest, limits: Limits | None = None) -> set[str]:
    return {field for field, _ in validate_submit(req, limits or Limits())}


def test_a_good_request_has_no_violations() -> None:
    assert validate_submit(request(), Limits()) == []


def test_missing_kind_and_images_name_their_fields() -> None:
    assert fields(pb.SubmitRenderRequest()) == {"kind"}
    req = request()
    req.material_swap.ClearField("photo")
    assert "material_swap.photo" in fields(req)


@pytest.mark.parametrize(
    "source, field",
    [
        (pb.ImageSource(data=b"garbage"), "material_swap.photo.data"),
        (pb.ImageSource(data=imaging.encode(np.zeros((20, 20, 3), np.uint8))[0]), "material_swap.photo.data"),
        (pb.ImageSource(url="ftp://x/y.jpg"), "material_swap.photo.url"),
        (pb.ImageSource(url="http://10.0.0.8/room.jpg"), "material_swap.photo.url"),
    ],
)
def test_bad_photos_name_the_field(source: pb.ImageSource, field: str) -> None:
    assert field in fields(request(photo=source))


def test_oversized_images_are_refused() -> None:
    assert "material_swap.photo.data" in fields(request(), Limits(max_image_bytes=100))
    assert "material_swap.photo.data" in fields(request(), Limits(max_pixels=1000))


def test_mask_must_match_the_photo() -> None:
    mask = imaging.encode_mask(np.zeros((100, 100), np.uint8))
    violations = dict(validate_submit(request(mask=pb.ImageSource(data=mask)), Limits()))
    assert "400x300" in violations["material_swap.mask.data"]


def test_bad_quad_and_options_name_their_fields() -> None:
    req = request()
    del req.material_swap.hints.quad[3]
    req.material_swap.options.real_world_scale.repeats = -1
    req.material_swap.options.stage_timeout_seconds = 0
    req.output.quality = 101
    req.idempotency_key = "has spaces"
    assert fields(req) >= {
        "material_swap.hints.quad",
        "material_swap.options.real_world_scale.repeats",
        "material_swap.options.stage_timeout_seconds",
        "output.quality",
        "idempotency_key",
    }


def test_swatch_size_needs_the_surface_size() -> None:
    req = request()
    req.material_swap.options.real_world_scale.swatch_size.width_meters = 0.2
    assert "material_swap.options.real_world_scale.swatch_size" in fields(req)
    req.material_swap.hints.quad_size.width_meters = 4
    req.material_swap.hints.quad_size.height_meters = 3
    assert fields(req) == set()


def test_swatch_size_without_a_quad_waits_for_the_plane() -> None:
    """Without a quad the plane may come out metric (a metric depth model): checked at run time."""
    req = request()
    req.material_swap.hints.ClearField("quad")
    req.material_swap.mask.data = imaging.encode_mask(np.full((240, 320), 255, np.uint8))
    req.material_swap.options.real_world_scale.swatch_size.width_meters = 0.2
    assert "material_swap.options.real_world_scale.swatch_size" not in fields(req)


def test_swatch_size_also_works_with_a_metric_plane() -> None:
    req = request()
    req.material_swap.options.real_world_scale.swatch_size.width_meters = 0.2
    req.material_swap.hints.plane_distance_meters = 1.5
    assert fields(req) == set()


@pytest.mark.parametrize(
    "name, value", [("focal_length_px", -5.0), ("focal_length_px", 1.0), ("plane_distance_meters", float("nan"))]
)
def test_camera_hints_are_checked(name: str, value: float) -> None:
    req = request()
    setattr(req.material_swap.hints, name, value)
    assert fields(req) == {f"material_swap.hints.{name}"}


def test_no_geometry_at_all_is_refused() -> None:
    req = request()
    req.material_swap.hints.ClearField("quad")
    assert fields(req) == {"material_swap.hints"}


def test_row_offset_needs_the_brick_layout_and_a_fraction() -> None:
    req = request()
    req.material_swap.options.row_offset = 0.3
    assert fields(req) == {"material_swap.options.row_offset"}
    req.material_swap.options.layout = pb.TILE_LAYOUT_BRICK
    assert fields(req) == set()
    req.material_swap.options.row_offset = 1.5
    assert fields(req) == {"material_swap.options.row_offset"}


def test_an_unknown_layout_is_refused() -> None:
    req = request()
    req.material_swap.options.layout = 9  # type: ignore[assignment]
    assert fields(req) == {"material_swap.options.layout"}
    req.material_swap.options.layout = pb.TILE_LAYOUT_HERRINGBONE
    assert fields(req) == set()


def test_variant_swatches_are_checked_one_by_one() -> None:
    req = request()
    req.material_swap.variant_swatches.add(data=SWATCH)
    req.material_swap.variant_swatches.add(data=b"not an image")
    assert fields(req) == {"material_swap.variant_swatches[1].data"}
    for _ in range(8):
        req.material_swap.variant_swatches.add(data=SWATCH)
    assert "material_swap.variant_swatches" in fields(req)
