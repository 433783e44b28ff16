"""renderctl's progress display and its behaviour when the gateway cannot be reached."""

from __future__ import annotations

import contextlib
import io
import re
import socket
import time
from pathlib import Path

import grpc
import pytest

from render.v1 import render_service_pb2 as pb
from render_client.cli import Progress, cell_width, main, watch
from render_client.client import RenderClient, RetryNotice, RetryPolicy
from render_client.webhooks_cli import describe as describe_endpoint
from tests.gateway_fake import FakeGateway, job_log, serve, target

LONG = "Step 3/4: mapping the material through the plane, with mip-mapped filtering and the shading kept " * 3
WIDE = "第3步：将材料映射到平面上并保留原有的光照和阴影效果，" * 4  # two columns a character


class Terminal(io.StringIO):
    """What a terminal would be sent."""

    def isatty(self) -> bool:
        return True


def redraws(text: str) -> list[str]:
    """Each line as drawn: the text between carriage returns, control sequences removed."""
    return [re.sub(r"\x1b\[K", "", part).rstrip("\n") for part in text.split("\r") if part]


@pytest.mark.parametrize("columns", [40, 80, 120])
@pytest.mark.parametrize("message", [LONG, WIDE, "short"], ids=["long", "wide", "short"])
def test_the_live_line_fits_the_terminal(monkeypatch: pytest.MonkeyPatch, columns: int, message: str) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))  # what shutil.get_terminal_size reads first
    out = Terminal()
    progress = Progress(out, io.StringIO())
    for event in job_log(4, message=message):
        progress.event(event)
    progress.close()
    lines = redraws(out.getvalue())
    assert len(lines) == 4
    for line in lines:
        assert sum(cell_width(c) for c in line) <= columns - 1
        assert line.startswith("[") and ("%" in line or columns < 20)
    if message != "short":
        assert all(line.endswith("…") for line in lines)
    else:
        assert lines[-1].endswith("succeeded short")
    assert out.getvalue().count("\x1b[K") == 4 and out.getvalue().endswith("\n")


