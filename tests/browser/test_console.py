"""The web console in headless Chromium (Debian's, driven by Playwright) against the embedded stack:
sign in, pick and upload images, draw the quad, render with live progress, resume a dropped watch,
field errors next to their controls, signed download links, ListJobs, and a phone-sized screen.

The console must be built first (`make console`, which `make test` does). Screenshots go to the
test's temporary directory, or to $SCREENSHOTS_DIR (`SCREENSHOTS_DIR=docs/images` refreshes the
README's)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import grpc
import pytest
from PIL import Image
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    Position,
    Route,
    ViewportSize,
    sync_playwright,
)

from devstack.launcher import ROOT, Stack
from render.admin.v1 import admin_service_pb2 as apb
from render.admin.v1 import admin_service_pb2_grpc as agrpc
from render.v1 import render_service_pb2 as pb
from render_client.client import RenderClient, material_swap_request, texture_edit_request
from tests.openai_fake import FakeOpenAI, Reply

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CONSOLE = ROOT / "console" / "dist"
SAMPLES = CONSOLE / "samples"
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)
TIMEOUT_MS = 30_000
SCREENSHOT_MAX_BYTES = 300 * 1024


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    """The bundled sample's manifest (photo, swatches, the floor's quad), as the console reads it."""
    manifest = SAMPLES / "sample.json"
    if not (CONSOLE / "index.html").exists() or not manifest.exists():
        pytest.fail("the console is not built: run `make console`")
    return dict(json.loads(manifest.read_text()))


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Chromium from Debian (never a downloaded build); Playwright gives every launch a
    fresh profile directory of its own."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make test does)")
    launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    made.set_default_timeout(TIMEOUT_MS)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # What the console's Content-Security-Policy blocked (Chromium reports each as a console error).
    refused: list[str] = []

    def blocked(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    opened.on("console", blocked)
    yield opened
    assert not errors, f"uncaught errors in the page: {errors}"
    assert not refused, f"the page's policy refused what the console uses: {refused}"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("SCREENSHOTS_DIR")
    return Path(target) if target else tmp_path_factory.mktemp("screenshots")


def save_screenshot(png: bytes, path: Path) -> None:
    """Writes a screenshot under the size budget: as taken when it fits, else reduced to a palette."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    while len(png) > SCREENSHOT_MAX_BYTES:
        out = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, "PNG", optimize=True)
        png = out.getvalue()
        image = image.resize((image.width * 7 // 8, image.height * 7 // 8), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def sign_in(page: Page, stack: Stack, protocol: str = "connect", credential: str = "") -> None:
    """Signs in with `credential` (the stack's key when empty) over `protocol`."""
    page.goto(stack.http_url + "/")
    page.fill("#credential", credential or stack.api_key)
    if protocol != "connect":
        page.click("details.advanced summary")
        page.select_option("select[aria-label=Protocol]", protocol)
    page.click("[data-testid=sign-in]")
    page.wait_for_selector("[data-picker=photo]")


def pick_sample(page: Page, picker: str, name: str) -> None:
    """Takes a bundled sample into a picker and waits until it is uploaded (its thumbnail shows)."""
    thumbs = page.locator(f"[data-picker={picker}] .thumb")
    before = thumbs.count() if picker == "swatches" else 0
    page.click(f"[data-picker={picker}] [data-sample={name}]")
    thumbs.nth(before).wait_for()


def click_photo(canvas: Locator, points: list[tuple[float, float]], tap: bool = False) -> None:
    """Clicks (or taps) points given in photo pixels on the hint overlay, wherever it is shown."""
    box = canvas.bounding_box()
    assert box is not None
    width, height = float(canvas.get_attribute("data-width") or 0), float(canvas.get_attribute("data-height") or 0)
    for x, y in points:
        position = Position(x=x / width * box["width"], y=y / height * box["height"])
        if tap:
            canvas.tap(position=position)
        else:
            canvas.click(position=position)


def start_swap(page: Page, sample: dict[str, Any], corners: list[tuple[float, float]], tap: bool = False) -> Locator:
    """The sample photo and the oak swatch picked and the corners clicked; returns the hint overlay."""
    pick_sample(page, "photo", "room")
    pick_sample(page, "swatches", "oak")
    canvas = page.locator("[data-testid=hint-canvas]")
    click_photo(canvas, corners, tap=tap)
    return canvas


def quad(sample: dict[str, Any]) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in sample["quad"]]


def wait_until_ended(page: Page) -> None:
    """Waits until the job view has followed its job to the end (every event shown, the job read
    again for fresh links)."""
    page.wait_for_selector(".job-view[data-state=ended]", timeout=60_000)


def step_numbers(page: Page) -> list[int]:
    return [
        int(n) for n in page.locator("[data-testid=steps] > li").evaluate_all("els => els.map(e => e.dataset.step)")
    ]


def cursors(page: Page) -> list[str]:
    return list(page.locator("[data-cursor]").evaluate_all("els => els.map(e => e.dataset.cursor)"))


def messages(page: Page) -> list[str]:
    return list(page.locator("[data-cursor]").all_inner_texts())


def test_the_whole_flow_signs_in_uploads_draws_the_quad_renders_and_compares(
    page: Page, stack: Stack, sample: dict[str, Any], screenshots: Path
) -> None:
    sign_in(page, stack)
    pick_sample(page, "photo", "room")
    # A swatch uploaded from a file (UploadAsset), and a sample as its variant.
    page.set_input_files("[data-testid=swatches-file]", str(SAMPLES / sample["swatches"]["oak"]))
    page.locator("[data-picker=swatches] .thumb").first.wait_for()
    pick_sample(page, "swatches", "walnut")
    assert page.locator("[data-picker=swatches] .thumb img").first.evaluate("img => img.naturalWidth") > 0
    canvas = page.locator("[data-testid=hint-canvas]")
    click_photo(canvas, quad(sample))
    assert page.locator("[data-kind=quad]").count() == 4
    page.click("[data-testid=submit-swap]")

    page.wait_for_url(re.compile(r"#/jobs/"))
    after = page.locator("[data-testid=after-image]")
    after.wait_for(timeout=60_000)
    wait_until_ended(page)
    steps = step_numbers(page)
    assert steps == sorted(steps) and {1, 2, 3, 4} <= set(steps), steps
    assert page.locator(".step.done").count() == len(steps)
    assert page.locator(".badge[data-state=succeeded]").first.is_visible()
    # The after image is the full output behind its signed link, loaded as an image.
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=after.element_handle())
    assert after.get_attribute("src", timeout=1000).startswith(stack.http_url + "/files/")  # type: ignore[union-attr]
    assert after.evaluate("img => img.naturalWidth") == 1600
    # The slider: a click at a quarter of the width moves the split there.
    compare = page.locator("[data-testid=compare]")
    compare.scroll_into_view_if_needed()
    box = compare.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    split = float(page.locator("[data-testid=compare-range]").input_value())
    assert 20 <= split <= 30, split
    assert re.search(r"inset\(0(px)? 0(px)? 0(px)? (2\d(\.\d+)?)%\)", after.evaluate("img => img.style.clipPath"))
    assert page.locator("[data-testid=variants] figure").count() == 2
    page.evaluate("() => window.scrollTo(0, 0)")
    save_screenshot(page.screenshot(full_page=False), screenshots / "console-result.png")


