"""The whole embedded stack as separate processes, driven through the gateway."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any, cast

import cv2
import grpc
import numpy as np
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from devstack import scenes
from devstack.launcher import Ports, Stack, free_port
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
from renderkit.serving import GRPC_ENVIRONMENT, PUBLIC_GRPC_ENVIRONMENT
from tests.credentials import client_for, key_for
from tests.http_fixtures import serve
from tests.openai_fake import FakeOpenAI, textured_image
from tests.outputs import read_output, register_storage


def scale_request(scene: scenes.Scene, photo: bytes, swatch: bytes, swatch_m: float) -> pb.SubmitRenderRequest:
    request = material_swap_request(
        photo, swatch, quad=[(float(x), float(y)) for x, y in scene.quad], output_format=pb.IMAGE_FORMAT_PNG
    )
    hints = request.material_swap.hints
    hints.quad_size.width_meters, hints.quad_size.height_meters = scene.floor_size_m
    request.material_swap.options.real_world_scale.swatch_size.width_meters = swatch_m
    return request


def test_swap_of_a_synthetic_scene_matches_the_analytic_ground_truth(stack: Stack) -> None:
    scene = scenes.room_scene(800, 560)
    swatch = scenes.plank_texture(256)
    request = scale_request(
        scene,
        imaging.encode(scene.photo, imaging_pb2.FORMAT_PNG)[0],
        imaging.encode(swatch, imaging_pb2.FORMAT_PNG)[0],
        swatch_m=0.5,
    )
    with RenderClient(stack.gateway_address, api_key=stack.api_key) as client:
        job = client.wait(client.submit(request).job.id, timeout=120)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error.message
    assert (job.result.scale_source, job.result.repeats_u, job.result.repeats_v) == ("swatch_size", 8.0, 10.0)
    out = read_output(job.result.outputs[0])
    truth = scenes.ground_truth_swap(scene, swatch, (8.0, 10.0))
    inside = cv2.erode(scene.floor_mask, np.ones((7, 7), np.uint8)) > 127
    assert scenes.psnr(out, truth, inside) > 28.0
    # The same swap with the swatch at the wrong physical size is measurably wrong.
    wrong = scenes.ground_truth_swap(scene, swatch, (8.0 * 1.25, 10.0 * 1.25))
    assert scenes.psnr(out, wrong, inside) < 28.0


def test_cancel_stops_a_running_job_promptly(stack: Stack) -> None:
    big = scenes.room_scene(1920, 1080)
    photo = imaging.encode(cv2.resize(big.photo, (3840, 2160)))[0]
    quad = [(float(x) * 2, float(y) * 2) for x, y in big.quad]
    with RenderClient(stack.gateway_address, api_key=stack.api_key) as client:
        job = client.submit(material_swap_request(photo, imaging.encode(scenes.plank_texture())[0], quad=quad)).job
        for event in client.watch(job.id, timeout=60):
            if event.stage == pb.STAGE_PROJECTION:
                started = time.monotonic()
                cancelled = client.cancel(job.id)
                break
        assert cancelled.state == pb.JOB_STATE_CANCELLED
        assert time.monotonic() - started < 1.0
        events = list(client.watch(job.id))
        assert events[-1].state == pb.JOB_STATE_CANCELLED
        time.sleep(2.5)  # longer than the projection would have taken: nothing more may happen
        final = client.get(job.id)
    assert final.state == pb.JOB_STATE_CANCELLED and not final.result.outputs
    assert not any(stack.storage_dir.glob(f"renders/*/*/{job.id}/*"))


def test_inputs_by_url_and_a_failed_download(stack: Stack) -> None:
    scene = scenes.room_scene(400, 300)
    routes = {
        "/room.jpg": (200, {"Content-Type": "image/jpeg"}, imaging.encode(scene.photo)[0]),
        "/oak.jpg": (200, {"Content-Type": "image/jpeg"}, imaging.encode(scenes.plank_texture(128))[0]),
        "/moved.jpg": (301, {"Location": "/oak.jpg"}, b""),
    }
    quad = [(float(x), float(y)) for x, y in scene.quad]
    with serve(routes) as base, RenderClient(stack.gateway_address, api_key=stack.api_key) as client:
        ok = client.wait(
            client.submit(material_swap_request(f"{base}/room.jpg", f"{base}/moved.jpg", quad=quad)).job.id, timeout=60
        )
        missing = client.wait(
            client.submit(material_swap_request(f"{base}/gone.jpg", f"{base}/oak.jpg", quad=quad)).job.id, timeout=60
        )
    assert ok.state == pb.JOB_STATE_SUCCEEDED, ok.error.message
    assert read_output(ok.result.outputs[0]).shape == (300, 400, 3)
    assert missing.state == pb.JOB_STATE_FAILED
    assert missing.error.code == pb.ERROR_CODE_DOWNLOAD_FAILED
    assert "material_swap.photo.url" in missing.error.message and "404" in missing.error.message


def test_refinement_edits_only_inside_the_mask(stack: Stack, openai_server: FakeOpenAI) -> None:
    scene = scenes.room_scene(640, 480)
    quad = [(float(x), float(y)) for x, y in scene.quad]
    photo, swatch = imaging.encode(scene.photo)[0], imaging.encode(scenes.tile_texture(128))[0]
    with RenderClient(stack.gateway_address, api_key=stack.api_key) as client:
        plain = client.wait(client.submit(material_swap_request(photo, swatch, quad=quad)).job.id, timeout=60)
        before = len(openai_server.requests)
        refined = client.wait(
            client.submit(material_swap_request(photo, swatch, quad=quad, refine=True)).job.id, timeout=60
        )
        events = list(client.watch(refined.id))
    assert refined.state == pb.JOB_STATE_SUCCEEDED, refined.error.message
    assert "Step 4/5: refining the render" in [e.message for e in events]
    call = openai_server.requests[before]
    assert call["path"] == "/v1/images/edits" and call["has_mask"] and call["has_image"]
    assert call["fields"]["model"] == "gpt-image-2.5-sunburst"  # type: ignore[index]
    a, b = read_output(plain.result.outputs[0]).astype(int), read_output(refined.result.outputs[0]).astype(int)
    inside = cv2.erode(scene.floor_mask, np.ones((9, 9), np.uint8)) > 127
    outside = cv2.dilate(scene.floor_mask, np.ones((9, 9), np.uint8)) == 0
    assert np.abs(a - b)[inside].mean() > 4  # the light warmed inside the mask
    assert np.abs(a - b)[outside].mean() < 1.5
    assert refined.result.refinement.applied and refined.result.refinement.texture_similarity > 0.5


def test_a_room_render_streams_its_progress_through_the_stack(stack: Stack, openai_server: FakeOpenAI) -> None:
    room = room_render("living room", name="Living", area=32, floor="Oak Natural", walls="Chalk White", style="modern")
    with client_for(stack.gateway_address, stack.redis_url, "system") as client:
        job = client.submit(room_render_request(room, project_id="flat-1")).job
        events = list(client.watch(job.id, timeout=60))
    assert [e.state for e in events][-1] == pb.JOB_STATE_SUCCEEDED, events[-1].error.message
    assert [e.step for e in events if e.state == pb.JOB_STATE_RUNNING and e.step] == sorted(
        e.step for e in events if e.state == pb.JOB_STATE_RUNNING and e.step
    )
    assert [e.message for e in events if e.message.startswith("Step")][:2] == [
        "Step 1/3: building the prompt",
        "Step 2/3: rendering Living",
    ]
    result = events[-1].result
    assert "living room (32 sq m), modern style" in result.generation.prompt
    assert result.generation.provider == "openai" and result.generation.revised_prompt
    assert read_output(result.outputs[0]).shape == (1024, 1024, 3)
    assert result.outputs[0].uri == f"local:renders/system/flat-1/{job.id}/full.jpg"


def test_a_batch_streams_each_rooms_state_through_the_stack(stack: Stack) -> None:
    rooms = [room_render(kind, name=kind.title(), room_id=kind) for kind in ("kitchen", "bedroom", "bathroom")]
    with client_for(stack.gateway_address, stack.redis_url, "system") as client:
        job = client.submit(room_batch_request(rooms, floor_plan_id="plan-9")).job
        events = list(client.watch(job.id, timeout=90))
    assert events[-1].state == pb.JOB_STATE_SUCCEEDED, events[-1].error.message
    progress = [e for e in events if e.children]
    assert progress[0].message.startswith("Rendered 0/3 rooms") and progress[-1].message.startswith("Rendered 3/3")
    assert {c.room_id: c.state for c in progress[-1].children} == dict.fromkeys(
        ("kitchen", "bedroom", "bathroom"), pb.JOB_STATE_SUCCEEDED
    )
    report = events[-1].result.batch
    assert (report.total, report.succeeded, report.failed) == (3, 3, 0)
    assert all(len(c.outputs) == 2 for c in report.children)


def test_a_texture_edit_runs_through_the_stack(stack: Stack) -> None:
    texture = imaging.encode(textured_image(512, 512, seed=9), quality=98)[0]
    with client_for(stack.gateway_address, stack.redis_url, "system") as client:
        job = client.submit(texture_edit_request(texture, "Weather the tiles slightly", material_maps=True)).job
        events = list(client.watch(job.id, timeout=60))
    assert events[-1].state == pb.JOB_STATE_SUCCEEDED, events[-1].error.message
    assert "Step 2/3: editing the texture" in [e.message for e in events]
    outputs = {o.name: o for o in events[-1].result.outputs}
    assert set(outputs) == {"full", "2048", "preview", "normal", "roughness"}
    assert read_output(outputs["2048"]).shape == (2048, 2048, 3)


def test_the_stack_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    stack = Stack(data_dir=tmp_path, ports=Ports.free(), with_triton=False)
    stack.start()
    processes = list(stack.processes)
    assert {name for name, _ in processes} == {"redis", "segmentation", "depth", "projection", "generation", "gateway"}
    stack.stop()
    for name, process in processes:
        assert process.returncode == 0, f"{name} exited with {process.returncode}"
        with pytest.raises(ProcessLookupError):
            os.kill(process.pid, 0)
    # Each server drained, said so, and left without the interpreter's teardown: its log is whole.
    for name in ("segmentation", "depth", "projection", "generation", "gateway"):
        lines = (tmp_path / "logs" / f"{name}.log").read_text().splitlines()
        assert json.loads(lines[-1])["message"] == "stopped", (name, lines[-3:])


def test_a_dispatcher_that_dies_mid_job_loses_nothing(tmp_path: Path) -> None:
    """Two gateway replicas; the one running a job is killed; the other reclaims it and resumes."""
    import redis

    # The geometry cache off: the takeover resumes from the job's own checkpoints.
    env = {"JOB_LEASE_SECONDS": "2", "GEOMETRY_CACHE_SECONDS": "0"}
    stack = Stack(data_dir=tmp_path, ports=Ports.free(), with_triton=False, env=env)
    register_storage(stack.storage_dir)
    with stack:
        replica_port = free_port()
        replica = stack.add_gateway("gateway-2", replica_port)
        pids = {process.pid: process for name, process in stack.processes if name.startswith("gateway")}
        big = scenes.room_scene(1920, 1080)
        photo = imaging.encode(cv2.resize(big.photo, (3840, 2160)))[0]
        quad = [(float(x) * 2, float(y) * 2) for x, y in big.quad]
        ledger = redis.Redis.from_url(stack.redis_url)
        # A client's mask beside the quad: segmentation refines it (a call whose answer is
        # checkpointed); the quad's plane is arithmetic the gateway does again after a takeover.
        mask = imaging.encode_mask(imaging.polygon_mask(np.array(quad), 3840, 2160))
        swatch = imaging.encode(scenes.plank_texture())[0]
        with RenderClient(stack.gateway_address, api_key=stack.api_key) as client:
            job = client.submit(material_swap_request(photo, swatch, quad=quad, mask=mask)).job
            for event in client.watch(job.id, timeout=60):
                if event.stage == pb.STAGE_PROJECTION:
                    break
            owner = ledger.hget(f"job:{job.id}", "owner").decode()  # type: ignore[union-attr]
            victim = int(owner.split("-")[-2])
            assert victim in pids
            os.kill(victim, signal.SIGKILL)
            pids[victim].wait()
            survivor = stack.gateway_address if victim == replica.pid else f"127.0.0.1:{replica_port}"
        with RenderClient(survivor, api_key=stack.api_key) as client:
            done = client.wait(job.id, timeout=60)
            messages = [e.message for e in client.watch(job.id)]
        ledger.close()
    assert done.state == pb.JOB_STATE_SUCCEEDED and done.attempt == 2
    assert "Step 1/4: segmenting the surface (resumed from checkpoint)" in messages
    assert read_output(done.result.outputs[0]).shape == (2160, 3840, 3)


def test_renderctl_submits_watches_waits_gets_lists_and_cancels(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from render_client.cli import main

    scene = scenes.room_scene(400, 300)
    photo, swatch = tmp_path / "room.jpg", tmp_path / "oak.jpg"
    photo.write_bytes(imaging.encode(scene.photo)[0])
    swatch.write_bytes(imaging.encode(scenes.plank_texture(128))[0])
    quad = ";".join(f"{x:.1f},{y:.1f}" for x, y in scene.quad)
    base = ["--address", stack.gateway_address, "--api-key", key_for(stack.redis_url, "cli-test")]
    assert main([*base, "submit", "--photo", str(photo), "--swatch", str(swatch), "--quad", quad, "--watch"]) == 0
    out = capsys.readouterr().out
    job_id = out.splitlines()[0]
    assert "Step 2/4: estimating geometry" in out and "succeeded" in out and "JOB_STATE_SUCCEEDED" in out
    assert main([*base, "list"]) == 0
    assert job_id in capsys.readouterr().out
    # wait: the ended job as JSON, the exit code from its state.
    assert main([*base, "submit", "--photo", str(photo), "--swatch", str(swatch), "--quad", quad]) == 0
    waited_id = capsys.readouterr().out.strip()
    assert main([*base, "wait", waited_id]) == 0
    waited = capsys.readouterr().out
    assert f'"id": "{waited_id}"' in waited and "JOB_STATE_SUCCEEDED" in waited
    assert main([*base, "cancel", job_id]) == 0
    assert "JOB_STATE_SUCCEEDED" in capsys.readouterr().out  # an ended job stays as it ended
    assert main([*base, "get", "no-such-job"]) == 2
    assert "NOT_FOUND" in capsys.readouterr().err
    assert main([*base, "submit", "--photo", str(photo), "--swatch", str(swatch)]) == 2
    assert "material_swap.hints" in capsys.readouterr().err


def test_a_stage_killed_mid_job_is_waited_for_and_make_run_reports_it(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """kill -9 the projection stage while it projects; the job waits for its restart and succeeds,
    and the launcher's monitor (what `make run` prints) reports the death and the return."""
    import threading

    big = scenes.room_scene(1920, 1080)
    photo = imaging.encode(cv2.resize(big.photo, (3840, 2160)))[0]
    quad = [(float(x) * 2, float(y) * 2) for x, y in big.quad]
    stop = threading.Event()
    monitor = threading.Thread(target=stack.monitor, args=(stop, 0.2), daemon=True)
    monitor.start()
    try:
        # A client's mask beside the quad: segmentation refines it (a call whose answer is
        # checkpointed); the quad's plane is arithmetic the gateway does again after a takeover.
        mask = imaging.encode_mask(imaging.polygon_mask(np.array(quad), 3840, 2160))
        swatch = imaging.encode(scenes.plank_texture())[0]
        with RenderClient(stack.gateway_address, api_key=stack.api_key) as client:
            job = client.submit(material_swap_request(photo, swatch, quad=quad, mask=mask)).job
            for event in client.watch(job.id, timeout=60):
                if event.stage == pb.STAGE_PROJECTION:
                    break
            stack.kill("projection")
            time.sleep(1.5)
            stack.restart("projection")
            done = client.wait(job.id, timeout=120)
        time.sleep(0.5)
    finally:
        stop.set()
        monitor.join(5)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    assert read_output(done.result.outputs[0]).shape == (2160, 3840, 3)
    printed = capsys.readouterr().out
    assert "projection: exited with -9" in printed and "projection: SERVING" in printed