def test_the_width_is_read_at_every_redraw(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Terminal()
    progress = Progress(out, io.StringIO())
    for columns, event in zip((120, 40), job_log(2, message=LONG), strict=True):
        monkeypatch.setenv("COLUMNS", str(columns))
        progress.event(event)
    assert [len(line) for line in redraws(out.getvalue())] == [119, 39]


def test_without_a_terminal_each_event_is_a_plain_line() -> None:
    out = io.StringIO()
    progress = Progress(out, io.StringIO())
    for event in job_log(3, message="Step\n2/4:\x1b[2J estimating geometry"):
        progress.event(event)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[-1].endswith("succeeded Step 2/4: [2J estimating geometry")


def test_a_retry_notice_clears_the_live_line_and_goes_to_stderr() -> None:
    out, err = Terminal(), io.StringIO()
    progress = Progress(out, err)
    progress.event(job_log(2)[0])
    progress.retry(RetryNotice(grpc.StatusCode.UNAVAILABLE, 4, 1.6, "connection lost", "Socket closed"))
    assert out.getvalue().endswith("\r\x1b[K")
    assert err.getvalue() == "connection lost (UNAVAILABLE); retrying in 1.6 s\n"


def test_watch_prints_the_retries_and_every_event_once() -> None:
    fake = FakeGateway(watch_plans=[[2, grpc.StatusCode.UNAVAILABLE]])
    out, err = io.StringIO(), io.StringIO()
    with serve(fake) as servers, RenderClient(target(servers), retry=RetryPolicy(initial_backoff_s=0.01)) as client:
        job = watch(client, "job-1", out=out, err=err)
    assert job.state == pb.JOB_STATE_SUCCEEDED
    assert [line.split()[-1] for line in out.getvalue().splitlines()] == ["1/4", "2/4", "3/4", "4/4"]
    assert re.fullmatch(r"connection lost \(UNAVAILABLE\); retrying in 0\.0 s\n", err.getvalue())


def dead_address() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_renderctl_watch_gives_up_on_an_unreachable_gateway_with_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = dead_address()
    started = time.monotonic()
    assert main(["--address", address, "--give-up-after", "1.5", "watch", "job-1"]) == 2
    assert time.monotonic() - started < 3.0
    err = capsys.readouterr().err
    assert re.search(r"^connection lost \(UNAVAILABLE\); retrying in \d+\.\d s$", err, re.M)
    assert re.search(
        r"^error: gave up watching job job-1 at 127\.0\.0\.1:\d+ after 1\.\d s without a connection", err, re.M
    )
    assert f"is a gateway running at {address}?" in err


def test_renderctl_submit_without_a_key_gets_one_and_gives_up_on_an_unreachable_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # renderctl keys every submit, so its retries never make a second job; one that gives up says
    # which key gets the job it may have made.
    (tmp_path / "room.jpg").write_bytes(b"photo")
    address = dead_address()
    started = time.monotonic()
    argv = [
        "--address",
        address,
        "--give-up-after",
        "1",
        "submit",
        "--photo",
        str(tmp_path / "room.jpg"),
        "--swatch",
        str(tmp_path / "room.jpg"),
    ]
    assert main(argv) == 2
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert "submit again with --idempotency-key renderctl-" in err
    assert "error: gave up submitting" in err and f"is a gateway running at {address}?" in err


@pytest.mark.parametrize("from_env", [False, True], ids=["flag", "env"])
def test_an_unreadable_cacert_is_one_clear_line_and_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], from_env: bool
) -> None:
    missing = str(tmp_path / "no-such-ca.pem")
    if from_env:
        monkeypatch.setenv("RENDER_CACERT", missing)
    argv = ["--address", dead_address(), *([] if from_env else ["--cacert", missing]), "get", "job-1"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: cannot read the CA certificate {missing} (--cacert or RENDER_CACERT): No such file or directory\n"
    )
    assert main(["--cacert", str(tmp_path), "get", "job-1"]) == 2  # a directory
    assert capsys.readouterr().err == (
        f"error: cannot read the CA certificate {tmp_path} (--cacert or RENDER_CACERT): Is a directory\n"
    )


def test_a_cacert_without_a_pem_certificate_is_refused_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    assert main(["--address", dead_address(), "--cacert", str(tmp_path / "ca.pem"), "get", "job-1"]) == 2
    assert capsys.readouterr().err == (
        f"error: the CA certificate {tmp_path / 'ca.pem'} (--cacert or RENDER_CACERT) holds no PEM certificate\n"
    )


def test_a_malformed_render_tls_is_one_clear_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RENDER_TLS", "maybe")
    assert main(["get", "job-1"]) == 2
    assert capsys.readouterr().err == "error: RENDER_TLS must be a boolean (true/false), got 'maybe'\n"