def envelopes(body: bytes) -> list[tuple[int, bytes]]:
    """The length-prefixed frames of a Connect or gRPC-web stream: (flags, payload)."""
    out, position = [], 0
    while position + 5 <= len(body):
        flags, size = struct.unpack(">BI", body[position : position + 5])
        out.append((flags, body[position + 5 : position + 5 + size]))
        position += 5 + size
    return out


@pytest.mark.parametrize("protocol", ["connect", "grpc-web"])
def test_a_dropped_watch_resumes_after_the_last_cursor_without_repeating_a_step(
    context: BrowserContext, page: Page, stack: Stack, sample: dict[str, Any], protocol: str
) -> None:
    """The first WatchJob answer is cut after its third event (no end of stream, as a dropped
    connection ends); the console reconnects from that event's cursor and shows the rest once."""
    watch_bodies: list[bytes] = []
    kept = 3

    def cut_first_watch(route: Route) -> None:
        watch_bodies.append(route.request.post_data_buffer or b"")
        if len(watch_bodies) > 1:
            route.continue_()
            return
        response = route.fetch()
        frames = [(flags, data) for flags, data in envelopes(response.body()) if flags == 0]
        assert len(frames) > kept, "the job ended in too few events to cut the stream"
        cut = b"".join(struct.pack(">BI", 0, len(data)) + data for _, data in frames[:kept])
        route.fulfill(status=200, headers=response.headers, body=cut)

    context.route("**/render.v1.RenderService/WatchJob", cut_first_watch)
    sign_in(page, stack, protocol)
    start_swap(page, sample, quad(sample))
    page.click("[data-testid=submit-swap]")
    wait_until_ended(page)
    page.wait_for_selector("[data-testid=after-image]")

    assert page.locator("[data-reconnects='1']").count() == 1
    assert "resumed after 1 dropped connection" in page.inner_text(".connection")
    seen = cursors(page)
    assert len(seen) == len(set(seen)), seen
    # The second watch asked for what followed the third event, by its cursor.
    assert len(watch_bodies) == 2
    assert seen[kept - 1].encode() in watch_bodies[1]
    # A fresh view of the same job (no cut; a new tab signs in again) shows the very same events.
    context.unroute_all(behavior="wait")
    fresh = context.new_page()
    sign_in(fresh, stack, protocol)
    fresh.goto(page.url)
    wait_until_ended(fresh)
    assert cursors(fresh) == seen
    assert messages(fresh) == messages(page)
    steps = step_numbers(page)
    assert steps == sorted(steps) and len(steps) == len(set(steps)), steps
    fresh.close()


