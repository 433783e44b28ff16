"""The projection servicer's input checks: grout colour, transparency, the memory budget, the
surface as a mask or an outline."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import cv2
import numpy as np
import pytest
from google.rpc import error_details_pb2

from devstack import scenes
from render.imaging.v1 import imaging_pb2
from render.projection.v1 import projection_service_pb2 as pb
from renderkit import budget, homography, imaging
from renderkit.errors import status_details, unpack_detail
from renderkit.shared_work import WORKERS
from services.projection import server
from services.projection.composite import Sampling
from services.projection.server import ProjectionServicer
from tests.forged import forged_jpeg

SCENE = scenes.room_scene(320, 240)


class Aborted(Exception):
    """What a fake context's abort raises: the status code and the BadRequest fields."""

    def __init__(self, code: Any, fields: dict[str, str]) -> None:
        super().__init__(code)
        self.code, self.fields = code, fields


class FakeContext:
    """Just what the servicer uses of grpc.aio.ServicerContext."""

    async def abort(self, code: Any, message: str, trailing_metadata: Any = ()) -> None:
        bad = unpack_detail(status_details(trailing_metadata), error_details_pb2.BadRequest)
        fields = {v.field: v.description for v in bad.field_violations} if bad else {}  # type: ignore[attr-defined]
        raise Aborted(code, fields)


def project(request: pb.ProjectRequest, servicer: ProjectionServicer | None = None) -> pb.ProjectResponse:
    return asyncio.run((servicer or ProjectionServicer()).Project(request, FakeContext()))  # type: ignore[arg-type]


def swap_request(swatch: bytes, **fields: Any) -> pb.ProjectRequest:
    request = pb.ProjectRequest(
        photo=imaging.encode(SCENE.photo)[0],
        swatch=swatch,
        mask_png=imaging.encode_mask(SCENE.floor_mask),
        homography=imaging_pb2.Homography(m=homography.to_list(SCENE.homography)),
        repeats_u=4,
        repeats_v=4,
        output=imaging_pb2.OutputSpec(format=imaging_pb2.FORMAT_PNG),
    )
    request.MergeFrom(pb.ProjectRequest(**fields))
    if "mask_png" in fields:  # MergeFrom keeps a field the given value leaves empty
        request.mask_png = fields["mask_png"]
    return request


def cut_out_tiles() -> bytes:
    """A tile swatch whose 4 px joints are transparent, black underneath (as cut-outs are saved)."""
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[:, :, :3] = (40, 60, 150)
    rgba[4:60, 4:60, 3] = 255
    ok, data = cv2.imencode(".png", rgba)
    assert ok
    return data.tobytes()


def test_transparent_joints_show_the_grout_colour_and_are_reported() -> None:
    grey = project(swap_request(cut_out_tiles()))
    assert grey.swatch_transparent_fraction == pytest.approx(1 - 56 * 56 / 64**2)
    white = project(swap_request(cut_out_tiles(), grout_color="#FFFFFF"))
    inside = SCENE.floor_mask == 255
    grey_floor = imaging.decode_bgr(grey.images[0].data)[inside].astype(int)
    white_floor = imaging.decode_bgr(white.images[0].data)[inside].astype(int)
    assert white_floor.mean() > grey_floor.mean() + 5  # the joints carry the grout's colour
    # Without the grout the black stored under the joints shows as black lines (the darkest 1% of
    # the floor's pixels then sum to 0); with it the darkest are still grout grey in shade.
    assert np.percentile(grey_floor.sum(axis=1), 1) > 90


def test_the_response_says_which_estimate_of_the_light_shaded_the_material() -> None:
    swatch = imaging.encode(np.full((32, 32, 3), 150, np.uint8))[0]
    assert project(swap_request(swatch)).shading_source == "texture_space"
    # A surface too small to rectify is shaded by the blur, and says so.
    sliver = np.zeros(SCENE.floor_mask.shape, np.uint8)
    sliver[200:203, 100:110] = 255
    request = swap_request(swatch)
    request.mask_png = imaging.encode_mask(sliver)
    assert project(request).shading_source == "blur"


def test_the_maps_are_made_from_the_grouted_swatch() -> None:
    response = project(swap_request(cut_out_tiles(), material_maps=True))
    names = [image.name for image in response.images]
    assert names[-2:] == ["normal", "roughness"]


