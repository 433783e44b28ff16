"""The gateway in-process over real Redis and real gRPC stages."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2

from devstack import scenes
from gateway.auth.principal import Scope
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.v1 import render_service_pb2 as pb
from render.v1 import render_service_pb2_grpc as pb_grpc
from render_client.client import RenderClient, material_swap_request, room_render, room_render_request
from renderkit import imaging
from renderkit.errors import status_details, unpack_detail
from tests.conftest import gateway_settings
from tests.credentials import bearer, client_for, key_for
from tests.outputs import output_path, read_output

SCENE = scenes.room_scene(320, 240)
PHOTO = imaging.encode(SCENE.photo)[0]
SWATCH = imaging.encode(scenes.plank_texture(64))[0]
QUAD = [(float(x), float(y)) for x, y in SCENE.quad]


def details(exc: grpc.RpcError, kind: type) -> object:
    return unpack_detail(status_details(exc.trailing_metadata()), kind)  # type: ignore[attr-defined, arg-type]


@pytest.fixture()
def client(gateway_address: str, redis_url: str) -> RenderClient:
    return client_for(gateway_address, redis_url, "it-tests")


def test_a_swap_runs_to_success_with_outputs(client: RenderClient) -> None:
    job = client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD, project_id="kitchen")).job
    assert job.state == pb.JOB_STATE_QUEUED and job.total_steps == 4
    done = client.wait(job.id, timeout=60)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    full, preview = done.result.outputs
    assert (full.name, full.width, full.height, full.content_type) == ("full", 320, 240, "image/jpeg")
    assert (preview.name, preview.width) == ("preview", 320)  # never enlarged
    assert full.uri == f"local:renders/it-tests/kitchen/{job.id}/full.jpg"  # a key, not the server's path
    stored = output_path(full).read_bytes()
    import hashlib

    assert hashlib.sha256(stored).hexdigest() == full.sha256 and len(stored) == full.size_bytes
    assert done.result.geometry_source == "quad" and done.result.scale_source == "repeats"
    # Inputs are deleted once the job has ended; outputs stay.
    storage_root = output_path(full).parents[4]
    deadline = time.monotonic() + 5
    while (storage_root / "uploads" / job.id).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (storage_root / "uploads" / job.id).exists()


def test_validation_errors_name_the_field(client: RenderClient) -> None:
    request = material_swap_request(b"not an image", SWATCH, quad=QUAD[:3])
    with pytest.raises(grpc.RpcError) as info:
        client.submit(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = details(info.value, error_details_pb2.BadRequest)
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert {v.field for v in bad.field_violations} == {"material_swap.photo.data", "material_swap.hints.quad"}


def test_a_private_address_url_is_refused(client: RenderClient) -> None:
    for url in ("http://127.0.0.1:9/room.jpg", "http://169.254.169.254/latest/meta-data", "http://[::1]/a.jpg"):
        with pytest.raises(grpc.RpcError) as info:
            client.submit(material_swap_request(url, SWATCH, quad=QUAD))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        bad = details(info.value, error_details_pb2.BadRequest)
        assert [v.field for v in bad.field_violations] == ["material_swap.photo.url"]  # type: ignore[attr-defined]


def test_idempotent_resubmit_returns_the_same_job(client: RenderClient) -> None:
    request = material_swap_request(PHOTO, SWATCH, quad=QUAD, idempotency_key=f"key-{time.time_ns()}")
    first = client.submit(request)
    second = client.submit(request)
    assert second.job.id == first.job.id and second.deduplicated and not first.deduplicated
    changed = material_swap_request(PHOTO, SWATCH, quad=QUAD, idempotency_key=request.idempotency_key, repeats=3)
    with pytest.raises(grpc.RpcError) as info:
        client.submit(changed)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_a_quad_wholly_below_the_photo_fails_as_an_empty_surface(client: RenderClient) -> None:
    below = [(x, y + 240.0) for x, y in QUAD]  # within the corners' bounds, but below the photo
    done = client.wait(client.submit(material_swap_request(PHOTO, SWATCH, quad=below)).job.id, timeout=60)
    assert done.state == pb.JOB_STATE_FAILED
    assert done.error.code == pb.ERROR_CODE_VALIDATION_FAILED and "mask is empty" in done.error.message


def test_jobs_are_private_to_their_tenant(client: RenderClient, gateway_address: str, redis_url: str) -> None:
    job = client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job
    with client_for(gateway_address, redis_url, "someone-else") as other, pytest.raises(grpc.RpcError) as info:
        other.get(job.id)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_resumes_after_any_cursor(client: RenderClient) -> None:
    photo = imaging.encode(SCENE.photo, quality=91)[0]  # not in the geometry cache yet
    job = client.submit(material_swap_request(photo, SWATCH, quad=QUAD)).job
    events = list(client.watch(job.id, timeout=60))
    assert events[-1].state == pb.JOB_STATE_SUCCEEDED
    assert [e.message for e in events if e.message.startswith("Step") and e.stage_progress == 0] == [
        "Step 1/4: outlining the surface with the quad",  # a quad alone: the projection draws it
        "Step 2/4: estimating geometry",
        "Step 3/4: projecting the material",
        "Step 4/4: writing outputs",
    ]
    assert any(
        e.message.startswith(
            "Step 2/4: plane from the quad, confidence 1.00, 60° field of view assumed; scale from a repeat count"
        )
        and e.stage_progress == 1.0
        for e in events
    )
    middle = events[3]
    assert [e.cursor for e in client.watch(job.id, after=middle.cursor)] == [e.cursor for e in events[4:]]
    # Not a cursor, and one past what Redis takes as a stream id (2^64 - 1 a part), which would
    # fail the gateway's one read of every watched job.
    for cursor in ("not-a-cursor", "1-18446744073709551616", "99999999999999999999-0"):
        with pytest.raises(grpc.RpcError) as info:
            list(client.watch(job.id, after=cursor))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, cursor
    with pytest.raises(grpc.RpcError) as info:  # the largest is a cursor: past this ended job's end
        list(client.watch(job.id, after="18446744073709551615-18446744073709551615", timeout=20))
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_refinement_without_a_provider_fails_with_provider_unavailable(client: RenderClient) -> None:
    job = client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD, refine=True)).job
    done = client.wait(job.id, timeout=60)
    assert done.state == pb.JOB_STATE_FAILED
    assert done.error.code == pb.ERROR_CODE_PROVIDER_UNAVAILABLE and "no image provider" in done.error.message
    assert done.total_steps == 5


def test_without_a_provider_a_room_render_fails_but_its_dry_run_works(client: RenderClient) -> None:
    room = room_render("kitchen", floor="Oak", walls="White")
    failed = client.wait(client.submit(room_render_request(room)).job.id, timeout=30)
    assert failed.state == pb.JOB_STATE_FAILED and failed.error.code == pb.ERROR_CODE_PROVIDER_UNAVAILABLE
    room.options.dry_run = True
    dry = client.wait(client.submit(room_render_request(room)).job.id, timeout=30)
    assert dry.state == pb.JOB_STATE_SUCCEEDED, dry.error.message
    report = dry.result.generation
    assert report.dry_run and (report.provider, report.model) == ("openai", "gpt-image-1")
    assert "- Walls: White" in report.prompt and report.estimated_cost.cents > 0 and not dry.result.outputs


def test_without_a_provider_a_texture_edits_dry_run_is_priced_at_the_textures_shape(client: RenderClient) -> None:
    """A 3:1 texture is edited at the model's landscape size (its key's estimate): without a key it
    was priced as a square, a third lower, so a budget between the two passed the dry run and
    failed the real edit with BUDGET_EXCEEDED."""
    from render.imaging.v1 import imaging_pb2
    from render_client.client import texture_edit_request
    from services.generation.openai_images import OpenAIProvider
    from services.generation.providers import ImageTask

    texture = scenes.plank_texture(96)
    wide = cv2.resize(texture, (1536, 512))
    request = texture_edit_request(imaging.encode(wide, imaging_pb2.FORMAT_PNG)[0], "Add a marble vein", dry_run=True)
    done = client.wait(client.submit(request).job.id, timeout=30)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    task = ImageTask(kind="edit", prompt="Add a marble vein", image=wide, mask=np.full((512, 1536), 255, np.uint8))
    keyed = OpenAIProvider("sk-unused", model="gpt-image-1").estimate(task)
    estimated = done.result.generation.estimated_cost
    assert (estimated.tokens, estimated.cents) == (keyed.tokens, keyed.cents)


def test_submit_and_watch_streams_the_new_jobs_events_in_one_call(
    client: RenderClient, gateway_address: str, redis_url: str
) -> None:
    room = room_render("study", floor="Oak")
    room.options.dry_run = True
    request = room_render_request(room, idempotency_key=f"follow-{time.time_ns()}")
    events = list(client.submit_and_watch(request, timeout=30))
    first, last = events[0], events[-1]
    assert first.state == pb.JOB_STATE_QUEUED and first.job_id and first.cursor
    assert last.state == pb.JOB_STATE_SUCCEEDED and last.result.generation.dry_run
    assert {e.job_id for e in events} == {first.job_id}
    # The same events as a watch of the job from its start, cursor for cursor.
    assert [e.cursor for e in client.watch(first.job_id, timeout=10)] == [e.cursor for e in events]
    # A repeat of the idempotency key follows the first request's job.
    assert [e.cursor for e in client.submit_and_watch(request, timeout=30)] == [e.cursor for e in events]
    # A request SubmitRender refuses ends the call with its error, before any event.
    invalid = material_swap_request(b"not an image", SWATCH, quad=QUAD)
    with pytest.raises(grpc.RpcError) as info:
        next(iter(client.submit_and_watch(invalid, timeout=10)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Following the job needs the read scope as well as render.
    render_only = key_for(redis_url, "it-tests", frozenset({Scope.RENDER}))
    with RenderClient(gateway_address, api_key=render_only) as limited, pytest.raises(grpc.RpcError) as denied:
        next(iter(limited.submit_and_watch(room_render_request(room), timeout=10)))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_caller_that_waits_for_the_outcome_is_sent_only_that(client: RenderClient) -> None:
    room = room_render("pantry", floor="Oak")
    room.options.dry_run = True
    first, last = list(client.submit_and_watch(room_render_request(room), timeout=30, outcome_only=True))
    assert first.state == pb.JOB_STATE_QUEUED and first.job_id
    assert last.state == pb.JOB_STATE_SUCCEEDED and last.result.generation.dry_run and last.job_id == first.job_id
    # Every event was still recorded: a full watch replays the steps between, ending on the same one.
    every = list(client.watch(first.job_id, timeout=10))
    assert len(every) > 4 and [every[0].cursor, every[-1].cursor] == [first.cursor, last.cursor]
    assert [e.cursor for e in client.watch(first.job_id, timeout=10, outcome_only=True)] == [last.cursor]
    # From a cursor past the first event too, and through wait (which asks for the outcome only).
    assert [e.cursor for e in client.watch(first.job_id, after=every[2].cursor, outcome_only=True)] == [last.cursor]
    assert client.wait(first.job_id, timeout=10).state == pb.JOB_STATE_SUCCEEDED


def test_a_watch_past_an_ended_jobs_last_event_ends_at_once_with_out_of_range(client: RenderClient) -> None:
    room = room_render("attic", floor="Oak")
    room.options.dry_run = True
    events = list(client.submit_and_watch(room_render_request(room), timeout=30))
    job_id, last = events[0].job_id, events[-1]
    # From the event before the last: the last one, and the stream ends.
    assert [e.cursor for e in client.watch(job_id, after=events[-2].cursor, timeout=10)] == [last.cursor]
    # From the last (or past it), nothing will ever follow: a clear error (before, the watch waited
    # out its deadline: DEADLINE_EXCEEDED).
    past = f"{int(last.cursor.split('-')[0]) + 1}-0"
    for cursor, outcome_only in ((last.cursor, False), (last.cursor, True), (past, False)):
        with pytest.raises(grpc.RpcError) as info:
            list(client.watch(job_id, after=cursor, timeout=20, outcome_only=outcome_only))
        assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE and "has ended" in (info.value.details() or "")


def test_a_full_queue_sheds_load_with_retry_info(
    redis_url: str, stages: dict[str, str], tmp_path: Path, start_gateway: Callable[[GatewaySettings], Gateway]
) -> None:
    import redis

    redis.Redis.from_url(redis_url + "/5").flushdb()
    settings = gateway_settings(redis_url + "/5", tmp_path, stages, queue_limit=1, dispatch=False)
    gateway = start_gateway(settings)
    with client_for(f"127.0.0.1:{gateway.port}", redis_url + "/5", "public") as shed:
        shed.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD))
        with pytest.raises(grpc.RpcError) as info:
            shed.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details() == "the render queue is full; retry later"  # not the queue's size
    assert isinstance(details(info.value, error_details_pb2.RetryInfo), error_details_pb2.RetryInfo)
    # Nothing of the refused request stays behind in storage.
    assert len(list((tmp_path / "uploads").iterdir())) == 1


def test_cancel_while_queued_and_list(
    redis_url: str, stages: dict[str, str], tmp_path: Path, start_gateway: Callable[[GatewaySettings], Gateway]
) -> None:
    import redis

    redis.Redis.from_url(redis_url + "/6").flushdb()
    gateway = start_gateway(gateway_settings(redis_url + "/6", tmp_path, stages, dispatch=False))
    with client_for(f"127.0.0.1:{gateway.port}", redis_url + "/6", "public") as c:
        ids = [
            c.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD, project_id=f"p{i % 2}")).job.id for i in range(5)
        ]
        cancelled = c.cancel(ids[0])
        assert cancelled.state == pb.JOB_STATE_CANCELLED and cancelled.HasField("end_time")
        assert c.cancel(ids[0]).state == pb.JOB_STATE_CANCELLED  # idempotent
        first = c.list(page_size=2)
        second = c.list(page_size=2, page_token=first.next_page_token)
        third = c.list(page_size=2, page_token=second.next_page_token)
        listed = [j.id for page in (first, second, third) for j in page.jobs]
        assert listed == ids[::-1] and third.next_page_token == ""
        assert {j.id for j in c.list(project_id="p1").jobs} == {ids[1], ids[3]}
        with pytest.raises(grpc.RpcError) as info:
            c.list(page_token="@@@")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_is_serving(gateway_address: str) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(gateway_address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="render.v1.RenderService"), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_mask_only_swap(client: RenderClient) -> None:
    mask = np.zeros((240, 320), np.uint8)
    mask[150:230, 40:280] = 255
    request = material_swap_request(PHOTO, SWATCH, quad=QUAD, mask=imaging.encode_mask(mask))
    done = client.wait(client.submit(request).job.id, timeout=60)
    assert done.state == pb.JOB_STATE_SUCCEEDED
    out = read_output(done.result.outputs[0])
    original = SCENE.photo.astype(int)
    assert np.abs(out[20:140].astype(int) - original[20:140]).mean() < 3  # outside the mask: the photo
    assert np.abs(out[170:220, 60:260].astype(int) - original[170:220, 60:260]).mean() > 15


def test_clicks_outline_the_surface_while_the_quad_fixes_the_plane(client: RenderClient) -> None:
    photo = SCENE.photo.copy()
    photo[170:200, 120:200] = (40, 45, 70)  # a sofa on the floor
    request = material_swap_request(imaging.encode(photo)[0], SWATCH, quad=QUAD)
    hints = request.material_swap.hints
    hints.positive_points.add(x=60, y=225)
    hints.negative_points.add(x=160, y=185)
    hints.box.x_min, hints.box.y_min, hints.box.x_max, hints.box.y_max = 0, 110, 320, 240
    done = client.wait(client.submit(request).job.id, timeout=60)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    out = read_full(done)
    assert np.abs(out[175:195, 130:190].astype(int) - photo[175:195, 130:190]).mean() < 4  # the sofa stays
    assert np.abs(out[215:235, 40:80].astype(int) - photo[215:235, 40:80]).mean() > 10  # the floor changed


def test_renderctl_swaps_from_clicks_with_the_material_at_its_metric_size(
    gateway_address: str, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Clicks, a box and a metric scale from the command line: before, renderctl could send a quad,
    # a mask and repeats only.
    from render_client.cli import main

    photo = SCENE.photo.copy()
    photo[170:200, 120:200] = (40, 45, 70)  # a sofa on the floor
    (tmp_path / "room.jpg").write_bytes(imaging.encode(photo)[0])
    (tmp_path / "planks.jpg").write_bytes(SWATCH)
    quad = ";".join(f"{x:g},{y:g}" for x, y in QUAD)
    argv = ["--address", gateway_address, "--api-key", key_for(redis_url, "it-renderctl"), "submit"]
    argv += ["--photo", str(tmp_path / "room.jpg"), "--swatch", str(tmp_path / "planks.jpg"), "--quad", quad]
    argv += ["--quad-size", "4,3", "--swatch-size", "0.5", "--surface", "floor", "--points", "60,225"]
    argv += ["--negative-points", "160,185", "--box", "0,110,320,240", "--watch"]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    done = json_format.Parse(out[out.index("\n{") :], pb.Job())
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    assert done.result.scale_source == "swatch_size"
    rendered = read_full(done)
    assert np.abs(rendered[175:195, 130:190].astype(int) - photo[175:195, 130:190]).mean() < 4  # the sofa stays
    assert np.abs(rendered[215:235, 40:80].astype(int) - photo[215:235, 40:80]).mean() > 10  # the floor changed


def read_full(job: pb.Job) -> np.ndarray:
    return read_output(job.result.outputs[0])


def test_normal_and_roughness_maps_on_request(client: RenderClient) -> None:
    request = material_swap_request(PHOTO, SWATCH, quad=QUAD)
    request.output.include_material_maps = True
    done = client.wait(client.submit(request).job.id, timeout=60)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    outputs = {o.name: o for o in done.result.outputs}
    assert set(outputs) == {"full", "preview", "normal", "roughness"}
    assert outputs["normal"].content_type == "image/png" and (outputs["normal"].width, outputs["normal"].height) == (
        64,
        64,
    )
    normal = read_output(outputs["normal"])
    assert normal[..., 0].mean() > 200  # mostly facing up (z is stored in blue)


def test_variants_share_one_geometry_and_a_later_job_reuses_it(
    client: RenderClient, gateway_address: str, redis_url: str
) -> None:
    photo = imaging.encode(SCENE.photo, quality=93)[0]  # a photo no other test sends: a fresh cache key
    tiles = imaging.encode(scenes.tile_texture(64))[0]
    # The polygon makes segmentation refine the mask on the photo: a quad alone is drawn, not cached.
    request = material_swap_request(photo, SWATCH, quad=QUAD, polygon=QUAD)
    request.material_swap.variant_swatches.add(data=tiles)
    first = client.wait(client.submit(request).job.id, timeout=60)
    assert first.state == pb.JOB_STATE_SUCCEEDED, first.error.message
    names = [o.name for o in first.result.outputs]
    assert names == ["full", "preview", "v1-full", "v1-preview"] and not first.result.geometry_reused
    planks, tiled = (read_output(o) for o in (first.result.outputs[0], first.result.outputs[2]))
    assert np.abs(planks.astype(int) - tiled)[150:230, 40:280].mean() > 10  # each variant has its own swatch
    assert np.abs(planks.astype(int) - tiled)[10:100].mean() < 2  # over the same photo
    first_events = [e.message for e in client.watch(first.id)]
    assert "Step 3/4: projecting the material (2 swatches)" in first_events

    again = client.wait(client.submit(material_swap_request(photo, tiles, quad=QUAD, polygon=QUAD)).job.id, timeout=60)
    assert again.state == pb.JOB_STATE_SUCCEEDED and again.result.geometry_reused
    messages = [e.message for e in client.watch(again.id)]
    assert "Step 1/4: segmenting the surface (reused from an earlier render of this photo)" in messages
    assert "Step 2/4: estimating geometry (reused from an earlier render of this photo)" in messages
    reused = read_output(again.result.outputs[0])
    assert np.abs(reused.astype(int) - tiled).mean() < 1  # the same render as the variant
    with client_for(gateway_address, redis_url, "it-tests-stranger") as stranger:  # another tenant's own
        theirs = stranger.wait(stranger.submit(material_swap_request(photo, tiles, quad=QUAD, polygon=QUAD)).job.id, 60)
    assert theirs.state == pb.JOB_STATE_SUCCEEDED and not theirs.result.geometry_reused

    moved = material_swap_request(photo, tiles, quad=[(x + 3, y) for x, y in QUAD], polygon=QUAD)
    other = client.wait(client.submit(moved).job.id, timeout=60)
    assert other.state == pb.JOB_STATE_SUCCEEDED and not other.result.geometry_reused  # other hints, new key
    alone = client.wait(client.submit(material_swap_request(photo, tiles, quad=QUAD)).job.id, timeout=60)
    assert alone.state == pb.JOB_STATE_SUCCEEDED and not alone.result.geometry_reused
    assert np.abs(read_output(alone.result.outputs[0]).astype(int) - tiled).mean() < 2  # drawn as segmentation did


def test_a_stage_over_its_deadline_fails_the_job_with_timeout(client: RenderClient) -> None:
    big = cv2.resize(SCENE.photo, (3840, 2880))
    request = material_swap_request(imaging.encode(big)[0], SWATCH, quad=[(x * 12, y * 12) for x, y in QUAD])
    request.material_swap.options.stage_timeout_seconds = 0.001
    done = client.wait(client.submit(request).job.id, timeout=60)
    assert done.state == pb.JOB_STATE_FAILED
    assert done.error.code == pb.ERROR_CODE_TIMEOUT and "did not answer within 0.001 s" in done.error.message


def test_storage_that_cannot_hold_the_render_fails_with_upload_failed(
    redis_url: str, stages: dict[str, str], tmp_path: Path, start_gateway: Callable[[GatewaySettings], Gateway]
) -> None:
    import redis

    redis.Redis.from_url(redis_url + "/7").flushdb()  # its own ledger: no other gateway takes its jobs
    (tmp_path / "renders").write_text("a file where the renders folder should be")
    gateway = start_gateway(gateway_settings(redis_url + "/7", tmp_path, stages))
    with client_for(f"127.0.0.1:{gateway.port}", redis_url + "/7", "public") as c:
        done = c.wait(c.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job.id, timeout=60)
    assert done.state == pb.JOB_STATE_FAILED
    assert (done.error.code, done.error.message) == (pb.ERROR_CODE_UPLOAD_FAILED, "the render could not be stored")


def test_a_job_started_in_its_submit_does_not_read_its_images_back(
    redis_url: str,
    stages: dict[str, str],
    tmp_path: Path,
    start_gateway: Callable[[GatewaySettings], Gateway],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A swap submitted to an idle dispatching gateway starts there at once, and is handed the
    images its submit stored (a bucket read each, in production); one that is queued and taken
    reads them from storage."""
    import redis

    from renderkit.storage.local import LocalStorage

    redis.Redis.from_url(redis_url + "/21").flushdb()  # its own ledger: no other gateway takes its jobs
    read: list[str] = []
    get = LocalStorage.get

    def counting_get(self: LocalStorage, key: str) -> bytes:
        read.append(key)
        return get(self, key)

    monkeypatch.setattr(LocalStorage, "get", counting_get)
    gateway = start_gateway(gateway_settings(redis_url + "/21", tmp_path, stages, dispatcher_concurrency=1))
    with client_for(f"127.0.0.1:{gateway.port}", redis_url + "/21", "public") as c:
        first = c.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job  # the one slot is free
        second = c.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job  # queued behind it
        for job in (first, second):
            done = c.wait(job.id, timeout=60)
            assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    assert not [key for key in read if key.startswith(f"uploads/{first.id}/")]
    assert sorted(key.rsplit("/", 1)[-1] for key in read if key.startswith(f"uploads/{second.id}/")) == [
        "material_swap.photo",
        "material_swap.swatch",
    ]


