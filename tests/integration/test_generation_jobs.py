"""Room renders, batches, texture edits and refinement through the gateway, over real Redis and real
gRPC stages, with the generation stage talking to a local server that speaks the OpenAI images API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
import redis
from google.rpc import error_details_pb2

from devstack import scenes
from gateway.ledger import keys
from render.imaging.v1 import imaging_pb2
from render.v1 import render_service_pb2 as pb
from render_client.client import (
    RenderClient,
    material_swap_request,
    room_batch_request,
    room_render,
    room_render_request,
    texture_edit_request,
)
from renderkit import imaging
from renderkit.errors import status_details, unpack_detail
from tests.credentials import client_for, key_for
from tests.openai_fake import REFUSE_MARKER, FakeOpenAI, Reply, textured_image
from tests.outputs import read_output

KITCHEN = room_render(
    "kitchen",
    name="Kitchen",
    room_id="kitchen-1",
    area=18.5,
    floor="Oak Natural 190",
    walls="Chalk White",
    ceiling="Matte White",
    style="scandinavian",
    lighting=pb.LIGHTING_WARM,
    time_of_day=pb.TIME_OF_DAY_EVENING,
    additional_prompt="A long dining table",
)


@pytest.fixture()
def client(generation_gateway_address: str, redis_url: str) -> Iterator[RenderClient]:
    with client_for(generation_gateway_address, redis_url + "/8", "gen-tests") as c:
        yield c


@pytest.fixture()
def fake(generation_openai: FakeOpenAI) -> FakeOpenAI:
    generation_openai.reset()
    generation_openai.requests.clear()
    return generation_openai


def violations(exc: grpc.RpcError) -> set[str]:
    bad = unpack_detail(status_details(exc.trailing_metadata()), error_details_pb2.BadRequest)  # type: ignore[attr-defined, arg-type]
    assert isinstance(bad, error_details_pb2.BadRequest)
    return {v.field for v in bad.field_violations}


def read(output: pb.OutputFile) -> np.ndarray:
    return read_output(output)


def test_a_room_render_sends_the_template_prompt_and_records_the_provider(
    client: RenderClient, fake: FakeOpenAI
) -> None:
    job = client.submit(room_render_request(KITCHEN, project_id="flat-7")).job
    assert job.total_steps == 3 and job.kind == "room_render"
    events = list(client.watch(job.id, timeout=30))
    done = client.get(job.id)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    messages = [e.message for e in events]
    assert "Step 1/3: building the prompt" in messages and "Step 2/3: rendering Kitchen" in messages
    assert any(m.startswith("Step 2/3: rendered by openai (gpt-image-1); cost") for m in messages)
    report = done.result.generation
    sent = fake.requests[0]["fields"]["prompt"]  # type: ignore[index]
    assert report.prompt == sent and sent.startswith("Professional architectural interior visualization")
    assert "- Floor: Oak Natural 190" in sent and "Lighting: warm, evening" in sent
    assert report.revised_prompt.startswith("Revised: ") and (report.provider, report.model) == (
        "openai",
        "gpt-image-1",
    )
    assert report.cost.tokens == 1100 and report.cost.cents > 0 and report.estimated_cost.cents > 0
    full, preview = done.result.outputs
    assert (full.width, full.height, preview.width) == (1024, 1024, 512)
    assert read(full).std() > 10  # a stored picture, not a link to the provider


def test_a_swatch_goes_to_the_provider_as_a_reference_image(client: RenderClient, fake: FakeOpenAI) -> None:
    swatch = imaging.encode(scenes.plank_texture(96))[0]
    room = room_render("living room", name="Living", floor="Walnut", floor_swatch=swatch)
    done = client.wait(client.submit(room_render_request(room)).job.id, timeout=30)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    call = fake.requests[0]
    assert call["path"] == "/v1/images/edits" and call["images"] == 1 and not call["has_mask"]
    assert "Reproduce the exact materials of the reference images (image 1: floor)" in done.result.generation.prompt


def test_a_custom_prompt_is_sent_as_given(client: RenderClient, fake: FakeOpenAI) -> None:
    room = room_render("kitchen", custom_prompt="A  minimalist kitchen\x07 at dawn")
    done = client.wait(client.submit(room_render_request(room)).job.id, timeout=30)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    assert fake.requests[0]["fields"]["prompt"] == "A minimalist kitchen at dawn"  # type: ignore[index]


def checkpointed(redis_url: str, job_id: str) -> set[str]:
    """The names of a job's checkpoints (the client fixture's database)."""
    check = redis.Redis.from_url(redis_url + "/8", decode_responses=True)
    try:
        return {str(name) for name in check.hkeys(keys.checkpoints(job_id))}
    finally:
        check.close()


def test_a_dry_run_returns_the_prompt_and_estimate_without_calling(
    client: RenderClient, fake: FakeOpenAI, redis_url: str
) -> None:
    room = room_render("kitchen", floor="Oak", dry_run=True)
    done = client.wait(client.submit(room_render_request(room)).job.id, timeout=30)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    report = done.result.generation
    assert report.dry_run and "- Floor: Oak" in report.prompt and report.estimated_cost.cents > 0
    assert report.cost.cents == 0 and not done.result.outputs and not fake.requests
    # The report costs nothing to ask for again, so it is not checkpointed; a paid call's answer is.
    assert "generation" not in checkpointed(redis_url, done.id)
    paid = client.wait(client.submit(room_render_request(room_render("kitchen", floor="Oak"))).job.id, timeout=30)
    assert paid.state == pb.JOB_STATE_SUCCEEDED and "generation" in checkpointed(redis_url, paid.id)


def test_over_budget_fails_before_spending(client: RenderClient, fake: FakeOpenAI) -> None:
    room = room_render("kitchen", floor="Oak", max_cents=1.0)
    done = client.wait(client.submit(room_render_request(room)).job.id, timeout=30)
    assert done.state == pb.JOB_STATE_FAILED and done.error.code == pb.ERROR_CODE_BUDGET_EXCEEDED
    assert "budget" in done.error.message and not fake.requests


def test_a_job_over_its_budget_after_a_billed_call_is_charged_what_it_spent(
    client: RenderClient, fake: FakeOpenAI
) -> None:
    """A blank image is paid for; the retry it needs would pass the budget, so the job fails with
    BUDGET_EXCEEDED (the caller's): its base and what the provider spent are kept, not the base alone."""
    fake.push(Reply("blank"))
    room = room_render("kitchen", floor="Oak", max_cents=20.0)
    done = client.wait(client.submit(room_render_request(room)).job.id, timeout=30)
    assert done.state == pb.JOB_STATE_FAILED and done.error.code == pb.ERROR_CODE_BUDGET_EXCEEDED, done.error
    assert len(fake.requests) == 1
    base, allowance = 2, 20  # the default price table: a room render's base, and the budget's cents
    assert base < done.credits_charged < base + allowance


def test_a_budget_over_the_server_cap_is_refused_naming_the_field(client: RenderClient) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.submit(room_render_request(room_render("kitchen", max_cents=1e6)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(info.value) == {"room_render.options.budget.max_cents"}


def test_a_prompt_that_must_be_refused_is_refused_at_submit(client: RenderClient, fake: FakeOpenAI) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.submit(room_render_request(room_render("kitchen", additional_prompt="gore on the walls")))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(info.value) == {"room_render.options.additional_prompt"}
    assert "graphic violence" in (info.value.details() or "")
    assert not fake.requests


def test_bad_generation_options_name_their_fields(client: RenderClient) -> None:
    room = room_render("kitchen")
    room.options.size = "800x600"
    room.room.area_square_meters = -3
    with pytest.raises(grpc.RpcError) as info:
        client.submit(room_render_request(room))
    assert violations(info.value) == {"room_render.options.size", "room_render.room.area_square_meters"}


def test_content_policy_fails_the_job_without_retry(client: RenderClient, fake: FakeOpenAI) -> None:
    room = room_render("kitchen", custom_prompt=f"A kitchen {REFUSE_MARKER}")
    done = client.wait(client.submit(room_render_request(room)).job.id, timeout=30)
    assert done.state == pb.JOB_STATE_FAILED and done.error.code == pb.ERROR_CODE_CONTENT_POLICY
    assert len(fake.requests) == 1


def test_blank_images_fail_the_quality_check(client: RenderClient, fake: FakeOpenAI) -> None:
    fake.push(Reply("blank"), Reply("blank"))
    done = client.wait(client.submit(room_render_request(room_render("kitchen"))).job.id, timeout=30)
    assert done.state == pb.JOB_STATE_FAILED and done.error.code == pb.ERROR_CODE_QUALITY_CHECK_FAILED
    assert "blank" in done.error.message and len(fake.requests) == 2


def test_a_texture_edit_writes_the_edit_high_res_preview_and_maps(client: RenderClient, fake: FakeOpenAI) -> None:
    texture = textured_image(640, 640, seed=5)
    mask = np.zeros((640, 640), np.uint8)
    mask[160:480, 160:480] = 255
    request = texture_edit_request(
        imaging.encode(texture, quality=98)[0],
        "Add a subtle marble vein",
        mask=imaging.encode_mask(mask),
        material_maps=True,
    )
    job = client.submit(request).job
    events = list(client.watch(job.id, timeout=30))
    done = client.get(job.id)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    assert "Step 2/3: editing the texture" in [e.message for e in events]
    sizes = {o.name: (o.width, o.height) for o in done.result.outputs}
    assert sizes == {
        "full": (640, 640),
        "2048": (2048, 2048),
        "preview": (512, 512),
        "normal": (640, 640),
        "roughness": (640, 640),
    }
    call = fake.requests[0]
    assert call["path"] == "/v1/images/edits" and call["has_mask"]
    edited = read(done.result.outputs[0]).astype(int)
    inner, outer = cv2.erode(mask, np.ones((9, 9))) > 0, cv2.dilate(mask, np.ones((9, 9))) == 0
    assert np.abs(edited - texture)[inner].mean() > 4 and np.abs(edited - texture)[outer].mean() < 3


def test_a_texture_edit_sends_its_additional_prompt(client: RenderClient, fake: FakeOpenAI) -> None:
    """Of a texture edit's options only size, style, lighting and time of day do not apply (the
    proto): additional_prompt was validated, then dropped."""
    request = texture_edit_request(imaging.encode(textured_image(256, 256))[0], "Add a marble vein")
    request.texture_edit.options.additional_prompt = "with  gold flecks"
    done = client.wait(client.submit(request).job.id, timeout=30)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    sent = fake.requests[0]["fields"]["prompt"]  # type: ignore[index]
    assert sent == "Add a marble vein\nwith gold flecks" == done.result.generation.prompt


def test_a_texture_edit_whose_mask_selects_nothing_fails_before_the_provider_is_paid(
    client: RenderClient, fake: FakeOpenAI
) -> None:
    texture = imaging.encode(textured_image(256, 256))[0]
    request = texture_edit_request(
        texture, "Add a marble vein", mask=imaging.encode_mask(np.zeros((256, 256), np.uint8))
    )
    done = client.wait(client.submit(request).job.id, timeout=30)
    assert done.state == pb.JOB_STATE_FAILED and done.error.code == pb.ERROR_CODE_VALIDATION_FAILED
    assert done.error.message == "texture_edit.mask: selects nothing to edit (no pixel is more than half white)"
    assert not fake.requests


@pytest.mark.parametrize("grey", [1, 127])
def test_a_texture_edit_whose_mask_is_faint_grey_fails_before_the_provider_is_paid(
    client: RenderClient, fake: FakeOpenAI, grey: int
) -> None:
    """The provider is sent an opaque mask (it may paint nowhere) for a mask at or below half white:
    the call was paid for (6 credits) and the texture came back unchanged."""
    texture = imaging.encode(textured_image(256, 256))[0]
    request = texture_edit_request(
        texture, "Add a marble vein", mask=imaging.encode_mask(np.full((256, 256), grey, np.uint8))
    )
    done = client.wait(client.submit(request).job.id, timeout=30)
    assert done.state == pb.JOB_STATE_FAILED and done.error.code == pb.ERROR_CODE_VALIDATION_FAILED
    assert not fake.requests


def test_a_texture_edit_whose_mask_does_not_decode_fails_naming_the_mask(
    client: RenderClient, fake: FakeOpenAI
) -> None:
    """Its header probes, its pixels do not (a bad CRC): the job failed as an internal error."""
    mask = imaging.encode_mask(np.full((256, 256), 255, np.uint8))
    at = mask.index(b"IDAT")
    crc = at + 4 + int.from_bytes(mask[at - 4 : at], "big")
    broken = mask[:crc] + bytes(4) + mask[crc + 4 :]
    request = texture_edit_request(imaging.encode(textured_image(256, 256))[0], "Add a marble vein", mask=broken)
    done = client.wait(client.submit(request).job.id, timeout=30)
    assert done.state == pb.JOB_STATE_FAILED and done.error.code == pb.ERROR_CODE_VALIDATION_FAILED
    assert done.error.message.startswith("texture_edit.mask: "), done.error.message
    assert not fake.requests


def test_a_texture_edit_needs_a_prompt_and_a_mask_of_the_texture_size(client: RenderClient) -> None:
    texture = imaging.encode(textured_image(256, 256))[0]
    request = texture_edit_request(texture, " ", mask=imaging.encode_mask(np.zeros((100, 100), np.uint8)))
    with pytest.raises(grpc.RpcError) as info:
        client.submit(request)
    assert violations(info.value) == {"texture_edit.prompt", "texture_edit.mask.data"}


def test_a_batch_that_rendered_nothing_is_charged_only_for_the_rooms_that_failed_by_the_callers_fault(
    client: RenderClient, fake: FakeOpenAI
) -> None:
    """The batch reports its first room's error (a refused prompt, the caller's), but the other
    room failed the provider's quality check: that room's base is refunded, not charged with it."""
    fake.default = Reply("blank")
    rooms = [
        room_render("bedroom", name="Bedroom", room_id="b", custom_prompt=f"A bedroom {REFUSE_MARKER}"),
        room_render("kitchen", name="Kitchen", room_id="k"),
    ]
    done = client.wait(client.submit(room_batch_request(rooms, max_concurrency=1)).job.id, timeout=60)
    assert done.state == pb.JOB_STATE_FAILED and done.error.code == pb.ERROR_CODE_CONTENT_POLICY, done.error
    assert done.credits_charged == 2  # one room's base (the default price table's 2), not both
    # Failed, it still lists every room with its error (it reported the first room's alone: a review).
    by_room = {c.room_id: c.error.code for c in done.result.batch.children}
    assert by_room == {"b": pb.ERROR_CODE_CONTENT_POLICY, "k": pb.ERROR_CODE_QUALITY_CHECK_FAILED}


def test_a_batch_renders_rooms_as_child_jobs_with_bounded_concurrency(client: RenderClient, fake: FakeOpenAI) -> None:
    fake.default = Reply("slow", delay_s=0.3)
    rooms = [
        room_render("kitchen", name="Kitchen", room_id="k"),
        room_render("bedroom", name="Bedroom", room_id="b", custom_prompt=f"A bedroom {REFUSE_MARKER}"),
        room_render("bathroom", name="Bath", room_id="w"),
        room_render("hall", name="Hall", room_id="h"),
    ]
    job = client.submit(room_batch_request(rooms, floor_plan_id="plan-1", max_concurrency=2)).job
    assert job.kind == "room_batch" and job.total_steps == 4
    events = list(client.watch(job.id, timeout=60))
    done = client.get(job.id)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    report = done.result.batch
    assert (report.total, report.succeeded, report.failed, report.cancelled) == (4, 3, 1, 0)
    by_room = {c.room_id: c for c in report.children}
    assert by_room["b"].state == pb.JOB_STATE_FAILED and by_room["b"].error.code == pb.ERROR_CODE_CONTENT_POLICY
    assert [len(by_room[r].outputs) for r in "kwh"] == [2, 2, 2]
    assert report.cost.tokens == 3 * 1100
    progress = [e for e in events if e.children]
    assert progress[-1].message.startswith("Rendered 4/4 rooms")
    steps = [e.step for e in progress]
    assert steps == sorted(steps) and steps[-1] == 4
    for event in progress:  # never more than two rooms queued or rendering at once
        active = [c for c in event.children if c.job_id and c.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)]
        assert len(active) <= 2
    child = client.get(by_room["k"].job_id)
    assert child.parent_job_id == job.id and child.kind == "room_render"


def test_cancelling_a_batch_cancels_its_children(client: RenderClient, fake: FakeOpenAI) -> None:
    fake.default = Reply("slow", delay_s=2.0)
    rooms = [room_render("kitchen", name=f"Room {i}", room_id=f"r{i}") for i in range(4)]
    job = client.submit(room_batch_request(rooms, max_concurrency=2)).job
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        event = client.get(job.id)
        if event.step == 0 and event.message.startswith("Rendered 0/4"):
            break
        time.sleep(0.05)
    cancelled = client.cancel(job.id)
    assert cancelled.state == pb.JOB_STATE_CANCELLED
    # No room had rendered: the batch keeps nothing of its reservation (every room's base, before).
    assert cancelled.credits_reserved > 0 and cancelled.credits_charged == 0
    children = [e for e in client.watch(job.id) if e.children][-1].children
    submitted = [c.job_id for c in children if c.job_id]
    assert len(submitted) == 2
    deadline = time.monotonic() + 10
    states = []
    while time.monotonic() < deadline:
        states = [client.get(child_id).state for child_id in submitted]
        if all(s == pb.JOB_STATE_CANCELLED for s in states):
            break
        time.sleep(0.1)
    assert states == [pb.JOB_STATE_CANCELLED] * 2


def test_refinement_that_repaints_the_material_falls_back_and_says_so(client: RenderClient, fake: FakeOpenAI) -> None:
    scene = scenes.room_scene(320, 240)
    quad = [(float(x), float(y)) for x, y in scene.quad]
    photo, swatch = imaging.encode(scene.photo)[0], imaging.encode(scenes.tile_texture(64))[0]
    gentle = client.wait(client.submit(material_swap_request(photo, swatch, quad=quad, refine=True)).job.id, timeout=60)
    assert gentle.state == pb.JOB_STATE_SUCCEEDED, gentle.error.message
    assert gentle.result.refinement.applied and gentle.result.refinement.color_drift < 12
    assert gentle.result.generation.provider == "openai" and gentle.result.generation.cost.tokens == 1100
    fake.push(Reply("wild"))
    job = client.submit(material_swap_request(photo, swatch, quad=quad, refine=True)).job
    events = [e.message for e in client.watch(job.id, timeout=60)]
    wild = client.get(job.id)
    assert wild.state == pb.JOB_STATE_SUCCEEDED, wild.error.message
    assert not wild.result.refinement.applied and "drifted" in wild.result.refinement.fallback_reason
    assert any("not kept: the material's" in m for m in events)
    plain = client.wait(client.submit(material_swap_request(photo, swatch, quad=quad)).job.id, timeout=60)
    # The plain projection, re-encoded once more on its way through refinement.
    assert np.abs(read(wild.result.outputs[0]).astype(int) - read(plain.result.outputs[0])).mean() < 3


def test_refined_variants_past_the_jobs_budget_keep_their_plain_projection(client: RenderClient) -> None:
    """The swap has no budget of its own: the server's per-job cap (10,000 tokens) covers a few
    refinements, and the next one's refusal failed the whole job after the others were paid for,
    charged as the caller's fault, with no outputs (found by a review)."""
    scene = scenes.room_scene(320, 240)
    quad = [(float(x), float(y)) for x, y in scene.quad]
    photo = imaging.encode(scene.photo)[0]
    swatches = [imaging.encode(scenes.tile_texture(64, seed=seed))[0] for seed in range(5)]
    request = material_swap_request(photo, swatches[0], quad=quad, refine=True, variant_swatches=swatches[1:])
    job = client.submit(request).job
    events = [e.message for e in client.watch(job.id, timeout=120)]
    done = client.get(job.id)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    names = {o.name for o in done.result.outputs}
    assert {"full", "v1-full", "v2-full", "v3-full", "v4-full"} <= names
    skipped = [m for m in events if "not refined: the job's refinement budget was spent" in m]
    assert skipped and len(skipped) < 5  # some were refined, the rest kept their projection
    assert 0 < done.credits_charged <= done.credits_reserved


def test_renderctl_renders_rooms_batches_and_textures(
    generation_gateway_address: str,
    redis_url: str,
    fake: FakeOpenAI,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from google.protobuf import json_format

    from render_client.cli import main

    base = ["--address", generation_gateway_address, "--api-key", key_for(redis_url + "/8", "cli")]
    assert main([*base, "room", "kitchen", "--floor", "Oak", "--lighting", "warm", "--dry-run", "--watch"]) == 0
    assert '"dry_run": true' in capsys.readouterr().out and not fake.requests
    plan = pb.RoomBatch(rooms=[room_render("hall", room_id="h"), room_render("study", room_id="s")])
    (tmp_path / "plan.json").write_text(json_format.MessageToJson(plan))
    assert main([*base, "batch", str(tmp_path / "plan.json"), "--watch"]) == 0
    assert "Rendered 2/2 rooms" in capsys.readouterr().out
    (tmp_path / "t.png").write_bytes(imaging.encode(textured_image(128, 128), imaging_pb2.FORMAT_PNG)[0])
    assert main([*base, "texture", str(tmp_path / "t.png"), "Make it weathered", "--maps", "--watch"]) == 0
    assert '"name": "roughness"' in capsys.readouterr().out