def test_invalid_hints_show_the_servers_field_error_next_to_the_hint_control(
    page: Page, stack: Stack, sample: dict[str, Any]
) -> None:
    c = quad(sample)
    sign_in(page, stack)
    canvas = start_swap(page, sample, [c[0], c[2], c[1]])
    page.click("[data-testid=submit-swap]")
    error = page.locator("[data-control=hints] [data-error-for=hints]")
    error.wait_for()
    assert "hints.quad" in error.inner_text() and "exactly 4 points, got 3" in error.inner_text()
    # The fourth corner makes a bow-tie: corners 2 and 3 are in each other's place.
    click_photo(canvas, [c[3]])
    page.click("[data-testid=submit-swap]")
    page.wait_for_function("() => document.querySelector('[data-error-for=hints]')?.innerText.includes('convex')")
    # Only the hints are wrong: no other control has an error; the form says where to look.
    assert page.locator("[data-error-for]").count() == 1
    assert "see the fields marked above" in page.inner_text(".alert[role=alert]")

    # Edited in place: the last corner deleted and placed again, the crossed two dragged home.
    handles = page.locator("[data-kind=quad]")
    handles.nth(3).click()
    page.click("[data-testid=hint-delete]")
    assert handles.count() == 3
    click_photo(canvas, [c[3]])
    assert handles.count() == 4
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None
    width, height = float(canvas.get_attribute("data-width") or 0), float(canvas.get_attribute("data-height") or 0)

    def drag(start: tuple[float, float], end: tuple[float, float]) -> None:
        page.mouse.move(box["x"] + start[0] / width * box["width"], box["y"] + start[1] / height * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + end[0] / width * box["width"], box["y"] + end[1] / height * box["height"], steps=4)
        page.mouse.up()

    middle = ((c[1][0] + c[2][0]) / 2, (c[1][1] + c[2][1]) / 2 + 40)
    drag(c[2], middle)  # out of the way first, so the next drag grabs the right handle
    drag(c[1], c[2])
    drag(middle, c[1])
    placed = handles.evaluate_all("els => els.map(e => [Number(e.getAttribute('cx')), Number(e.getAttribute('cy'))])")
    for (x, y), (ex, ey) in zip(placed, c, strict=True):
        assert abs(x - ex) < 3 and abs(y - ey) < 3, (placed, c)
    page.click("[data-testid=submit-swap]")
    page.wait_for_url(re.compile(r"#/jobs/"))
    wait_until_ended(page)
    assert page.locator(".badge[data-state=succeeded]").first.is_visible()