def test_a_cut_out_swatchs_normal_map_lays_its_joints_below_its_tiles() -> None:
    # Dark tiles (sRGB 60) and the default light grout #C8C8C8 in the transparent joints: by the
    # grout's luminance alone the joints stood as ridges.
    rgba = np.zeros((512, 512, 4), np.uint8)
    rgba[:, :, :3] = 60
    rgba[6:250, 6:250, 3] = rgba[262:506, 6:250, 3] = rgba[6:250, 262:506, 3] = rgba[262:506, 262:506, 3] = 255
    response = project(swap_request(imaging.encode(rgba, imaging_pb2.FORMAT_PNG)[0], material_maps=True))
    normal = next(image for image in response.images if image.name == "normal")
    green = imaging.decode_bgr(normal.data)[:, :, 1].astype(int)  # y, +up (OpenGL)
    assert green[244:249, 100:150].mean() < 120  # above the joint at rows 250-261: facing down into it
    assert green[263:268, 100:150].mean() > 136  # below it: facing up out of it


def test_a_malformed_grout_colour_is_refused() -> None:
    with pytest.raises(Aborted) as info:
        project(swap_request(cut_out_tiles(), grout_color="grey"))
    assert set(info.value.fields) == {"grout_color"}


def test_the_budget_is_checked_from_the_headers_before_anything_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[str] = []
    monkeypatch.setattr(server, "_project", lambda *args: decoded.append("decoded"))
    photo = forged_jpeg(6000, 6000)
    mask = imaging.encode_mask(np.zeros((8, 8), np.uint8))
    request = swap_request(imaging.encode(scenes.plank_texture(64))[0])
    request.photo, request.mask_png = photo, mask
    with pytest.raises(Aborted) as info:
        project(request)
    assert set(info.value.fields) == {"mask_png"}  # the mask is not the (claimed) size of the photo
    request.mask_png = forged_mask(6000, 6000)
    small = ProjectionServicer(memory_budget_bytes=1024**3)
    with pytest.raises(Aborted) as info:
        project(request, small)
    assert info.value.fields["photo"].startswith("a 6000x6000 photo needs about")
    assert decoded == []


def forged_mask(width: int, height: int) -> bytes:
    """encode_mask's PNG of a small mask, its IHDR claiming another size."""
    data = bytearray(imaging.encode_mask(np.zeros((8, 8), np.uint8)))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


def test_the_default_budget_is_the_requests() -> None:
    assert ProjectionServicer().memory_budget_bytes == budget.DEFAULT_REQUEST_BYTES


def outline_of(quad: np.ndarray) -> list[imaging_pb2.Point]:
    return [imaging_pb2.Point(x=float(x), y=float(y)) for x, y in quad]


def test_an_outline_stands_in_for_the_mask_and_renders_what_its_drawn_mask_does() -> None:
    swatch = imaging.encode(scenes.plank_texture(64))[0]
    drawn = imaging.encode_mask(imaging.polygon_mask(SCENE.quad, 320, 240))  # as segmentation draws a quad
    from_mask = project(swap_request(swatch, mask_png=drawn))
    from_outline = project(swap_request(swatch, mask_png=b"", outline=outline_of(SCENE.quad)))
    assert [i.data for i in from_outline.images] == [i.data for i in from_mask.images]
    # ... and it is the surface: a quad moved elsewhere renders something else.
    moved = project(swap_request(swatch, mask_png=b"", outline=outline_of(SCENE.quad + np.array([0.0, -40.0]))))
    assert moved.images[0].data != from_mask.images[0].data


@pytest.mark.parametrize(
    ("outline", "field"),
    [
        ([], "mask_png"),  # neither a mask nor an outline
        ([(10.0, 10.0), (100.0, 10.0)], "outline"),  # two points outline nothing
        ([(10.0, 10.0), (float("nan"), 10.0), (50.0, 90.0)], "outline[1]"),
        ([(10.0, 10.0), (100.0, 10.0), (50.0, 1e9)], "outline[2]"),  # far outside the photo
    ],
)
def test_an_unusable_outline_is_refused_naming_the_field(outline: list[tuple[float, float]], field: str) -> None:
    request = swap_request(imaging.encode(scenes.plank_texture(64))[0], mask_png=b"")
    request.outline.extend(imaging_pb2.Point(x=x, y=y) for x, y in outline)
    with pytest.raises(Aborted) as info:
        project(request)
    assert set(info.value.fields) == {field}