@pytest.mark.parametrize("from_env", [False, True], ids=["flag", "env"])
def test_renderctl_with_tls_is_refused_by_a_plaintext_gateway_and_says_why(
    from_env: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(FakeGateway()) as servers:
        address = target(servers)
        assert main(["--address", address, "get", "job-1"]) == 0  # plaintext reaches it
        capsys.readouterr()
        if from_env:
            monkeypatch.setenv("RENDER_TLS", "true")
        assert main(["--address", address, *([] if from_env else ["--tls"]), "get", "job-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: UNAVAILABLE: ")
    assert f"is a gateway running at {address}?" in err and "(--cacert or RENDER_CACERT)" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "--photo", "{missing}", "--swatch", "{missing}"],
        ["upload", "{missing}"],
        ["batch", "{missing}"],
        ["batch", "{bad_json}"],
        ["texture", "{missing}", "make it red"],
        ["--give-up-after", "nan", "get", "job-1"],
    ],
)
def test_a_local_input_that_cannot_be_read_is_one_clear_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A missing file or a plan that is not JSON ended in a traceback (exit 1); a bound of NaN
    switched retrying's bound off (a review found both)."""
    (tmp_path / "plan.json").write_text("{not json")
    paths = {"missing": str(tmp_path / "missing.jpg"), "bad_json": str(tmp_path / "plan.json")}
    with pytest.raises(SystemExit) if "nan" in argv else contextlib.nullcontext():
        assert main(["--address", dead_address(), *[part.format(**paths) for part in argv]]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("error: " in err or "--give-up-after" in err)


def test_admin_keys_are_created_with_a_lifetime_and_listed_as_expired_once_it_ends() -> None:
    """--ttl-days 0 sent no lifetime at all (a key that never expires), nan crashed, and a key
    expired in 2001 was listed as active (a review found them)."""
    import argparse

    from google.protobuf.timestamp_pb2 import Timestamp

    from render.admin.v1 import admin_service_pb2 as admin_pb
    from render_client.admin_cli import _ttl_days, describe

    for text in ("0", "-0.0", "nan", "1e9"):
        with pytest.raises(argparse.ArgumentTypeError):
            _ttl_days(text)
    assert _ttl_days("30") == 30.0
    old = admin_pb.ApiKey(key_id="k1", tenant="acme", name="old", expire_time=Timestamp(seconds=1_000_000_000))
    assert " expired " in describe(old)


def test_ctrl_c_while_following_a_job_stops_the_watch_not_the_job() -> None:
    """Ctrl-C printed ~40 lines of traceback from gRPC's internals and said nothing of the job
    (the client review): it stops the watch, not the job, and says how to follow or cancel it."""
    from render_client.cli import Interrupted

    class Interrupting:
        def watch(self, job_id: str, on_retry: object = None) -> object:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        watch(Interrupting(), "j1", out=io.StringIO(), err=io.StringIO())  # type: ignore[arg-type]
    assert info.value.job_id == "j1"


def test_an_api_key_with_a_stray_line_end_is_sent_and_one_with_a_control_character_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key file saved with CRLF line ends failed every call with INTERNAL "Invalid metadata",
    which watches retried as a lost connection (the client review)."""
    with RenderClient(dead_address(), api_key="rk_abc.def\r\n") as client:
        assert client.metadata == (("authorization", "Bearer rk_abc.def"),)
    with pytest.raises(ValueError, match="API key holds a character"):
        RenderClient(dead_address(), api_key="rk_a\x07bc")
    monkeypatch.setenv("RENDER_API_KEY", "rk_\u00e9t\u00e9")
    assert main(["--address", dead_address(), "get", "j1"]) == 2
    assert "the API key holds a character that cannot be sent" in capsys.readouterr().err


def test_an_unreadable_development_key_leaves_the_commands_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The development key is read as the parser is built: a dev-api-key that could not be read
    (a directory, another user's file) ended every command with a traceback, --help too."""
    (tmp_path / "dev-api-key").mkdir()
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RENDER_API_KEY", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0 and "usage" in capsys.readouterr().out


def test_ctrl_c_during_a_submit_prints_the_key_that_gets_its_job(capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C while a submit waits or retries: its reply may be lost with the job made, and only the
    key it was sent with gets that job rather than a second (the diff's review: no key shown)."""
    from render_client.cli import submit_and_maybe_watch

    class Interrupting:
        def submit(self, request: pb.SubmitRenderRequest) -> object:
            raise KeyboardInterrupt

    request = pb.SubmitRenderRequest()
    with pytest.raises(KeyboardInterrupt):
        submit_and_maybe_watch(Interrupting(), request, follow=False)  # type: ignore[arg-type]
    assert request.idempotency_key.startswith("renderctl-")
    assert f"--idempotency-key {request.idempotency_key}" in capsys.readouterr().err


def test_renderctl_submit_sends_every_option_of_a_material_swap(tmp_path: Path) -> None:
    # Points, a box, the surface, the camera, a metric scale, the layout and the outputs: a swap
    # renderctl could not describe before had to be written as a proto by hand.
    (tmp_path / "room.jpg").write_bytes(b"photo")
    (tmp_path / "oak.jpg").write_bytes(b"oak")
    (tmp_path / "slate.jpg").write_bytes(b"slate")
    fake = FakeGateway()
    with serve(fake) as servers:
        argv = ["--address", target(servers), "--api-key", "k", "submit"]
        argv += ["--photo", str(tmp_path / "room.jpg"), "--swatch", str(tmp_path / "oak.jpg")]
        argv += ["--points", "10,200; 300,210", "--negative-points", "150,120", "--box", "0,100,320,240"]
        argv += ["--surface", "floor", "--focal-length", "820", "--plane-distance", "1.5"]
        argv += ["--swatch-size", "0.6", "--brick", "0.25", "--rotation", "90", "--grout", "#202020"]
        argv += ["--variant", str(tmp_path / "slate.jpg"), "--refine", "--seed", "7", "--stage-timeout", "20"]
        argv += ["--format", "webp", "--quality", "80", "--no-preview", "--include-2048", "--maps"]
        argv += ["--project", "p1", "--webhook", "https://hooks.example.com/render"]
        assert main(argv) == 0
        argv = ["--address", target(servers), "--api-key", "k", "submit", "--photo", str(tmp_path / "room.jpg")]
        argv += ["--swatch", str(tmp_path / "oak.jpg"), "--quad", "0,0;4,0;4,3;0,3", "--quad-size", "4,3"]
        argv += ["--swatch-size", "0.6,0.3", "--herringbone", "--polygon", "0,0;5,0;5,4"]
        assert main(argv) == 0
    points, quad = fake.requests
    assert points.idempotency_key.startswith("renderctl-")
    points.ClearField("idempotency_key")
    expected = pb.SubmitRenderRequest(
        material_swap=pb.MaterialSwap(
            photo=pb.ImageSource(data=b"photo"),
            swatch=pb.ImageSource(data=b"oak"),
            surface=pb.SURFACE_FLOOR,
            hints=pb.SurfaceHints(
                positive_points=[pb.Point(x=10, y=200), pb.Point(x=300, y=210)],
                negative_points=[pb.Point(x=150, y=120)],
                box=pb.Box(x_min=0, y_min=100, x_max=320, y_max=240),
                focal_length_px=820,
                plane_distance_meters=1.5,
            ),
            options=pb.MaterialSwapOptions(
                real_world_scale=pb.RealWorldScale(swatch_size=pb.SwatchSize(width_meters=0.6)),
                enable_refinement=True,
                refinement_seed=7,
                stage_timeout_seconds=20,
                rotation_degrees=90,
                layout=pb.TILE_LAYOUT_BRICK,
                row_offset=0.25,
                grout_color="#202020",
            ),
            variant_swatches=[pb.ImageSource(data=b"slate")],
        ),
        project_id="p1",
        output=pb.OutputOptions(
            format=pb.IMAGE_FORMAT_WEBP, quality=80, skip_preview=True, include_2048=True, include_material_maps=True
        ),
        webhook=pb.Webhook(url="https://hooks.example.com/render"),
    )
    assert points == expected
    hints, options = quad.material_swap.hints, quad.material_swap.options
    assert [(p.x, p.y) for p in hints.quad] == [(0, 0), (4, 0), (4, 3), (0, 3)]
    assert [(p.x, p.y) for p in hints.polygon] == [(0, 0), (5, 0), (5, 4)]
    assert (hints.quad_size.width_meters, hints.quad_size.height_meters) == (4, 3)
    assert (options.real_world_scale.swatch_size.width_meters, options.real_world_scale.swatch_size.height_meters) == (
        0.6,
        0.3,
    )
    assert options.layout == pb.TILE_LAYOUT_HERRINGBONE and not options.HasField("refinement_seed")
    assert not quad.HasField("webhook") and quad.output.format == pb.IMAGE_FORMAT_JPEG


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--points", "10,20;30"], "--points takes 1 to 100 points"),
        (["--quad", "0,0;1,0;1,1"], "--quad takes 4 points"),
        (["--polygon", "0,0;1,nan;1,1"], "--polygon takes 3 to 1000 points"),
        (["--box", "0,0,10"], "--box takes x_min,y_min,x_max,y_max"),
        (["--quad-size", "4"], "--quad-size takes WIDTH,HEIGHT in metres"),
        (["--swatch-size", "0.6,inf"], "--swatch-size takes WIDTH[,HEIGHT] in metres"),
        (["--repeats", "8", "--swatch-size", "0.6"], "not allowed with argument --repeats"),
        (["--brick", "0.5", "--herringbone"], "not allowed with argument --brick"),
        (["--webhook-events", "completed"], "--webhook-events needs --webhook URL"),
        (["--webhook", "https://a.example/h", "--webhook-events", "done"], "events are a comma-separated list"),
    ],
)
def test_renderctl_submit_names_a_malformed_option_before_connecting(
    options: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--address", dead_address(), "submit", "--photo", "a.jpg", "--swatch", "b.jpg", *options])
    assert exited.value.code == 2
    assert named in capsys.readouterr().err


def test_renderctl_room_and_texture_send_their_generation_options(tmp_path: Path) -> None:
    (tmp_path / "oak.jpg").write_bytes(b"oak")
    (tmp_path / "tiles.png").write_bytes(b"tiles")
    fake = FakeGateway()
    with serve(fake) as servers:
        start = ["--address", target(servers), "--api-key", "k"]
        argv = [*start, "room", "kitchen", "--floor", "Oak", "--walls-swatch", str(tmp_path / "oak.jpg")]
        argv += ["--ceiling-swatch", "asset:a1", "--size", "1792x1024", "--render-quality", "hd", "--seed", "3"]
        argv += ["--max-tokens", "5000", "--dry-run", "--idempotency-key", "r1"]
        assert main(argv) == 0
        argv = [*start, "texture", str(tmp_path / "tiles.png"), "Weather the tiles"]
        argv += [
            "--render-quality",
            "standard",
            "--seed",
            "9",
            "--max-cents",
            "12.5",
            "--maps",
            "--idempotency-key",
            "t1",
        ]
        assert main(argv) == 0
    room, texture = fake.requests
    assert room.idempotency_key == "r1" and room.room_render.room.room_type == "kitchen"
    materials = room.room_render.materials
    assert materials.floor.name == "Oak" and materials.walls.swatch == pb.ImageSource(data=b"oak")
    assert materials.ceiling.swatch == pb.ImageSource(asset_id="a1")
    options = pb.GenerationOptions(size="1792x1024", quality=pb.RENDER_QUALITY_HD, dry_run=True, seed=3)
    options.lighting, options.time_of_day = pb.LIGHTING_NATURAL, pb.TIME_OF_DAY_DAY  # renderctl's defaults
    options.budget.max_tokens = 5000
    assert room.room_render.options == options
    assert texture.idempotency_key == "t1" and texture.output.include_material_maps
    edit = texture.texture_edit
    assert edit.base_texture == pb.ImageSource(data=b"tiles") and edit.prompt == "Weather the tiles"
    options = pb.GenerationOptions(quality=pb.RENDER_QUALITY_STANDARD, seed=9)
    options.budget.max_cents = 12.5
    assert edit.options == options


def test_renderctl_texture_refuses_a_size_the_edit_would_ignore(capsys: pytest.CaptureFixture[str]) -> None:
    # A texture edit keeps the texture's size (validation._generation_options sized=False,
    # generation_jobs.run_texture_edit sends no size): --size there was accepted and did nothing.
    with pytest.raises(SystemExit) as exited:
        main(["--address", dead_address(), "texture", "t.png", "redder", "--size", "1792x1024"])
    assert exited.value.code == 2
    assert "--size" in capsys.readouterr().err


def test_renderctl_lists_a_disabled_webhook_endpoint_as_disabled() -> None:
    # An endpoint a receiver's 410 Gone disabled gets nothing more until deleted and created again.
    active = pb.WebhookEndpoint(id="ep_" + "a" * 24, url="https://hooks.example/a", description="ops")
    disabled = pb.WebhookEndpoint()
    disabled.CopyFrom(active)
    disabled.disabled = True
    assert "disabled" not in describe_endpoint(active) and "disabled" in describe_endpoint(disabled)