@pytest.fixture(scope="module")
def finished_job(stack: Stack, sample: dict[str, Any]) -> pb.Job:
    """A material swap of the sample made over gRPC with the console's key (so its tenant's)."""
    photo, swatch = SAMPLES / sample["photo"], SAMPLES / sample["swatches"]["tile"]
    with RenderClient(stack.gateway_address, api_key=stack.api_key) as client:
        request = material_swap_request(photo, swatch, quad=quad(sample))
        done = client.wait(client.submit(request).job.id, timeout=60)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    return done


def tampered(url: str) -> list[str]:
    """The link with its signature changed, and with its expiry moved later."""
    parts = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    signature = query["sig"]
    bad_signature = {**query, "sig": ("A" if signature[0] != "A" else "B") + signature[1:]}
    later = {**query, "expires": str(int(query["expires"]) + 3600)}
    return [urlunparse(parts._replace(query=urlencode(q))) for q in (bad_signature, later)]


def test_download_links_download_and_a_tampered_one_is_refused(
    page: Page, stack: Stack, finished_job: pb.Job, tmp_path: Path
) -> None:
    sign_in(page, stack)
    page.goto(f"{stack.http_url}/#/jobs/{finished_job.id}")
    wait_until_ended(page)
    full = next(o for o in finished_job.result.outputs if o.name == "full")
    link = page.locator("[data-output=full] [data-testid=download-link]")
    href = link.get_attribute("href") or ""
    assert href.startswith(stack.http_url + "/files/")
    with page.expect_download() as downloading:
        link.click()
    saved = tmp_path / "full.jpg"
    downloading.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == full.sha256
    for bad in tampered(href):
        assert page.request.get(bad).status == 403, bad
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=10)
        assert refused.value.code == 403
    # The API fallback (GetOutput, streamed) gives the same bytes.
    with page.expect_download() as downloading:
        page.click("[data-output=full] button:has-text('Via API')")
    downloading.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == full.sha256


def test_the_job_list_pages_through_jobs_and_opens_one(page: Page, stack: Stack, finished_job: pb.Job) -> None:
    sign_in(page, stack)
    page.click("nav >> text=Jobs")
    rows = page.locator("[data-testid=job-list] a")
    rows.first.wait_for()
    listed = rows.count()
    assert 1 <= listed <= 10
    if page.locator("[data-testid=load-more]").count():
        page.click("[data-testid=load-more]")
        page.wait_for_function(f"() => document.querySelectorAll('[data-testid=job-list] a').length > {listed}")
    ids = rows.evaluate_all("els => els.map(e => e.dataset.jobId)")
    assert len(ids) == len(set(ids)) and finished_job.id in ids
    page.click(f"[data-testid=job-list] a[data-job-id='{finished_job.id}']")
    wait_until_ended(page)
    assert page.locator(".badge[data-state=succeeded]").first.is_visible()
    page.locator("[data-testid=after-image]").wait_for()


def test_room_render_dry_run_and_texture_edit_forms_submit(page: Page, stack: Stack) -> None:
    sign_in(page, stack)
    page.click("nav >> text=Room")
    page.click("button:has-text('Render the room')")
    wait_until_ended(page)
    assert page.locator(".badge[data-state=succeeded]").first.is_visible()
    assert "living room" in page.inner_text("[data-testid=generation] .prompt").lower()
    page.click("nav >> text=Texture")
    page.click("button:has-text('Edit the texture')")  # no texture, no prompt: refused field by field
    page.locator("[data-error-for=texture]").wait_for()
    page.click("[data-picker=texture] [data-sample=oak]")
    page.locator("[data-picker=texture] .thumb").wait_for()
    page.fill("#prompt", "a darker walnut stain")
    page.click("button:has-text('Edit the texture')")
    wait_until_ended(page)
    assert page.locator(".badge[data-state=succeeded]").first.is_visible()