def test_every_process_of_the_stack_runs_with_grpcs_settings(stack: Stack) -> None:
    """make run's launcher gives each process the gRPC settings of its role: the gateway, serving
    the public port, gRPC's own poller (PUBLIC_GRPC_ENVIRONMENT); the others the image's
    (GRPC_ENVIRONMENT)."""
    python = [(name, process) for name, process in stack.processes if name != "redis"]  # Redis rewrites its own
    assert {"gateway", "segmentation", "depth", "projection", "generation"} <= {name for name, _ in python}
    for name, process in python:
        environ = dict(
            entry.split(b"=", 1) for entry in Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0") if entry
        )
        expected = PUBLIC_GRPC_ENVIRONMENT if name == "gateway" else GRPC_ENVIRONMENT
        for key, value in expected.items():
            assert environ.get(key.encode()) == value.encode(), f"{name}: {key}"


def test_the_stacks_redis_answers_a_write_only_once_it_is_on_disk(stack: Stack, redis_url: str) -> None:
    """The ledger's Redis (make run's and the tests') fsyncs its append-only file before it answers:
    with `everysec` a busy disk lets it acknowledge up to 2 s of writes it has not yet written,
    which a SIGKILL loses (the chaos test lost a watcher's events that way)."""
    import redis

    for url in (stack.redis_url, redis_url):
        ledger = redis.Redis.from_url(url)
        try:
            settings = {**cast(Any, ledger.config_get("appendonly")), **cast(Any, ledger.config_get("appendfsync"))}
        finally:
            ledger.close()
        assert settings == {"appendonly": "yes", "appendfsync": "always"}, url.rsplit("@", 1)[-1]


