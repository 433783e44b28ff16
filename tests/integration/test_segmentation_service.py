"""The segmentation service without Triton, over real gRPC: a client's mask and photo, decoded side
by side, and which of them a bad request names."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2

from devstack import scenes
from render.imaging.v1 import imaging_pb2
from render.segmentation.v1 import segmentation_service_pb2 as seg_pb
from render.segmentation.v1 import segmentation_service_pb2_grpc as seg_grpc
from renderkit import imaging
from renderkit.edge import Edge
from renderkit.errors import status_details, unpack_detail
from services.segmentation.interactive import refine_edges
from services.segmentation.server import create_server as create_segmentation
from tests.conftest import stage_settings

SCENE = scenes.camera_scene(
    scenes.View(60, 35, 20), scenes.tile_texture(128, tiles=1), scenes.plank_texture(128), size=(320, 240)
)
PHOTO = imaging.encode(SCENE.photo, quality=95)[0]
MASK = (SCENE.visible_surface * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def segmentation(start_stage: Callable[[Callable[[], Edge]], Edge]) -> seg_grpc.SegmentationServiceStub:
    server = start_stage(lambda: create_segmentation(stage_settings()))
    return seg_grpc.SegmentationServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))


def test_a_clients_mask_comes_back_with_its_edge_refined_to_the_photo(
    segmentation: seg_grpc.SegmentationServiceStub,
) -> None:
    reply = segmentation.Segment(
        seg_pb.SegmentRequest(width=320, height=240, photo=PHOTO, mask=imaging.encode_mask(MASK)), timeout=30
    )
    assert reply.source == "mask"
    expected = refine_edges(imaging.decode_bgr(PHOTO), MASK)
    assert np.array_equal(imaging.decode_gray(reply.mask_png), expected)
    assert not np.array_equal(expected, MASK)  # the edge did move


def refused_fields(segmentation: seg_grpc.SegmentationServiceStub, request: dict[str, object]) -> list[str]:
    """The fields an INVALID_ARGUMENT refusal of the request names."""
    with pytest.raises(grpc.RpcError) as info:
        segmentation.Segment(seg_pb.SegmentRequest(**request), timeout=30)  # type: ignore[arg-type]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    bad = unpack_detail(status_details(info.value.trailing_metadata()), error_details_pb2.BadRequest)  # type: ignore[attr-defined, arg-type]
    assert isinstance(bad, error_details_pb2.BadRequest)
    return [violation.field for violation in bad.field_violations]


@pytest.mark.parametrize(
    "fields, field",
    [
        # A review found each failing inside the stage (UNKNOWN), or read as another place:
        ({"box": imaging_pb2.Box(x_min=float("nan"), y_min=0, x_max=100, y_max=100)}, "box"),
        ({"box": imaging_pb2.Box(x_min=-200, y_min=-200, x_max=-100, y_max=-100)}, "box"),  # wrapped round
        ({"positive_points": [imaging_pb2.Point(x=float("inf"), y=5)]}, "positive_points[0]"),
        (
            {"positive_points": [imaging_pb2.Point(x=5, y=5)], "negative_points": [imaging_pb2.Point(x=-5, y=5)]},
            "negative_points[0]",
        ),
        ({"quad": [imaging_pb2.Point(x=float("nan"), y=1)] * 4}, "quad[0]"),
        ({"polygon": [imaging_pb2.Point(x=i % 300, y=i % 7) for i in range(5000)]}, "polygon"),
        ({"width": 2**31 - 1, "height": 2**31 - 1, "photo": b"", "quad": [imaging_pb2.Point(x=1, y=1)] * 4}, "width"),
    ],
)
def test_hints_the_stage_cannot_read_are_refused_naming_the_field(
    segmentation: seg_grpc.SegmentationServiceStub, fields: dict[str, object], field: str
) -> None:
    request: dict[str, object] = {"width": 320, "height": 240, "photo": PHOTO}
    assert refused_fields(segmentation, request | fields) == [field]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"mask": b"not an image"}, "mask"),
        ({"photo": b"not an image"}, "photo"),
        ({"photo": b"not an image", "mask": b"not an image either"}, "photo"),
    ],
)
def test_images_that_cannot_be_decoded_are_named(
    segmentation: seg_grpc.SegmentationServiceStub, fields: dict[str, bytes], field: str
) -> None:
    request: dict[str, object] = {"width": 320, "height": 240, "photo": PHOTO, "mask": imaging.encode_mask(MASK)}
    assert refused_fields(segmentation, request | fields) == [field]


def test_a_click_on_the_photos_edge_is_taken_as_the_gateway_takes_it(
    segmentation: seg_grpc.SegmentationServiceStub,
) -> None:
    """The gateway lets a click sit up to a pixel outside the photo; the stage's new check refused
    those (a review of this batch found it), failing jobs the submit had accepted."""
    request = seg_pb.SegmentRequest(
        width=320,
        height=240,
        photo=PHOTO,
        positive_points=[imaging_pb2.Point(x=-0.5, y=200), imaging_pb2.Point(x=320.9, y=200)],
    )
    try:
        segmentation.Segment(request, timeout=60)
    except grpc.RpcError as exc:
        assert exc.code() != grpc.StatusCode.INVALID_ARGUMENT, exc.details()  # type: ignore[attr-defined]