def test_render_pressed_again_after_a_lost_reply_makes_one_job(page: Page, stack: Stack) -> None:
    # A reply lost to a dropped connection says nothing of whether the job was made: pressing the
    # button again sends the same request with the same idempotency key, so the gateway answers
    # with the job the first attempt made (one job, one charge). Once answered, the same request
    # pressed again is another render.
    with RenderClient(f"127.0.0.1:{stack.ports.gateway}", api_key=stack.api_key) as client:
        before = {job.id for job in client.list(page_size=100).jobs}
    sent: list[bytes] = []

    def lose_the_first_reply(route: Route) -> None:
        sent.append(route.request.post_data_buffer or b"")
        if len(sent) == 1:
            route.fetch()  # the gateway records the job ...
            route.abort("connectionreset")  # ... and its reply never reaches the browser
        else:
            route.continue_()

    page.route("**/render.v1.RenderService/SubmitRender", lose_the_first_reply)
    sign_in(page, stack)
    page.click("nav >> text=Room")
    page.click("button:has-text('Render the room')")
    page.locator("[role=alert]").first.wait_for()  # the lost reply is an error on the form
    page.click("button:has-text('Render the room')")  # the user tries again
    page.locator(".job-view").wait_for()
    page.click("nav >> text=Room")
    page.click("button:has-text('Render the room')")
    page.locator(".job-view").wait_for()
    with RenderClient(f"127.0.0.1:{stack.ports.gateway}", api_key=stack.api_key) as client:
        made = [job.id for job in client.list(page_size=100).jobs if job.id not in before]
    assert len(sent) == 3 and sent[0] == sent[1] and sent[2] != sent[1]
    assert len(made) == 2, f"{len(made)} jobs: the render pressed again after a lost reply made a second one"


def no_horizontal_overflow(page: Page) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


def test_a_phone_sized_screen_scrolls_only_vertically_and_takes_touch_hints(
    browser: Browser, stack: Stack, sample: dict[str, Any], screenshots: Path
) -> None:
    phone = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    phone.set_default_timeout(TIMEOUT_MS)
    page = phone.new_page()
    try:
        sign_in(page, stack)
        assert no_horizontal_overflow(page)
        start_swap(page, sample, quad(sample), tap=True)
        assert page.locator("[data-kind=quad]").count() == 4
        assert no_horizontal_overflow(page)
        submit = page.locator("[data-testid=submit-swap]")
        submit.scroll_into_view_if_needed()
        assert submit.is_visible() and submit.is_enabled()
        submit.tap()
        page.locator("[data-testid=after-image]").wait_for(timeout=60_000)
        wait_until_ended(page)
        assert no_horizontal_overflow(page)
        # The result at the top of the screen, under the sticky header.
        page.evaluate(
            """() => window.scrollTo(0, document.querySelector('[data-testid=result]').getBoundingClientRect().top
                + window.scrollY - document.querySelector('.topbar').offsetHeight - 12)"""
        )
        save_screenshot(page.screenshot(full_page=False), screenshots / "console-phone.png")
    finally:
        phone.close()


def test_a_link_with_a_malformed_escape_opens_the_job_list_not_a_blank_page(page: Page, stack: Stack) -> None:
    """#/jobs/% threw on every render (decodeURIComponent) and left the console blank, before
    sign-in and after a reload (a review found it)."""
    page.goto(stack.http_url + "/#/jobs/%E0%A4%A")
    page.wait_for_selector("#credential")
    page.fill("#credential", stack.api_key)
    page.click("[data-testid=sign-in]")
    page.locator("h2:has-text('Jobs')").wait_for()
    page.locator("[data-testid=job-list]").wait_for(state="attached")


def test_an_upload_asks_for_the_gateways_longest_body_deadline(
    page: Page, stack: Stack, sample: dict[str, Any]
) -> None:
    """UploadAsset with no deadline gets 60 s for its body: a 12 MP phone photo (8 MB) over a
    1 Mbit/s uplink never arrives. The console asks for the 5 minutes the gateway allows."""
    asked: list[str] = []

    def note(route: Route) -> None:
        asked.append(route.request.headers.get("connect-timeout-ms", ""))
        route.continue_()

    page.route("**/render.v1.RenderService/UploadAsset", note)
    sign_in(page, stack)
    page.set_input_files("[data-testid=photo-file]", str(SAMPLES / sample["photo"]))
    page.locator("[data-picker=photo] .thumb").wait_for()
    assert asked and all(value.isdigit() and int(value) >= 300_000 for value in asked), asked