def test_buf_curl_lists_every_servers_methods(stack: Stack) -> None:
    """Reflection lists only real services (a provider's health name is not one), so a client nobody
    here wrote can list and call every server (the stages with the stack's client certificate, the
    only kind they take)."""
    import subprocess

    from devstack.launcher import ROOT

    buf = str(ROOT / ".venv" / "bin" / "buf")
    tls = stack.internal_tls_dir
    listed = {}
    for name in ("gateway", "segmentation", "depth", "projection", "generation"):
        address = stack.spawns[name].address
        if stack.internal_tls and stack.spawns[name].internal:
            files = ["--cacert", str(tls / "ca.crt"), "--cert", str(tls / "tls.crt"), "--key", str(tls / "tls.key")]
            target = [*files, f"https://{address}"]
        else:
            target = ["--http2-prior-knowledge", f"http://{address}"]
        done = subprocess.run(
            [buf, "curl", "--protocol", "grpc", "--list-methods", *target],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, f"{name}: {done.stderr}"
        listed[name] = done.stdout.split()
    assert "render.v1.RenderService/SubmitRender" in listed["gateway"]
    assert "render.generation.v1.GenerationService/GetCapabilities" in listed["generation"]
    assert not any(m.startswith("render.generation.v1.GenerationService/openai") for m in listed["generation"])


# An independent check (not the sanitiser the servers use): what no caller may ever read.
LEAKS = re.compile(
    r"(?:/[\w.-]+){2,}"  # a path
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"  # an IPv4 address
    r"|\b[A-Z][a-z]+(?:[A-Z][a-z]+)*(?:Error|Exception)\b"  # a Python class name
    r"|<class |Traceback|\.py\b"
)


def all_strings(message: Message) -> list[str]:
    """Every string field of a message, nested ones included."""
    found = []
    for field, value in message.ListFields():
        values = value if field.label == field.LABEL_REPEATED else [value]  # type: ignore[attr-defined]
        for item in values:
            if isinstance(item, Message):
                found += all_strings(item)
            elif isinstance(item, str):
                found.append(item)
    return found


def test_no_message_or_result_field_leaks_paths_addresses_or_class_names(stack: Stack) -> None:
    scene = scenes.room_scene(400, 300)
    jpeg = imaging.encode(scene.photo)[0]
    flat = imaging.encode(np.full((300, 400, 3), 128, np.uint8))[0]
    quad = [(float(x), float(y)) for x, y in scene.quad]
    routes = {
        "/half.jpg": (200, {"Content-Type": "image/jpeg"}, jpeg[: len(jpeg) // 2]),
        "/text.jpg": (200, {"Content-Type": "image/jpeg"}, b"<html>not an image</html>"),
    }
    refused = f"http://127.0.0.1:{free_port()}/room.jpg"  # nothing listens there
    failing = [
        material_swap_request(refused, jpeg, quad=quad),
        material_swap_request(jpeg, jpeg[:-200], quad=quad),  # refused at submit
    ]
    with serve(routes) as base, client_for(stack.gateway_address, stack.redis_url, "leaks") as client:
        failing += [
            material_swap_request(f"{base}/half.jpg", jpeg, quad=quad),
            material_swap_request(f"{base}/text.jpg", jpeg, quad=quad),
            material_swap_request(flat, jpeg, mask=imaging.encode_mask(np.full((300, 400), 255, np.uint8))),
        ]
        texts: list[str] = []
        jobs = []
        for request in failing:
            try:
                jobs.append(client.wait(client.submit(request).job.id, timeout=60))
            except grpc.RpcError as exc:
                texts.append(exc.details() or "")  # type: ignore[attr-defined]
                bad = unpack_detail(status_details(exc.trailing_metadata()), error_details_pb2.BadRequest)  # type: ignore[attr-defined, arg-type]
                texts += [v.description for v in getattr(bad, "field_violations", [])]
        jobs.append(client.wait(client.submit(material_swap_request(jpeg, jpeg, quad=quad)).job.id, timeout=60))
        for job_id in ("no-such-job", "x" * 5000):
            with pytest.raises(grpc.RpcError) as info:
                client.get(job_id)
            texts.append(info.value.details() or "")  # type: ignore[attr-defined]
        events = [e for job in jobs for e in client.watch(job.id)]
    assert [j.state for j in jobs].count(pb.JOB_STATE_FAILED) == 4 and jobs[-1].state == pb.JOB_STATE_SUCCEEDED
    texts += [s for job in jobs for s in all_strings(job)] + [s for e in events for s in all_strings(e)]
    # Outputs are named by their storage key, relative to the server's storage: never a server path.
    keys = {f"local:renders/leaks/-/{jobs[-1].id}/{name}.jpg" for name in ("full", "preview")}
    assert {o.uri for o in jobs[-1].result.outputs} == keys
    # Output links are public by design: the gateway's published HTTP address and the storage key.
    links = {o.url for o in jobs[-1].result.outputs}
    assert all(url.startswith(f"{stack.http_url}/files/renders/leaks/-/{jobs[-1].id}/") for url in links)
    # Each read signs its links afresh (a watch's result event and GetJob can sign a second apart,
    # with different expiries): a link is this job's output whatever its signature.
    paths = {url.split("?")[0] for url in links}
    leaks = [t for t in texts if LEAKS.search(t) and t not in keys and t.split("?")[0] not in paths]
    assert not leaks, leaks