def bad_fields(request: pb.ProjectRequest) -> set[str]:
    """The fields the servicer's refusal of a request names (its status is INVALID_ARGUMENT)."""
    with pytest.raises(Aborted) as info:
        project(request)
    assert info.value.code.name == "INVALID_ARGUMENT"
    return set(info.value.fields)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"rotation_degrees": float("nan")}, "rotation_degrees"),  # was a ValueError: UNKNOWN
        ({"rotation_degrees": float("inf")}, "rotation_degrees"),
        ({"tile_aspect": float("nan")}, "tile_aspect"),
        ({"tile_aspect": -2.0}, "tile_aspect"),
        ({"homography": imaging_pb2.Homography(m=[1.0] * 8)}, "homography"),  # was reported as the photo's
        ({"homography": imaging_pb2.Homography(m=[0.0] * 9)}, "homography"),
        ({"output": imaging_pb2.OutputSpec(format=99)}, "output.format"),  # type: ignore[arg-type]  # was refused after rendering
        ({"output": imaging_pb2.OutputSpec(quality=101)}, "output.quality"),
        (
            {"output": imaging_pb2.OutputSpec(renditions=[imaging_pb2.Rendition(name=str(i)) for i in range(9)])},
            "output.renditions",
        ),
        (
            # an 18 KB request that asked for a 60,000 px enlargement allocated gigabytes
            {
                "output": imaging_pb2.OutputSpec(
                    renditions=[imaging_pb2.Rendition(name="u", max_side=60_000, upscale=True)]
                )
            },
            "output.renditions[0].max_side",
        ),
        (
            {"output": imaging_pb2.OutputSpec(renditions=[imaging_pb2.Rendition(name="s", max_side=-5)])},
            "output.renditions[0].max_side",
        ),
        (
            {
                "output": imaging_pb2.OutputSpec(
                    format=imaging_pb2.FORMAT_WEBP,
                    renditions=[imaging_pb2.Rendition(name="u", max_side=4096, upscale=True)],
                )
            },
            None,  # within WebP's sides: rendered
        ),
        ({"grout_color": "#-1-1-1"}, "grout_color"),  # int(..., 16) took the signs
        ({"grout_color": "#\uff11\uff12\uff13\uff14\uff15\uff16"}, "grout_color"),  # and other scripts' digits
    ],
)
def test_a_request_the_stage_cannot_meet_is_refused_naming_the_field(fields: dict[str, Any], field: str | None) -> None:
    request = swap_request(imaging.encode(scenes.plank_texture(64))[0])
    request.MergeFrom(pb.ProjectRequest(**{k: v for k, v in fields.items() if k not in ("homography", "output")}))
    for name in ("homography", "output"):
        if name in fields:
            getattr(request, name).CopyFrom(fields[name])
    if field is None:
        assert project(request).images[0].width == 4096
    else:
        assert bad_fields(request) == {field}


def test_a_webp_too_large_for_its_format_is_refused_as_the_outputs_fault() -> None:
    request = swap_request(imaging.encode(scenes.plank_texture(64))[0])
    request.photo, request.mask_png = forged_jpeg(16_400, 600), forged_mask(16_400, 600)
    request.output.CopyFrom(imaging_pb2.OutputSpec(format=imaging_pb2.FORMAT_WEBP))
    assert bad_fields(request) == {"output.format"}


@pytest.mark.parametrize("scale", [-1.0, 1e10, 1e-6])
def test_a_homography_renders_the_same_at_any_scale_and_sign(scale: float) -> None:
    """A homography is the same map at any scale: -H and 1e10 H rendered nothing (every pixel
    read as behind the camera), 1e-6 H was refused as singular."""
    swatch = imaging.encode(scenes.plank_texture(64))[0]
    plain = project(swap_request(swatch))
    scaled = swap_request(swatch)
    scaled.homography.CopyFrom(imaging_pb2.Homography(m=homography.to_list(scale * SCENE.homography)))
    image, expected = (imaging.decode_bgr(r.images[0].data) for r in (project(scaled), plain))
    assert np.abs(image.astype(int) - expected).max() <= 2
    assert not np.array_equal(image, imaging.decode_bgr(swap_request(swatch).photo))


def test_a_photo_of_one_pixel_renders() -> None:
    """cv2.compare took the scalar 255 for an array of one pixel and refused a 1 x 1 alpha."""
    request = swap_request(imaging.encode(scenes.plank_texture(64))[0])
    request.photo = imaging.encode(np.full((1, 1, 3), 90, np.uint8), imaging_pb2.FORMAT_PNG)[0]
    request.mask_png = imaging.encode_mask(np.full((1, 1), 255, np.uint8))
    request.homography.CopyFrom(imaging_pb2.Homography(m=homography.to_list(np.diag([1.0, 1.0, 1.0]))))
    assert project(request).images[0].width == 1


def test_sampling_started_before_a_photo_that_fails_to_decode_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Sampling] = []
    cancelled: list[Sampling] = []

    class Recorded(Sampling):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            started.append(self)

        def cancel(self) -> None:
            cancelled.append(self)
            super().cancel()

    monkeypatch.setattr(server, "Sampling", Recorded)
    request = swap_request(imaging.encode(scenes.plank_texture(64))[0], mask_png=b"", outline=outline_of(SCENE.quad))
    request.photo = corrupt_png(SCENE.photo)
    with pytest.raises(ValueError, match=r"^photo: "):
        server._project(request, request.photo, request.swatch, request.mask_png)
    assert len(started) == 1 and cancelled == started  # sampling had begun beside the decode
    assert all(span.done() for span in started[0].spans)