def test_a_credential_revoked_mid_session_brings_back_the_sign_in_form(page: Page, stack: Stack) -> None:
    """The console said "sign in again" on every call but kept the dead key (a reload too) and
    showed no sign-in form; now it forgets the key and asks for another."""
    import grpc

    from render.admin.v1 import admin_service_pb2 as apb
    from render.admin.v1 import admin_service_pb2_grpc as agrpc

    metadata = [("authorization", f"Bearer {stack.api_key}")]
    with grpc.insecure_channel(stack.gateway_address) as channel:
        admin = agrpc.AdminServiceStub(channel)
        made = admin.CreateApiKey(
            apb.CreateApiKeyRequest(tenant="dev", name="revoked mid-session", scopes=[apb.SCOPE_READ]),
            metadata=metadata,
        )
        page.goto(stack.http_url + "/")
        page.fill("#credential", made.secret)
        page.click("[data-testid=sign-in]")
        page.click("nav >> text=Jobs")
        page.wait_for_selector("[data-testid=job-list] a, .placeholder")
        admin.RevokeApiKey(apb.RevokeApiKeyRequest(key_id=made.key.key_id), metadata=metadata)
    page.click("text=Refresh")
    page.locator("#credential").wait_for()
    assert "sign in again" in page.inner_text(".alert")
    assert page.evaluate("() => sessionStorage.getItem('render-console.credential')") is None


def focused(page: Page) -> str:
    """The focused element: its tag, id and name ("BODY" when nothing is)."""
    return str(
        page.evaluate(
            """() => { const e = document.activeElement; if (!e || e === document.body) return 'BODY';
              return `${e.tagName}#${e.id} ${e.getAttribute('aria-label') || e.textContent.trim().slice(0, 40)}`; }"""
        )
    )


def test_the_swap_form_works_by_keyboard_alone_and_says_what_is_wrong_where(page: Page, stack: Stack) -> None:
    """No invisible Tab stop; the focus stays put while a button works, goes to the first invalid
    control when the request is refused and to the job once it is made; the corners are placed with
    the arrows and Enter; errors are tied to their controls; the job's steps and end are announced
    (a review with a keyboard and axe-core found each missing)."""
    page.goto(stack.http_url + "/")
    page.focus("#credential")
    page.keyboard.type(stack.api_key)
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-picker=photo]")
    page.focus("a.brand")
    for _ in range(25):
        page.keyboard.press("Tab")
        area = page.evaluate(
            "() => { const r = document.activeElement.getBoundingClientRect(); return r.width * r.height; }"
        )
        assert area > 1, f"{focused(page)} is a Tab stop no one can see"

    page.focus("[data-picker=photo] [data-sample=room]")
    page.keyboard.press("Enter")
    page.locator("[data-picker=photo] .thumb").wait_for()
    assert focused(page).startswith("BUTTON# + sample room"), focused(page)
    assert page.locator("[role=alert]").count() == 0, "an error shown before anything was sent"
    pick_sample(page, "swatches", "oak")

    canvas = page.locator("[data-testid=hint-canvas]")
    canvas.focus()
    for moves in (
        ["ArrowLeft", "ArrowDown"],
        ["ArrowRight", "ArrowRight"],
        ["ArrowUp", "ArrowUp"],
        ["ArrowLeft", "ArrowLeft"],
    ):
        for key in moves:
            page.keyboard.press(f"Shift+{key}")
        page.keyboard.press("Enter")
    corners = page.locator("[data-kind=quad]").evaluate_all(
        "els => els.map(e => [e.getAttribute('cx'), e.getAttribute('cy')])"
    )
    assert len(corners) == 4 and len({tuple(c) for c in corners}) == 4, corners

    page.click("[data-testid=hint-clear]")
    page.fill("#rotation", "abc")
    page.focus("[data-testid=submit-swap]")
    page.keyboard.press("Enter")
    page.locator("[data-error-for=rotation]").wait_for()
    assert page.get_attribute("#rotation", "aria-invalid") == "true"
    described = (page.get_attribute("#rotation", "aria-describedby") or "").split()
    assert page.locator("[data-error-for=rotation]").get_attribute("id") in described
    assert focused(page).startswith("INPUT#rotation"), focused(page)

    page.fill("#rotation", "0")
    page.focus("[data-testid=use-sample-outline]")
    page.keyboard.press("Enter")
    page.focus("[data-testid=submit-swap]")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"#/jobs/"))
    assert focused(page).startswith("H2#"), focused(page)
    wait_until_ended(page)
    assert page.inner_text("[data-testid=job-announcer][role=status]") == "The job succeeded."