def test_a_herringbone_swap_runs_to_success(client: RenderClient) -> None:
    plank = imaging.encode(scenes.plank_texture(256)[:64])[0]  # one 4:1 plank
    job = client.submit(material_swap_request(PHOTO, plank, quad=QUAD, repeats=3, herringbone=True)).job
    events = list(client.watch(job.id, timeout=60))
    assert events[-1].state == pb.JOB_STATE_SUCCEEDED, events[-1].error.message
    straight = client.submit(material_swap_request(PHOTO, plank, quad=QUAD, repeats=3)).job
    assert list(client.watch(straight.id, timeout=60))[-1].state == pb.JOB_STATE_SUCCEEDED
    laid, plain = (read_output(client.get(j.id).result.outputs[0]) for j in (job, straight))
    inside = SCENE.floor_mask == 255
    assert np.abs(laid.astype(int) - plain.astype(int))[inside].mean() > 5  # the planks are laid differently


def test_a_huge_job_id_is_refused_without_echo(client: RenderClient, gateway_address: str, redis_url: str) -> None:
    with grpc.insecure_channel(gateway_address) as channel, pytest.raises(grpc.RpcError) as info:
        pb_grpc.RenderServiceStub(channel).GetJob(
            pb.GetJobRequest(job_id="x" * 1_000_000), timeout=10, metadata=bearer(key_for(redis_url, "it-tests"))
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert len(info.value.details() or "") < 100  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as missing:
        client.get("no-such-job")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_an_oversized_inline_upload_is_refused_by_the_message_limit(gateway: Gateway, redis_url: str) -> None:
    """MAX_REQUEST_BYTES is the server's receive limit: gRPC refuses the request from its length
    prefix, so the gateway never holds it. A caller without a credential is refused before its
    request is read at all."""
    limit = gateway.settings.max_request_bytes
    request = material_swap_request(b"\xff\xd8" + b"\0" * (limit + 1024), SWATCH, quad=QUAD)
    for metadata, code in (
        (bearer(key_for(redis_url, "it-tests")), grpc.StatusCode.RESOURCE_EXHAUSTED),
        ((), grpc.StatusCode.UNAUTHENTICATED),
    ):
        with (
            grpc.insecure_channel(
                f"127.0.0.1:{gateway.port}", options=[("grpc.max_send_message_length", 2 * limit)]
            ) as channel,
            pytest.raises(grpc.RpcError) as info,
        ):
            pb_grpc.RenderServiceStub(channel).SubmitRender(request, timeout=30, metadata=metadata)
        assert info.value.code() == code  # type: ignore[attr-defined]


def test_a_call_without_a_credential_is_refused_before_its_request_is_read(gateway: Gateway) -> None:
    """gRPC reads and parses a unary request whole before its handler runs: the credential is
    checked from the call's metadata first, so a request without one (here, bytes that are not
    even its message) costs the gateway nothing to refuse."""
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        submit: Any = channel.unary_unary("/render.v1.RenderService/SubmitRender")
        with pytest.raises(grpc.RpcError) as refused:
            submit(b"\xff\xff\xff\xff\xff" * 1000, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        watch: Any = channel.unary_stream("/render.v1.RenderService/WatchJob")
        with pytest.raises(grpc.RpcError) as refused:
            list(watch(b"\xff\xff\xff\xff\xff", timeout=10))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_a_request_that_is_not_its_message_is_invalid_argument_saying_which(
    gateway_address: str, redis_url: str
) -> None:
    """gRPC's own answer to bytes that do not parse was UNKNOWN with the parser's class and words;
    now the call's own type is named."""
    metadata = bearer(key_for(redis_url, "it-tests"))
    with grpc.insecure_channel(gateway_address) as channel:
        for method, kind, message in (
            ("GetJob", "unary_unary", "render.v1.GetJobRequest"),
            ("WatchJob", "unary_stream", "render.v1.WatchJobRequest"),
        ):
            call = getattr(channel, kind)(f"/render.v1.RenderService/{method}")
            with pytest.raises(grpc.RpcError) as refused:
                answer = call(b"\xff\xff\xff\xff\xff", timeout=10, metadata=metadata)
                if kind == "unary_stream":
                    list(answer)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            assert refused.value.details() == f"the request is not a valid {message} message"  # type: ignore[attr-defined]


def test_fields_this_version_does_not_know_are_not_kept_with_the_job(gateway_address: str, redis_url: str) -> None:
    """The job's request was stored as sent, unknown fields and all: 8 MB of them stayed in the
    ledger for the job's retention and were read back with every read of the job (a review found
    it). They are dropped at submit."""
    import redis as redis_client

    from tests.credentials import bearer, key_for

    key = key_for(redis_url, "unknown-fields")
    sent = room_render_request(room_render("hall", dry_run=True)).SerializeToString()
    junk = b"\xc2\x3e\xa0\x8d\x06" + b"x" * 100_000  # tag (1000 << 3 | 2), then the varint 100,000
    with grpc.insecure_channel(gateway_address) as channel:
        submit = channel.unary_unary(
            "/render.v1.RenderService/SubmitRender",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.SubmitRenderResponse.FromString,
        )
        job = submit(sent + junk, metadata=bearer(key), timeout=30).job
    stored = redis_client.Redis.from_url(redis_url).hget(f"job:{job.id}", "request")
    assert isinstance(stored, bytes) and len(stored) < 1_000
    assert pb.SubmitRenderRequest.FromString(stored) == pb.SubmitRenderRequest.FromString(sent)


def test_a_surface_named_alone_where_no_model_is_deployed_fails_as_the_deployments_fault(
    gateway_address: str, redis_url: str
) -> None:
    """Finding a named surface without hints needs the segmentation model: where none is deployed
    the job failed VALIDATION_FAILED and was charged as the caller's bad request (a review found
    it). It fails PIPELINE_ERROR, refunded."""
    from tests.credentials import bearer, key_for

    key = key_for(redis_url, "no-model")
    request = material_swap_request(PHOTO, SWATCH)
    request.material_swap.surface = pb.SURFACE_FLOOR
    with RenderClient(gateway_address, api_key=key) as client, grpc.insecure_channel(gateway_address) as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        before = stub.GetBalance(pb.GetBalanceRequest(), metadata=bearer(key), timeout=10).balance
        done = client.wait(client.submit(request).job.id, timeout=60)
        after = stub.GetBalance(pb.GetBalanceRequest(), metadata=bearer(key), timeout=10).balance
    assert done.state == pb.JOB_STATE_FAILED and done.error.code == pb.ERROR_CODE_PIPELINE_ERROR
    assert "not deployed" in done.error.message and after == before