def corrupt_png(image: np.ndarray) -> bytes:
    """A PNG whose header (the size) reads and whose pixels do not decode."""
    data = bytearray(cv2.imencode(".png", image)[1].tobytes())
    start = data.index(b"IDAT") + 104
    data[start : start + 200] = bytes(range(200))
    return bytes(data)


def test_the_swatch_is_decoded_beside_the_photo_and_named_when_it_alone_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: dict[str, str] = {}
    decode_bgr, decode_swatch = imaging.decode_bgr, imaging.decode_swatch

    def photo(*args: Any, **kwargs: Any) -> np.ndarray:
        threads["photo"] = threading.current_thread().name
        return decode_bgr(*args, **kwargs)

    def swatch(*args: Any, **kwargs: Any) -> tuple[np.ndarray, float]:
        threads["swatch"] = threading.current_thread().name
        return decode_swatch(*args, **kwargs)

    monkeypatch.setattr(imaging, "decode_bgr", photo)
    monkeypatch.setattr(imaging, "decode_swatch", swatch)
    request = swap_request(imaging.encode(scenes.plank_texture(64))[0])
    server._project(request, request.photo, request.swatch, request.mask_png)
    assert threads["photo"] != threads["swatch"]
    request.swatch = corrupt_png(scenes.plank_texture(64))
    with pytest.raises(ValueError, match=r"^swatch: "):
        server._project(request, request.photo, request.swatch, request.mask_png)
    request.photo = corrupt_png(SCENE.photo)  # both fail: the photo is the one reported
    with pytest.raises(ValueError, match=r"^photo: "):
        server._project(request, request.photo, request.swatch, request.mask_png)


@pytest.mark.skipif(WORKERS < 2, reason="one core: the stage's pools have one thread")
def test_one_requests_slow_swatch_does_not_hold_up_another_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two requests' swatches are decoded at once: each decode here waits until the other has
    begun, which a single decoder thread (every request's swatch behind the one before) never lets
    happen."""
    both = threading.Barrier(2, timeout=10)
    decode_swatch = imaging.decode_swatch

    def swatch(*args: Any, **kwargs: Any) -> tuple[np.ndarray, float]:
        both.wait()
        return decode_swatch(*args, **kwargs)

    monkeypatch.setattr(imaging, "decode_swatch", swatch)
    request = swap_request(imaging.encode(scenes.plank_texture(64))[0])
    results: list[Any] = []

    def one() -> None:
        try:
            results.append(server._project(request, request.photo, request.swatch, request.mask_png))
        except threading.BrokenBarrierError as exc:
            results.append(exc)

    requests = [threading.Thread(target=one) for _ in range(2)]
    for thread in requests:
        thread.start()
    for thread in requests:
        thread.join()
    assert [type(result) for result in results] == [pb.ProjectResponse, pb.ProjectResponse]


def test_a_strip_that_fails_to_blend_fails_the_request_after_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.projection import composite

    blended: list[int] = []
    blend = composite._blend_strip

    def failing(out: np.ndarray, *args: Any) -> None:
        if not blended:
            blended.append(-1)
            raise RuntimeError("out of luck")
        time.sleep(0.01)  # slow, so strips would still be blending after the error if not waited for
        blend(out, *args)
        blended.append(args[7])  # its top row

    monkeypatch.setattr(composite, "_blend_strip", failing)
    monkeypatch.setattr(composite, "_STRIP_PIXELS", 2000)  # many strips
    request = swap_request(imaging.encode(scenes.plank_texture(64))[0])
    with pytest.raises(RuntimeError, match="out of luck"):
        server._project(request, request.photo, request.swatch, request.mask_png)
    count = len(blended)
    time.sleep(0.3)
    assert count > 2 and len(blended) == count  # the others were blended before the error was raised


def test_the_side_of_the_horizon_is_the_one_most_of_the_mask_is_on() -> None:
    """A mean of the mask's points let a small stray patch far past the horizon turn the map, and
    the surface in front was then sampled as if behind (a review of this batch found it)."""
    from services.projection.composite import Sampling

    height, width = 240, 320
    # The plane's horizon at row 100: points below it are in front (depth grows downwards).
    H = np.linalg.inv(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.01, -1.0]]))
    mask = np.zeros((height, width), np.uint8)
    mask[100:130] = 255  # the surface, just in front of its horizon
    mask[0:8] = 255  # a stray strip far behind it
    sampling = Sampling(np.full((16, 16, 3), 128, np.uint8), mask, H, 4.0, 4.0)
    depth = sampling.T[2] @ np.array([160.0, 120.0, 1.0])
    sampling.cancel()
    assert depth > 0