def test_an_upload_ending_after_a_refused_submit_leaves_the_focus_in_the_field_being_typed_in(
    page: Page, stack: Stack
) -> None:
    """The focus goes to the first error when a submit is refused, not again each time a control's
    errors are cleared: a photo whose upload ended while the user typed in another field took the
    focus (and the next keys) to the swatches' error."""
    sign_in(page, stack)
    page.click("[data-testid=submit-swap]")  # nothing picked: refused
    page.locator("[data-error-for=photo]").wait_for()
    held: list[Route] = []
    page.route("**/UploadAsset", lambda route: held.append(route))
    page.click("[data-picker=photo] [data-sample=room]")
    page.wait_for_timeout(300)
    assert held, "the photo's upload was not held"
    page.click("#rotation")
    page.keyboard.press("End")
    page.keyboard.type("1")
    for route in held:
        route.continue_()
    page.locator("[data-picker=photo] .thumb").wait_for()
    page.wait_for_timeout(300)
    page.keyboard.type("5")
    assert focused(page).startswith("INPUT#rotation"), focused(page)
    assert page.input_value("#rotation") == "015"


def test_enter_ends_moving_a_selected_corner_and_adds_none_on_it(page: Page, stack: Stack) -> None:
    """N selects a corner and the arrows move it; Enter then ends the move, as it ends a box's: it
    placed another corner on the moved one (the cursor follows the selected handle)."""
    sign_in(page, stack)
    pick_sample(page, "photo", "room")
    page.locator("[data-testid=hint-canvas]").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Enter")
    page.keyboard.press("n")
    page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("Enter")
    corners = page.locator("[data-kind=quad]").evaluate_all(
        "els => els.map(e => [e.getAttribute('cx'), e.getAttribute('cy')])"
    )
    assert len(corners) == 2, corners
    page.keyboard.press("Shift+ArrowUp")  # the cursor again, from the moved corner
    page.keyboard.press("Enter")
    assert page.locator("[data-kind=quad]").count() == 3


def test_clicks_before_the_photo_has_loaded_land_where_they_are_shown(
    page: Page, stack: Stack, sample: dict[str, Any]
) -> None:
    """The overlay takes the photo's box, which had no height until the photo had loaded (its size
    was known from the upload): clicks made meanwhile, on a slow link or a busy machine, landed
    elsewhere, and a later one on a corner just placed, selecting it."""
    sign_in(page, stack)
    asked: list[str] = []
    held: list[Route] = []

    def hold_the_photo(route: Route) -> None:  # the upload's fetch goes on; the <img>'s waits
        asked.append(route.request.url)
        if len(asked) == 1:
            route.continue_()
        else:
            held.append(route)

    page.route(f"**/samples/{sample['photo']}", hold_the_photo)
    pick_sample(page, "photo", "room")
    canvas = page.locator("[data-testid=hint-canvas]")
    canvas.wait_for()
    for _ in range(50):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, f"the photo's image was not held (asked: {asked})"
    assert not page.locator(".hint-stage img").evaluate("img => img.complete && img.naturalWidth > 0")
    click_photo(canvas, quad(sample))
    for route in held:
        route.continue_()
    corners = page.locator("[data-kind=quad]").evaluate_all(
        "els => els.map(e => [Number(e.getAttribute('cx')), Number(e.getAttribute('cy'))])"
    )
    assert len(corners) == 4, corners
    box = canvas.bounding_box()
    assert box is not None
    near = float(canvas.get_attribute("data-width") or 0) / box["width"]  # a screen pixel, in the photo's
    for (x, y), (cx, cy) in zip(quad(sample), corners, strict=True):
        assert abs(x - cx) <= 2 * near and abs(y - cy) <= 2 * near, (quad(sample), corners)


def test_the_keyboards_cursor_shows_to_the_keyboard_only(page: Page, stack: Stack, sample: dict[str, Any]) -> None:
    """A click on the photo with its four corners placed drew the keyboard's cross at the photo's
    centre, far from the click, looking like a handle placed there; Tab into the overlay shows it."""
    sign_in(page, stack)
    pick_sample(page, "photo", "room")
    canvas = page.locator("[data-testid=hint-canvas]")
    click_photo(canvas, [*quad(sample), (50, 50)])  # the fifth click places nothing
    assert page.locator("[data-kind=quad]").count() == 4
    assert page.locator("[data-testid=hint-cursor]").count() == 0
    page.focus("[data-testid=hint-clear]")
    for _ in range(5):  # on to the overlay (past the toolbar's other buttons)
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.dataset.testid") == "hint-canvas":
            break
    assert page.evaluate("() => document.activeElement.dataset.testid") == "hint-canvas"
    page.locator("[data-testid=hint-cursor]").wait_for()


@pytest.mark.parametrize("protocol", ["connect", "grpc-web"])
def test_a_watch_ended_by_a_revoked_key_asks_to_sign_in_and_a_fresh_key_resumes_it(
    page: Page, stack: Stack, sample: dict[str, Any], openai_server: FakeOpenAI, protocol: str
) -> None:
    """The gateway ends a watch UNAUTHENTICATED when its key is revoked (Authenticator.still_valid,
    asked before each message): the console forgets the key and shows its sign-in form with its
    notice (no raw error, no reconnecting with the dead key); signed in with another key it watches
    the same job again, to its end."""
    watches: list[str] = []
    page.on("request", lambda r: watches.append(r.url) if r.url.endswith(".RenderService/WatchJob") else None)
    gate = threading.Event()  # the job's generation answer is held until the key is revoked
    asked = len(openai_server.requests)
    openai_server.push(Reply("slow", delay_s=30, gate=gate))
    metadata = [("authorization", f"Bearer {stack.api_key}")]
    try:
        with (
            grpc.insecure_channel(stack.gateway_address) as channel,
            RenderClient(stack.gateway_address, api_key=stack.api_key) as client,
        ):
            admin = agrpc.AdminServiceStub(channel)
            made = admin.CreateApiKey(
                apb.CreateApiKeyRequest(tenant="dev", name=f"revoked mid-watch {protocol}", scopes=[apb.SCOPE_READ]),
                metadata=metadata,
            )
            texture = SAMPLES / sample["swatches"]["oak"]
            job_id = client.submit(texture_edit_request(texture, "a darker walnut stain")).job.id
            sign_in(page, stack, protocol, made.secret)
            page.goto(f"{stack.http_url}/#/jobs/{job_id}")
            page.wait_for_selector(".job-view [data-connection=live]")
            deadline = time.monotonic() + 30
            while len(openai_server.requests) == asked:  # the job waits on its generation now
                assert time.monotonic() < deadline, "the job never asked for its generation"
                time.sleep(0.05)
            assert page.locator(".job-view[data-state=watching]").count() == 1
            admin.RevokeApiKey(apb.RevokeApiKeyRequest(key_id=made.key.key_id), metadata=metadata)
            gate.set()  # the job goes on: its next event finds the key revoked
            page.locator("#credential").wait_for()
            notice = page.locator(".alert").all_inner_texts()
            assert len(notice) == 1 and "sign in again" in notice[0] and "revoked or expired" in notice[0], notice
            assert page.evaluate("() => sessionStorage.getItem('render-console.credential')") is None
            assert f"#/jobs/{job_id}" in page.url
            page.wait_for_timeout(1000)  # no watch made again with the dead key, no reload of the form
            assert len(watches) == 1, watches
            assert page.locator("#credential").count() == 1 and page.input_value("#credential") == ""
            done = client.wait(job_id, timeout=60)
            assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message

        page.fill("#credential", stack.api_key)
        page.click("[data-testid=sign-in]")
        wait_until_ended(page)
        assert page.locator(".badge[data-state=succeeded]").first.is_visible()
        assert page.locator(".job-view .alert").count() == 0, page.locator(".job-view .alert").all_inner_texts()
        seen = cursors(page)
        assert len(seen) == len(set(seen)) and len(seen) >= 3, seen
        assert len(watches) == 2, watches
        assert page.evaluate("() => sessionStorage.getItem('render-console.credential')") == stack.api_key
    finally:
        gate.set()
        openai_server.reset()
