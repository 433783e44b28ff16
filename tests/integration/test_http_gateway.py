"""The gateway's HTTP port: Connect, gRPC-web and gRPC from `buf curl` (a client nobody here wrote),
CORS, signed output links opened from another process, uploaded assets, GetOutput, size limits."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import logging
import socket
import subprocess
import sys
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlparse

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
import redis

from devstack import scenes
from gateway.http import app as http_app
from gateway.http import streams
from gateway.http.bridge import ServicerBridge
from gateway.ledger import keys
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from render.v1 import render_service_pb2 as pb
from render_client.client import RenderClient, material_swap_request
from renderkit import imaging
from tests.conftest import gateway_settings
from tests.credentials import key_for
from tests.outputs import output_path

ROOT = Path(__file__).resolve().parents[2]
BUF = str(Path(sys.executable).parent / "buf")
SCENE = scenes.room_scene(320, 240)
PHOTO = imaging.encode(SCENE.photo)[0]
SWATCH = imaging.encode(scenes.plank_texture(64))[0]
QUAD = [(float(x), float(y)) for x, y in SCENE.quad]
ORIGIN = "https://console.example.com"


@pytest.fixture(scope="module")
def http_gateway(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    """A dispatching gateway with an HTTP port (its own Redis database)."""
    redis.Redis.from_url(redis_url + "/16").flushdb()
    settings = gateway_settings(redis_url + "/16", tmp_path_factory.mktemp("http-storage"), stages)
    http = replace(settings.http, listen="127.0.0.1:0", cors_origins=ORIGIN, link_ttl_s=600)
    return start_gateway(replace(settings, http=http, max_request_bytes=4 * 1024 * 1024))


@pytest.fixture(scope="module")
def queue_only_gateway(
    redis_url: str,
    stages: dict[str, str],
    start_gateway: Callable[[GatewaySettings], Gateway],
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    """A gateway that only queues (no dispatcher), so a job waits until it is cancelled."""
    redis.Redis.from_url(redis_url + "/17").flushdb()
    settings = gateway_settings(redis_url + "/17", tmp_path_factory.mktemp("queue-storage"), stages)
    return start_gateway(replace(settings, dispatch=False, http=replace(settings.http, listen="127.0.0.1:0")))


@pytest.fixture(scope="module")
def key(http_gateway: Gateway, redis_url: str) -> str:
    return key_for(redis_url + "/16", "http-tests")


@pytest.fixture(scope="module")
def client(http_gateway: Gateway, key: str) -> Iterator[RenderClient]:
    with RenderClient(f"127.0.0.1:{http_gateway.port}", api_key=key) as made:
        yield made


@pytest.fixture(scope="module")
def finished(client: RenderClient) -> pb.Job:
    """A material swap that succeeded, with a 2048 rendition too."""
    request = material_swap_request(PHOTO, SWATCH, quad=QUAD)
    request.output.include_2048 = True
    done = client.wait(client.submit(request).job.id, timeout=60)
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error.message
    return done


def buf_curl(
    protocol: str, url: str, key: str = "", data: dict[str, Any] | None = None, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """One call with `buf curl`, reading the schema from the repository's protos."""
    argv = [BUF, "curl", "--schema", str(ROOT / "protos"), "--protocol", protocol]
    if protocol == "grpc":
        argv.append("--http2-prior-knowledge")
    if key:
        argv += ["--header", f"authorization: Bearer {key}"]
    argv += ["--data", "@-", url]  # the request from stdin (large ones do not fit a command line)
    return subprocess.run(argv, input=json.dumps(data or {}), capture_output=True, text=True, timeout=60, check=check)


def json_messages(text: str) -> list[dict[str, Any]]:
    """The JSON objects buf curl printed, one per response message."""
    decoder, out, position = json.JSONDecoder(), [], 0
    text = text.strip()
    while position < len(text):
        value, position = decoder.raw_decode(text, position)
        out.append(value)
        while position < len(text) and text[position].isspace():
            position += 1
    return out


def rpc_url(gateway: Gateway, method: str) -> str:
    return f"http://127.0.0.1:{gateway.http_port}/render.v1.RenderService/{method}"


@pytest.mark.parametrize("protocol", ["connect", "grpcweb", "grpc"])
def test_buf_curl_submits_gets_and_watches_over_each_protocol(http_gateway: Gateway, key: str, protocol: str) -> None:
    request = json.loads(
        '{"roomRender": {"room": {"roomType": "kitchen", "name": "Kitchen"}, "options": {"dryRun": true}}}'
    )
    submitted = json_messages(buf_curl(protocol, rpc_url(http_gateway, "SubmitRender"), key, request).stdout)
    job_id = submitted[0]["job"]["id"]
    assert submitted[0]["job"]["state"] == "JOB_STATE_QUEUED"
    events = json_messages(buf_curl(protocol, rpc_url(http_gateway, "WatchJob"), key, {"jobId": job_id}).stdout)
    states = [e["event"]["state"] for e in events if "event" in e]
    assert states[0] == "JOB_STATE_QUEUED" and states[-1] == "JOB_STATE_SUCCEEDED"
    cursors = [e["event"]["cursor"] for e in events if "event" in e]
    assert cursors == sorted(cursors, key=lambda c: tuple(int(p) for p in c.split("-")))
    got = json_messages(buf_curl(protocol, rpc_url(http_gateway, "GetJob"), key, {"jobId": job_id}).stdout)
    assert got[0]["job"]["state"] == "JOB_STATE_SUCCEEDED"
    # Resuming after the first event's cursor replays exactly what followed it.
    rest = json_messages(
        buf_curl(protocol, rpc_url(http_gateway, "WatchJob"), key, {"jobId": job_id, "after": cursors[0]}).stdout
    )
    assert [e["event"]["cursor"] for e in rest if "event" in e] == cursors[1:]
    # The submit and the watch in one call.
    followed = json_messages(
        buf_curl(protocol, rpc_url(http_gateway, "SubmitAndWatch"), key, {"request": request}).stdout
    )
    events = [e["event"] for e in followed if "event" in e]
    assert events[0]["state"] == "JOB_STATE_QUEUED" and events[-1]["state"] == "JOB_STATE_SUCCEEDED"
    assert {e["jobId"] for e in events} == {events[0]["jobId"]} and events[0]["jobId"] != job_id


def test_a_watch_over_connect_arrives_event_by_event(queue_only_gateway: Gateway, redis_url: str) -> None:
    key = key_for(redis_url + "/17", "stream-tests")
    with RenderClient(f"127.0.0.1:{queue_only_gateway.port}", api_key=key) as grpc_client:
        job = grpc_client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job
        argv = [BUF, "curl", "--schema", str(ROOT / "protos"), "--protocol", "connect"]
        argv += ["--header", f"authorization: Bearer {key}", "--data", json.dumps({"jobId": job.id})]
        watch = subprocess.Popen(
            [*argv, rpc_url(queue_only_gateway, "WatchJob")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert watch.stdout is not None
            first = ""
            while "}" not in first.rstrip().splitlines()[-1:] or first.count("{") != first.count("}"):
                line = watch.stdout.readline()
                assert line, watch.stderr.read() if watch.stderr else "buf curl ended"
                first += line
            # The queued event arrived while the job is still queued: the stream is live, not buffered.
            assert json.loads(first)["event"]["state"] == "JOB_STATE_QUEUED"
            assert grpc_client.get(job.id).state == pb.JOB_STATE_QUEUED and watch.poll() is None
            grpc_client.cancel(job.id)
            rest, _ = watch.communicate(timeout=30)
        finally:
            watch.kill()
        assert json_messages(rest)[-1]["event"]["state"] == "JOB_STATE_CANCELLED"


def test_calls_over_http_are_authenticated_like_grpc(http_gateway: Gateway, finished: pb.Job, redis_url: str) -> None:
    anonymous = buf_curl("connect", rpc_url(http_gateway, "GetJob"), "", {"jobId": finished.id}, check=False)
    assert anonymous.returncode != 0 and "unauthenticated" in anonymous.stderr.lower()
    stranger = key_for(redis_url + "/16", "someone-else")
    other = buf_curl("grpcweb", rpc_url(http_gateway, "GetJob"), stranger, {"jobId": finished.id}, check=False)
    assert other.returncode != 0 and "not_found" in other.stderr.lower().replace(" ", "_")


def test_a_credential_without_the_methods_scope_is_permission_denied_over_http(
    http_gateway: Gateway, finished: pb.Job, redis_url: str
) -> None:
    """As on the gRPC port: the HTTP port answered a missing scope UNIMPLEMENTED ("not served
    here"), unary and streaming alike (a review found it), since the refusal is shaped to leave a
    gRPC request unread."""
    from gateway.auth.principal import Scope

    reader = key_for(redis_url + "/16", "http-scopes", frozenset({Scope.READ}))
    renderer = key_for(redis_url + "/16", "http-scopes", frozenset({Scope.RENDER}))
    for protocol, key, method, data in (
        ("connect", reader, "CancelJob", {"jobId": finished.id}),
        ("grpcweb", reader, "SubmitRender", {"roomRender": {"room": {"name": "hall"}}}),
        ("connect", renderer, "GetJob", {"jobId": finished.id}),
        ("connect", renderer, "WatchJob", {"jobId": finished.id}),
    ):
        refused = buf_curl(protocol, rpc_url(http_gateway, method), key, data, check=False)
        said = refused.stderr.lower().replace(" ", "_")
        assert refused.returncode != 0 and "permission_denied" in said, (protocol, method, refused.stderr)


def post(url: str, body: bytes, content_type: str, key: str) -> tuple[int, dict[str, Any]]:
    """Status and JSON error of a raw Connect unary POST."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"content-type": content_type, "authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"{}")


@pytest.mark.parametrize(
    "body, content_type, said",
    [
        (b"{not json", "application/json", "the body is not valid JSON"),
        (
            b'{"materialSwap": {"options": {"realWorldScale": {"repeats": "abc"}}}}',
            "application/json",
            "materialSwap.options.realWorldScale.repeats: not a valid value",
        ),
        (b'{"materialSwap": {"photo": {"data": 5}}}', "application/json", "photo.data: not a valid value"),
        (b'{"projectId": 5}', "application/json", "projectId: not a valid value"),
        (b'{"nope": 1}', "application/json", 'it has no field named "nope"'),
        (b'{"a":' * 3000 + b"1" + b"}" * 3000, "application/json", "the body is not valid JSON"),
        (bytes(range(256)) * 2, "application/proto", "in the proto encoding"),
    ],
)
def test_a_body_that_does_not_parse_is_the_callers_error(
    http_gateway: Gateway, key: str, body: bytes, content_type: str, said: str
) -> None:
    """INVALID_ARGUMENT (HTTP 400) naming the field that did not parse, not UNKNOWN (HTTP 500),
    and not in the parser's or Python's words (recursion depth, int(), len(): codecs.json_problem)."""
    status, error = post(rpc_url(http_gateway, "SubmitRender"), body, content_type, key)
    assert status == 400 and error["code"] == "invalid_argument"
    assert error["message"].startswith("the request is not a valid render.v1.SubmitRenderRequest")
    assert said in error["message"]
    for python in ("recursion", "int()", "len()", "bytes-like", "literal", "Failed to", "line 1 column"):
        assert python not in error["message"]


def raw_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"{}")


def test_a_call_without_a_credential_is_refused_before_its_body_is_decoded(http_gateway: Gateway) -> None:
    """Decoding costs the event loop (seconds for a large JSON message): a caller without a
    credential is refused first, whatever the body, and a made-up key does no better."""
    url = rpc_url(http_gateway, "SubmitRender")
    made_up = "rk_" + "a" * 12 + "_" + "B" * 43  # well formed: it is looked up, and not found
    for credential in ({}, {"authorization": f"Bearer {made_up}"}):
        status, error = raw_post(url, b"{not json", {"content-type": "application/json", **credential})
        assert (status, error["code"]) == (401, "unauthenticated")
    # gRPC-web: the refusal in its own protocol, the bytes that are not a message never decoded.
    request = urllib.request.Request(
        url, data=b"\0\0\0\0\x05junk!", method="POST", headers={"content-type": "application/grpc-web+proto"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        body = answer.read()
        status_line = answer.headers.get("grpc-status") or body.decode("latin-1")
    assert "16" in status_line
    bomb = gzip.compress(b"{" + b" " * (256 << 20), 9)
    status, error = raw_post(url, bomb, {"content-type": "application/json", "content-encoding": "gzip"})
    assert (status, error["code"]) == (401, "unauthenticated")
    # A Connect GET carries its message in the query, and is refused the same way.
    answer = fetch(rpc_url(http_gateway, "GetJob") + "?encoding=json&message=%7B%7D")
    assert answer[0] == 401 and json.loads(answer[2])["code"] == "unauthenticated"


def test_a_large_json_message_is_refused_before_it_is_parsed(http_gateway: Gateway, key: str) -> None:
    """JSON is parsed in Python on the event loop: a message over MAX_JSON_BYTES is refused unparsed
    (the binary encoding takes the whole request limit)."""
    from gateway.http.codecs import MAX_JSON_BYTES

    body = json.dumps({"name": "x" * (MAX_JSON_BYTES + 10)}).encode()
    status, error = raw_post(
        rpc_url(http_gateway, "UploadAsset"),
        body,
        {"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    assert (status, error["code"]) == (429, "resource_exhausted") and "binary encoding" in error["message"]


def test_a_compressed_body_is_inflated_no_further_than_the_size_limit(http_gateway: Gateway, key: str) -> None:
    """A few hundred kilobytes of gzip that would inflate to a gigabyte are refused as too large
    once they pass the limit, without the gateway ever holding the gigabyte; a compressed request
    within the limit works."""
    url = rpc_url(http_gateway, "SubmitRender")
    bomb = gzip.compress(b"{" + b" " * (1 << 30), 9)
    assert len(bomb) < 2 << 20
    tracemalloc.start()
    try:
        status, error = raw_post(
            url,
            bomb,
            {"content-type": "application/json", "content-encoding": "gzip", "authorization": f"Bearer {key}"},
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (status, error["code"]) == (429, "resource_exhausted") and "decompressed" in error["message"]
    assert peak < 256 << 20  # the process (tests and the in-process gateway) never held the gigabyte
    status, answer = raw_post(
        rpc_url(http_gateway, "GetJob"),
        gzip.compress(json.dumps({"jobId": "0" * 32}).encode()),
        {"content-type": "application/json", "content-encoding": "gzip", "authorization": f"Bearer {key}"},
    )
    assert (status, answer["code"]) == (404, "not_found")  # decoded and answered


def test_cors_preflight_and_exposed_trailers(http_gateway: Gateway) -> None:
    url = rpc_url(http_gateway, "GetJob")
    preflight = urllib.request.Request(
        url,
        method="OPTIONS",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-grpc-web",
        },
    )
    with urllib.request.urlopen(preflight, timeout=10) as answer:
        assert answer.status == 204
        assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
        allowed = answer.headers["Access-Control-Allow-Headers"].lower()
        assert {"authorization", "content-type", "x-grpc-web"} <= {h.strip() for h in allowed.split(",")}
    foreign = urllib.request.Request(
        url, method="OPTIONS", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    with urllib.request.urlopen(foreign, timeout=10) as answer:
        assert "Access-Control-Allow-Origin" not in answer.headers
    call = urllib.request.Request(
        url, data=b"{}", method="POST", headers={"Origin": ORIGIN, "Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(call, timeout=10)
    assert refused.value.code == 401  # Connect's unauthenticated, readable by the allowed origin
    assert refused.value.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "grpc-status" in refused.value.headers["Access-Control-Expose-Headers"]


DOWNLOAD = """
import hashlib, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as answer:
    body = answer.read()
    print(answer.status, answer.headers["Content-Type"], len(body), hashlib.sha256(body).hexdigest())
"""


def test_every_output_downloads_from_another_process_by_its_link(finished: pb.Job, client: RenderClient) -> None:
    job = client.get(finished.id)
    names = {o.name for o in job.result.outputs}
    assert names == {"full", "2048", "preview"}
    for output in job.result.outputs:
        assert output.url.startswith("http://127.0.0.1:") and output.url_expire_time.seconds > time.time() + 500
        # A process that shares nothing with the gateway but the URL.
        got = subprocess.run(
            [sys.executable, "-I", "-c", DOWNLOAD, output.url], capture_output=True, text=True, timeout=30, check=True
        )
        status, content_type, size, digest = got.stdout.split()
        assert (int(status), content_type, int(size), digest) == (
            200,
            output.content_type,
            output.size_bytes,
            output.sha256,
        )


def fetch(url: str, **headers: str) -> tuple[int, Message, bytes]:
    """Status, headers (looked up in any case) and body of a GET."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers, refused.read()


def test_links_serve_ranges_and_entity_tags_and_refuse_tampering(finished: pb.Job, client: RenderClient) -> None:
    full = next(o for o in client.get(finished.id).result.outputs if o.name == "full")
    status, headers, body = fetch(full.url)
    assert status == 200 and hashlib.sha256(body).hexdigest() == full.sha256
    assert headers["Accept-Ranges"] == "bytes" and "max-age" in headers["Cache-Control"]
    assert headers["Content-Security-Policy"].startswith("sandbox")  # it shares the console's origin
    assert fetch(full.url, **{"If-None-Match": headers["ETag"]})[0] == 304
    assert fetch(full.url, **{"If-None-Match": f'"other", W/{headers["ETag"]}'})[0] == 304  # weak comparison
    assert fetch(full.url, **{"If-None-Match": "*"})[0] == 304  # any current representation
    assert fetch(full.url, **{"If-None-Match": '"other"'})[0] == 200
    status, headers, part = fetch(full.url, Range="bytes=10-109")
    assert status == 206 and part == body[10:110]
    assert headers["Content-Range"] == f"bytes 10-109/{len(body)}"
    assert fetch(full.url, Range="bytes=-5")[2] == body[-5:]
    assert fetch(full.url, Range=f"bytes={len(body)}-")[0] == 416
    parsed = urlparse(full.url)
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    base = f"{parsed.scheme}://{parsed.netloc}"
    tampered = [
        f"{base}{parsed.path.replace('full', 'preview')}?{parsed.query}",  # another file, same signature
        f"{base}{parsed.path}?{urlencode({**query, 'expires': int(query['expires']) + 3600})}",  # longer life
        f"{base}{parsed.path}?{urlencode({**query, 'sig': query['sig'][:-2] + 'AA'})}",  # forged
        f"{base}{parsed.path}?{urlencode({**query, 'kid': 'other'})}",
        f"{base}{parsed.path}",
    ]
    for url in tampered:
        status, _, message = fetch(url)
        assert status == 403 and b"not valid" in message, url


def test_a_link_signed_with_characters_no_signature_has_is_refused(finished: pb.Job, client: RenderClient) -> None:
    """A signature that is not ASCII made hmac.compare_digest raise: a 500 with a logged traceback
    where any other tampering gets 403 (a review found it). So did a path with a NUL byte."""
    full = next(o for o in client.get(finished.id).result.outputs if o.name == "full")
    parsed = urlparse(full.url)
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    base = f"{parsed.scheme}://{parsed.netloc}"
    status, _, message = fetch(f"{base}{parsed.path}?{urlencode({**query, 'sig': query['sig'][:-1] + chr(233)})}")
    assert status == 403 and b"not valid" in message
    assert fetch(f"{base}/a%00b.js")[0] == 404


def test_an_expired_link_is_refused(http_gateway: Gateway, finished: pb.Job) -> None:
    from gateway.links import LinkSigner

    signer = link_signer_of(http_gateway)
    expired = LinkSigner(list(signer.keys.values()), signer.base_url, ttl_s=-1)
    key = finished.result.outputs[0].uri.removeprefix("local:")
    status, _, message = fetch(expired.link(key)[0])
    assert status == 403 and b"expired" in message


def link_signer_of(gateway: Gateway) -> Any:
    assert gateway.http is not None
    return gateway.http.app.files.signer  # type: ignore[attr-defined]


def test_get_output_streams_the_bytes(finished: pb.Job, client: RenderClient) -> None:
    stub = client.stub
    metadata = client.metadata
    for output in finished.result.outputs:
        pieces = list(stub.GetOutput(pb.GetOutputRequest(job_id=finished.id, name=output.name), metadata=metadata))
        assert pieces[0].file.name == output.name and pieces[0].file.url
        body = b"".join(p.data for p in pieces)
        assert hashlib.sha256(body).hexdigest() == output.sha256
    part = list(
        stub.GetOutput(pb.GetOutputRequest(job_id=finished.id, name="full", offset=5, limit=7), metadata=metadata)
    )
    assert (
        b"".join(p.data for p in part)
        == b"".join(
            p.data for p in stub.GetOutput(pb.GetOutputRequest(job_id=finished.id, name="full"), metadata=metadata)
        )[5:12]
    )
    with pytest.raises(grpc.RpcError) as missing:
        list(stub.GetOutput(pb.GetOutputRequest(job_id=finished.id, name="nope"), metadata=metadata))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_output_deleted_while_it_is_sent_is_not_found(client: RenderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deleted mid-stream (its job expired meanwhile): NOT_FOUND, which asking again will not
    change, not the storage's UNAVAILABLE."""
    import gateway.servicer
    from renderkit.storage import LocalStorage

    done = client.wait(client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job.id, timeout=60)
    output = done.result.outputs[0]
    path = output_path(output)
    monkeypatch.setattr(gateway.servicer, "OUTPUT_CHUNK_BYTES", 1024)  # several pieces
    read = LocalStorage.read

    def deleted_after_the_first_piece(
        self: LocalStorage, key: str, offset: int = 0, length: int | None = None
    ) -> bytes:
        if offset > 0:
            path.unlink(missing_ok=True)
        return read(self, key, offset, length)

    monkeypatch.setattr(LocalStorage, "read", deleted_after_the_first_piece)
    stream = client.stub.GetOutput(pb.GetOutputRequest(job_id=done.id, name=output.name), metadata=client.metadata)
    received: list[pb.GetOutputResponse] = []
    with pytest.raises(grpc.RpcError) as gone:
        for piece in stream:
            received.append(piece)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND, gone.value.details()
    assert received[0].file.name == output.name and received[1].data  # its first piece, then the answer


def test_an_uploaded_photo_is_rendered_by_id_with_several_swatches(
    client: RenderClient, http_gateway: Gateway, redis_url: str
) -> None:
    stub, metadata = client.stub, client.metadata
    asset = stub.UploadAsset(pb.UploadAssetRequest(data=PHOTO, name="room.jpg"), metadata=metadata).asset
    assert (asset.width, asset.height, asset.content_type) == (320, 240, "image/jpeg")
    again = stub.UploadAsset(pb.UploadAssetRequest(data=PHOTO, name="room.jpg"), metadata=metadata).asset
    assert again.id == asset.id and again.expire_time.seconds >= asset.expire_time.seconds
    done = []
    for seed in (1, 2):
        swatch = imaging.encode(scenes.plank_texture(64, seed=seed))[0]
        # The polygon has segmentation refine the mask on the photo (a quad alone is only drawn).
        request = material_swap_request(PHOTO, swatch, quad=QUAD, polygon=QUAD)
        request.material_swap.photo.asset_id = asset.id
        job = client.submit(request).job
        done.append(client.wait(job.id, timeout=60))
    assert [d.state for d in done] == [pb.JOB_STATE_SUCCEEDED] * 2
    assert done[1].result.geometry_reused  # the same photo and hints: the mask and plane were kept
    # Each submit noted its job, by the id it was recorded under: the sweep keeps the file for them.
    noted: Any = redis.Redis.from_url(redis_url + "/16").zrange(keys.asset_jobs("http-tests", asset.id), 0, -1)
    assert sorted(noted) == sorted(d.id.encode() for d in done)
    # Another tenant cannot use the asset, and a made-up id is refused the same way.
    with RenderClient(f"127.0.0.1:{http_gateway.port}", api_key=key_for(redis_url + "/16", "other-tenant")) as other:
        for asset_id in (asset.id, "as_" + "0" * 40):
            request = material_swap_request(PHOTO, SWATCH, quad=QUAD)
            request.material_swap.photo.asset_id = asset_id
            with pytest.raises(grpc.RpcError) as refused:
                other.submit(request)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "material_swap.photo.asset_id" in (refused.value.details() or "")
    with pytest.raises(grpc.RpcError) as bad:
        stub.UploadAsset(pb.UploadAssetRequest(data=PHOTO[: len(PHOTO) // 2]), metadata=metadata)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "data" in (bad.value.details() or "")


def test_a_request_over_the_size_limit_is_refused_before_it_is_read(http_gateway: Gateway, key: str) -> None:
    url = f"http://127.0.0.1:{http_gateway.http_port}/render.v1.RenderService/UploadAsset"
    declared = urllib.request.Request(
        url,
        data=b"x" * 1024,
        method="POST",
        headers={
            "Content-Type": "application/proto",
            "Authorization": f"Bearer {key}",
            "Content-Length": str(64 * 1024 * 1024),
        },
    )
    # Declared far over the limit: refused at once, without waiting for the 64 MiB that never come.
    started = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(declared, timeout=10)
    assert time.monotonic() - started < 5
    assert refused.value.code == 429  # Connect's resource_exhausted
    assert b"resource_exhausted" in refused.value.read()
    big = buf_curl(
        "grpcweb", url, key, {"data": "A" * (6 * 1024 * 1024), "name": "too big"}, check=False
    )  # base64 in JSON: 4.5 MB of bytes, over the 4 MiB limit
    assert big.returncode != 0 and "resource_exhausted" in big.stderr.lower().replace(" ", "_")


def test_health_and_an_unknown_path(http_gateway: Gateway) -> None:
    status, _, body = fetch(f"http://127.0.0.1:{http_gateway.http_port}/healthz")
    assert (status, body.strip()) == (200, b"SERVING")
    status, _, _ = fetch(f"http://127.0.0.1:{http_gateway.http_port}/render.v1.RenderService/NoSuchMethod")
    assert status == 404


def test_a_browser_that_goes_away_leaves_no_watcher_behind(queue_only_gateway: Gateway, redis_url: str) -> None:
    key = key_for(redis_url + "/17", "leaving-tests")
    with RenderClient(f"127.0.0.1:{queue_only_gateway.port}", api_key=key) as grpc_client:
        job = grpc_client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job
        before = queue_only_gateway.hub.watchers
        argv = [BUF, "curl", "--schema", str(ROOT / "protos"), "--protocol", "grpcweb"]
        argv += ["--header", f"authorization: Bearer {key}", "--data", json.dumps({"jobId": job.id})]
        watch = subprocess.Popen([*argv, rpc_url(queue_only_gateway, "WatchJob")], stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while queue_only_gateway.hub.watchers == before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert queue_only_gateway.hub.watchers == before + 1
        finally:
            watch.kill()
            watch.wait()
        # Long before the next keep-alive (15 s), the watcher is gone.
        deadline = time.monotonic() + 3
        while queue_only_gateway.hub.watchers > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert queue_only_gateway.hub.watchers == before
        grpc_client.cancel(job.id)


GET_JOB = "/render.v1.RenderService/GetJob"
GET_JOB_BODY = pb.GetJobRequest(job_id="0" * 32).SerializeToString()


def enveloped(message: bytes, flags: int = 0) -> bytes:
    return bytes([flags]) + len(message).to_bytes(4, "big") + message


def raw_call(
    gateway: Gateway,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    declared: int | None = None,
    timeout: float = 20,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Status, headers and body of an HTTP/1.1 POST written byte for byte (header values that HTTP
    clients will not send, a body shorter than its Content-Length: `declared`), once the gateway
    has answered and closed the connection (the request asks to keep it open)."""
    head = [f"POST {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    head += [b"Content-Length: %d" % (len(body) if declared is None else declared)]
    head += [name + b": " + value for name, value in headers]
    with socket.create_connection(("127.0.0.1", gateway.http_port), timeout=timeout) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        content = answer.read()
        if declared is not None:  # the request is unfinished: the connection cannot serve another
            assert sock.recv(1) == b"", "the connection was kept open"
    return answer.status, answer.headers, content


def stream_end(body: bytes) -> tuple[str, str]:
    """The code ("ok" for none) and message that end a gRPC-web or Connect stream's body."""
    position = 0
    while position + 5 <= len(body):
        flags, length = body[position], int.from_bytes(body[position + 1 : position + 5], "big")
        frame = body[position + 5 : position + 5 + length]
        position += 5 + length
        if flags & 0x80:  # gRPC-web's trailers
            trailers = dict(line.split(": ", 1) for line in frame.decode().split("\r\n") if line)
            return grpc_code(trailers["grpc-status"]), unquote(trailers.get("grpc-message", ""))
        if flags & 0x02:  # Connect's end of stream
            error = json.loads(frame).get("error", {})
            return error.get("code", "ok"), error.get("message", "")
    raise AssertionError(f"the body does not end a stream: {body[:200]!r}")


def grpc_code(number: str) -> str:
    """A gRPC status number as Connect spells the code ("invalid_argument")."""
    return next(code.name.lower() for code in grpc.StatusCode if code.value[0] == int(number))


def h2c_call(gateway: Gateway, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> dict[bytes, bytes]:
    """The response headers and trailers together of one call over cleartext HTTP/2."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    connection.initiate_connection()
    stream = connection.get_next_available_stream_id()
    pseudo = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"127.0.0.1"), (b":path", path.encode())]
    connection.send_headers(stream, [*pseudo, *headers], end_stream=not body)
    if body:
        connection.send_data(stream, body, end_stream=True)
    answer: dict[bytes, bytes] = {}
    with socket.create_connection(("127.0.0.1", gateway.http_port), timeout=20) as sock:
        while True:
            sock.sendall(connection.data_to_send())
            data = sock.recv(65536)
            assert data, "the connection closed before the call ended"
            for event in connection.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    answer.update((bytes(k), bytes(v)) for k, v in event.headers or ())
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    return answer


def test_a_body_that_never_finishes_is_answered_when_its_deadline_passes(
    http_gateway: Gateway, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose body stops coming holds its connection until the caller's deadline, or the
    server's limit when it sets none: then DEADLINE_EXCEEDED in the call's protocol, and the
    connection is closed. A body over the size limit is drained no longer either."""
    monkeypatch.setattr(http_app, "BODY_TIMEOUT_S", 1.0)
    credential = (b"authorization", f"Bearer {key}".encode())
    started = time.monotonic()
    status, _, body = raw_call(
        http_gateway,
        GET_JOB,
        [(b"content-type", b"application/json"), (b"connect-timeout-ms", b"500"), credential],
        b"{",
        declared=100,
    )
    error = json.loads(body)
    assert (status, error["code"]) == (504, "deadline_exceeded") and "the call's deadline (0.5 s)" in error["message"]
    status, _, body = raw_call(
        http_gateway, GET_JOB, [(b"content-type", b"application/json"), credential], b"{", declared=100
    )
    assert (status, json.loads(body)["code"]) == (504, "deadline_exceeded")
    assert "the server's limit (1 s)" in json.loads(body)["message"]
    status, _, body = raw_call(
        http_gateway,
        GET_JOB,
        [(b"content-type", b"application/grpc-web+proto"), (b"grpc-timeout", b"500m"), credential],
        b"\0",
        declared=100,
    )
    assert status == 200 and stream_end(body)[0] == "deadline_exceeded"
    # Declared a little over the limit (so it would be drained before the refusal), then stalled.
    over = 5 * 1024 * 1024
    status, _, body = raw_call(
        http_gateway, GET_JOB, [(b"content-type", b"application/proto"), credential], b"x" * 10, declared=over
    )
    assert (status, json.loads(body)["code"]) == (429, "resource_exhausted")
    assert time.monotonic() - started < 30


CONNECT_JSON = (b"content-type", b"application/json")
GRPC_WEB = (b"content-type", b"application/grpc-web+proto")


@pytest.mark.parametrize(
    "headers, credential, code, said",
    [
        ([CONNECT_JSON, (b"x-trace", b"caf\xe9")], True, "invalid_argument", "the x-trace header is not UTF-8"),
        ([CONNECT_JSON, (b"x-trace", b"caf\xe9")], False, "invalid_argument", "the x-trace header is not UTF-8"),
        ([CONNECT_JSON, (b"authorization", b"Bearer \xff\xfe")], False, "unauthenticated", "authorization header"),
        ([CONNECT_JSON, (b"connect-timeout-ms", b"soon")], True, "invalid_argument", "connect-timeout-ms header"),
        ([GRPC_WEB, (b"x-trace", b"caf\xe9")], True, "invalid_argument", "the x-trace header is not UTF-8"),
        ([GRPC_WEB, (b"x-trace", b"caf\xe9")], False, "invalid_argument", "the x-trace header is not UTF-8"),
        ([GRPC_WEB, (b"grpc-timeout", b"zzz")], True, "invalid_argument", "the grpc-timeout header is not a timeout"),
    ],
)
def test_headers_that_cannot_be_read_are_refused_in_the_calls_protocol(
    http_gateway: Gateway, key: str, headers: list[tuple[bytes, bytes]], credential: bool, code: str, said: str
) -> None:
    """A header value that is not UTF-8, or a timeout that does not parse: the caller's mistake,
    naming the header, in Connect's JSON or gRPC-web's trailers (not HTTP 500 UNKNOWN in Python's
    words); an unreadable credential is UNAUTHENTICATED."""
    if credential:
        headers = [*headers, (b"authorization", f"Bearer {key}".encode())]
    if headers[0] == GRPC_WEB:
        status, _, body = raw_call(http_gateway, GET_JOB, headers, enveloped(GET_JOB_BODY))
        assert status == 200 and stream_end(body) == (code, stream_end(body)[1])
        message = stream_end(body)[1]
    else:
        status, _, body = raw_call(http_gateway, GET_JOB, headers, json.dumps({"jobId": "0" * 32}).encode())
        error = json.loads(body)
        assert (status, error["code"]) == ({"invalid_argument": 400, "unauthenticated": 401}[code], code)
        message = error["message"]
    assert said in message and "codec" not in message and "protocol error" not in message


def test_grpc_over_http2_with_a_timeout_that_does_not_parse_is_invalid(http_gateway: Gateway, key: str) -> None:
    """gRPC's own answer (trailers), not Connect's JSON with connect-python's words."""
    headers = [(b"content-type", b"application/grpc"), (b"te", b"trailers")]
    headers += [(b"authorization", f"Bearer {key}".encode()), (b"grpc-timeout", b"zzz")]
    answer = h2c_call(http_gateway, GET_JOB, headers, enveloped(GET_JOB_BODY))
    assert grpc_code(answer[b"grpc-status"].decode()) == "invalid_argument"
    assert "grpc-timeout" in unquote(answer[b"grpc-message"].decode())
    # No body at all (END_STREAM on the headers): no message, which the caller is told.
    answer = h2c_call(http_gateway, GET_JOB, headers[:-1], b"")
    assert grpc_code(answer[b"grpc-status"].decode()) == "invalid_argument"
    assert "no message" in unquote(answer[b"grpc-message"].decode())
    # The same call, well formed, is answered (not found: the job is made up).
    answer = h2c_call(http_gateway, GET_JOB, headers[:-1], enveloped(GET_JOB_BODY))
    assert grpc_code(answer[b"grpc-status"].decode()) == "not_found"


@pytest.mark.parametrize(
    "content_type, status, said",
    [
        (b"application/grpc", 400, b"gRPC requires HTTP/2"),
        (b"application/grpc-web-text", 415, b"text mode"),
    ],
)
def test_a_protocol_this_port_cannot_serve_is_refused_saying_why(
    http_gateway: Gateway, key: str, content_type: bytes, status: int, said: bytes
) -> None:
    """gRPC over HTTP/1.1 (no trailers) and gRPC-web's text mode: a line saying so, not HTTP 500
    with connect-python's words, nor 415 with an empty body."""
    headers = [(b"content-type", content_type), (b"authorization", f"Bearer {key}".encode())]
    got, _, body = raw_call(http_gateway, GET_JOB, headers, enveloped(GET_JOB_BODY))
    assert got == status and said in body and b"ASGI" not in body


def test_an_exception_nobody_mapped_is_internal_without_its_words(
    http_gateway: Gateway, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What escapes every mapping is a bug: INTERNAL with a reference to find it by in the log, the
    exception's own text never sent (connect-python answers UNKNOWN with it)."""

    async def failing(self: ServicerBridge, method: str, metadata: Any) -> Any:
        raise RuntimeError("secret detail at /srv/keys")

    monkeypatch.setattr(ServicerBridge, "_handler", failing)
    credential = (b"authorization", f"Bearer {key}".encode())
    status, _, body = raw_call(http_gateway, GET_JOB, [CONNECT_JSON, credential], b"{}")
    error = json.loads(body)
    assert (status, error["code"]) == (500, "internal") and "secret" not in error["message"]
    assert error["message"].startswith("an internal error occurred (reference ")
    status, _, body = raw_call(http_gateway, GET_JOB, [GRPC_WEB, credential], enveloped(GET_JOB_BODY))
    code, message = stream_end(body)
    assert (code, "secret" in message) == ("internal", False)


TOO_LONG = b"\0\xff\xff\xff\xff"  # an envelope declaring a 4 GiB message


@pytest.mark.parametrize(
    "content_type, method, body, declared, code, said",
    [
        (GRPC_WEB[1], "GetJob", enveloped(GET_JOB_BODY)[:5] + b"x" * 10, None, "invalid_argument", "10 bytes into"),
        (GRPC_WEB[1], "GetJob", b"\0\0", None, "invalid_argument", "5-byte header"),
        (GRPC_WEB[1], "GetJob", b"", None, "invalid_argument", "holds no message"),
        (GRPC_WEB[1], "GetJob", enveloped(b"ab", flags=1), None, "invalid_argument", "flagged compressed"),
        (b"application/connect+json", "WatchJob", b'{"jobId": "x"}', None, "invalid_argument", "not Connect envelopes"),
        (b"application/connect+proto", "WatchJob", TOO_LONG, None, "resource_exhausted", "larger than"),
        # Refused from the envelope's header, while the rest of the body is still to come.
        (GRPC_WEB[1], "GetJob", TOO_LONG, 1000, "resource_exhausted", "larger than"),
    ],
)
def test_broken_framing_is_the_callers_error_saying_what_is_wrong(
    http_gateway: Gateway,
    key: str,
    content_type: bytes,
    method: str,
    body: bytes,
    declared: int | None,
    code: str,
    said: str,
) -> None:
    """An envelope cut short, a body that is no envelopes at all, a compressed flag without a
    compression: INVALID_ARGUMENT saying so (not UNIMPLEMENTED "zero messages", nor INTERNAL); a
    message declared over the limit: RESOURCE_EXHAUSTED at once, not once the limit is buffered."""
    headers = [(b"content-type", content_type), (b"authorization", f"Bearer {key}".encode())]
    headers += [(b"grpc-timeout", b"60S"), (b"connect-timeout-ms", b"60000")]  # not what ends the call
    started = time.monotonic()
    status, _, answer = raw_call(http_gateway, f"/render.v1.RenderService/{method}", headers, body, declared=declared)
    assert status == 200 and time.monotonic() - started < 10
    got, message = stream_end(answer)
    assert got == code and said in message, message


def test_a_watch_over_http_ends_at_the_callers_deadline(queue_only_gateway: Gateway, redis_url: str) -> None:
    """The gRPC port ends a call at its deadline; the HTTP port only bounded the body's arrival by
    it, and a watch of a queued job went on for as long as the client stayed (found by a review)."""
    key = key_for(redis_url + "/17", "deadline-tests")
    credential = (b"authorization", f"Bearer {key}".encode())
    with RenderClient(f"127.0.0.1:{queue_only_gateway.port}", api_key=key) as grpc_client:
        job = grpc_client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job
        body = enveloped(pb.WatchJobRequest(job_id=job.id).SerializeToString())
        try:
            for headers in (
                [(b"content-type", b"application/connect+proto"), (b"connect-timeout-ms", b"1500")],
                [GRPC_WEB, (b"grpc-timeout", b"1500m")],
            ):
                started = time.monotonic()
                status, _, answer = raw_call(
                    queue_only_gateway, "/render.v1.RenderService/WatchJob", [*headers, credential], body
                )
                took = time.monotonic() - started
                assert status == 200 and stream_end(answer)[0] == "deadline_exceeded", (headers, answer[-200:])
                assert 1.4 < took < 10, took
            # A unary call is held to it too (here it answers at once: nothing to wait for).
            assert grpc_client.get(job.id).state == pb.JOB_STATE_QUEUED
        finally:
            grpc_client.cancel(job.id)


def test_a_stream_in_a_compression_this_port_lacks_is_unimplemented(http_gateway: Gateway, key: str) -> None:
    """Connect's streams name their compression in connect-content-encoding; connect-python read
    an unknown one as none (the spec, and its own unary path, answer unimplemented)."""
    credential = (b"authorization", f"Bearer {key}".encode())
    body = enveloped(pb.WatchJobRequest(job_id="0" * 32).SerializeToString())
    for flags in (0, 1):  # the message sent plain, and flagged compressed
        headers = [(b"content-type", b"application/connect+proto"), (b"connect-content-encoding", b"br"), credential]
        status, _, answer = raw_call(
            http_gateway, "/render.v1.RenderService/WatchJob", headers, bytes([flags]) + body[1:]
        )
        code, message = stream_end(answer)
        assert (status, code) == (200, "unimplemented"), answer[-200:]
        assert "br" in message and "gzip" in message


def test_a_client_that_leaves_a_stream_is_not_logged_as_an_error(
    queue_only_gateway: Gateway, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing a console tab ended its watch with an ERROR and a traceback in the server's log
    (connect-python raised the disconnect's cancel to Hypercorn). And the watch ends at once: a
    cancel that came as the last bytes' write completed was swallowed (Python 3.11's wait_for),
    and half the streams ran on to their next keep-alive, 15 s later."""
    key = key_for(redis_url + "/17", "leaving-quietly")
    credential = (b"authorization", f"Bearer {key}".encode())
    with RenderClient(f"127.0.0.1:{queue_only_gateway.port}", api_key=key) as grpc_client:
        job = grpc_client.submit(material_swap_request(PHOTO, SWATCH, quad=QUAD)).job
        body = enveloped(pb.WatchJobRequest(job_id=job.id).SerializeToString())
        before = queue_only_gateway.hub.watchers
        caplog.set_level(logging.WARNING)
        for _ in range(3):
            for content_type in (b"application/connect+proto", b"application/grpc-web+proto"):
                head = [b"POST /render.v1.RenderService/WatchJob HTTP/1.1", b"Host: 127.0.0.1"]
                head += [b"Content-Length: %d" % len(body), b"content-type: " + content_type, b": ".join(credential)]
                with socket.create_connection(("127.0.0.1", queue_only_gateway.http_port), timeout=20) as sock:
                    sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
                    assert sock.recv(1024).startswith(b"HTTP/1.1 200")  # the watch is open
                deadline = time.monotonic() + 5  # long before the next keep-alive (15 s)
                while queue_only_gateway.hub.watchers > before and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert queue_only_gateway.hub.watchers == before, content_type
        grpc_client.cancel(job.id)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


def test_a_credential_without_the_methods_scope_is_refused_before_its_body_is_decoded(
    http_gateway: Gateway, redis_url: str
) -> None:
    """As on the gRPC port, which refuses the scope before reading the request: a read-only key
    was answered INVALID_ARGUMENT for a body that does not parse (and had it decoded, seconds of
    the event loop for a large JSON message) where the gRPC port said PERMISSION_DENIED."""
    from gateway.auth.principal import Scope

    reader = key_for(redis_url + "/16", "http-scopes-early", frozenset({Scope.READ}))
    url = rpc_url(http_gateway, "SubmitRender")
    for body, content_type in ((b"{not json", "application/json"), (b"\xff\xff\xff", "application/proto")):
        status, error = raw_post(url, body, {"content-type": content_type, "authorization": f"Bearer {reader}"})
        assert (status, error["code"]) == (403, "permission_denied"), error
    request = urllib.request.Request(
        url,
        data=b"\0\0\0\0\x03\xff\xff\xff",
        method="POST",
        headers={"content-type": "application/grpc-web+proto", "authorization": f"Bearer {reader}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        body = answer.read()
        status_line = answer.headers.get("grpc-status") or body.decode("latin-1")
    assert "grpc-status: 7" in status_line or status_line == "7", status_line
    answer = fetch(
        rpc_url(http_gateway, "SubmitRender") + "?encoding=json&message=%7B%7D", authorization=f"Bearer {reader}"
    )
    assert answer[0] == 403 and json.loads(answer[2])["code"] == "permission_denied"


def test_submit_and_watch_needs_both_scopes_before_its_body_is_decoded(http_gateway: Gateway, redis_url: str) -> None:
    """SubmitAndWatch needs render and read: a render-only key was refused PERMISSION_DENIED only
    after its body was decoded, so one that did not parse got INVALID_ARGUMENT (and one too large
    RESOURCE_EXHAUSTED), on either port, where a read-only key got PERMISSION_DENIED whatever it sent."""
    from gateway.auth.principal import Scope

    path = "/render.v1.RenderService/SubmitAndWatch"
    for scopes in ({Scope.RENDER}, {Scope.READ}):
        key = key_for(redis_url + "/16", "http-scopes-both", frozenset(scopes))
        authorization = (b"authorization", f"Bearer {key}".encode())
        for content_type, body in (
            (b"application/connect+json", enveloped(b"{not json")),
            (b"application/grpc-web+proto", enveloped(b"\xff\xff\xff")),
        ):
            status, _, answer = raw_call(http_gateway, path, [(b"content-type", content_type), authorization], body)
            code, message = stream_end(answer)
            assert (status, code) == (200, "permission_denied"), (scopes, content_type, message)
        with grpc.insecure_channel(f"127.0.0.1:{http_gateway.port}") as channel:
            raw: Any = channel.unary_stream(path)  # bytes in and out: no (de)serializer
            call = raw(b"\xff\xff\xff", metadata=(("authorization", f"Bearer {key}"),), timeout=10)
            with pytest.raises(grpc.RpcError) as refused:
                next(iter(call))
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, scopes  # type: ignore[attr-defined]


def test_a_download_whose_http2_window_stays_shut_is_reset_and_the_connections_other_calls_go_on(
    http_gateway: Gateway, finished: pb.Job, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser's calls share one HTTP/2 connection: a GetOutput whose stream's window its client
    leaves shut for WRITE_STALL_S is reset alone (CANCEL), its call let go of (no request of the
    connection left in flight), and a GetJob on the same connection, sent after it, is answered.
    Aborting the connection lost every call on it."""
    monkeypatch.setattr(streams, "WRITE_STALL_S", 0.5)
    output = max(finished.result.outputs, key=lambda o: o.size_bytes)  # its end waits on the window
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    pseudo = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"127.0.0.1")]
    credential = (b"authorization", f"Bearer {key}".encode())
    download = [(b":path", b"/render.v1.RenderService/GetOutput"), (b"content-type", b"application/connect+proto")]
    conn.send_headers(1, [*pseudo, *download, credential])
    request = pb.GetOutputRequest(job_id=finished.id, name=output.name).SerializeToString()
    conn.send_data(1, enveloped(request), end_stream=True)
    get = [(b":path", GET_JOB.encode()), (b"content-type", b"application/proto"), credential]
    conn.send_headers(3, [*pseudo, *get])
    conn.send_data(3, pb.GetJobRequest(job_id=finished.id).SerializeToString(), end_stream=True)
    conn.increment_flow_control_window(1 << 20, stream_id=3)  # the download's window alone stays shut
    resets: dict[int, int] = {}
    answered, ended = b"", False
    with socket.create_connection(("127.0.0.1", http_gateway.http_port), timeout=20) as sock:
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + 20
        while not (ended and 1 in resets) and time.monotonic() < deadline:
            data = sock.recv(65536)
            assert data, "the connection closed under the connection's other call"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.StreamReset):
                    resets[event.stream_id] = event.error_code
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == 3:
                    answered += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 3)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == 3:
                    ended = True
            sock.sendall(conn.data_to_send())
        assert resets == {1: h2.errors.ErrorCodes.CANCEL}
        assert ended and pb.GetJobResponse.FromString(answered).job.id == finished.id
        assert http_gateway.http is not None
        mine = sock.getsockname()

        def in_flight() -> int:
            assert http_gateway.http is not None
            held = [c for key, c in http_gateway.http._open.items() if key == mine]
            assert held and not held[0].closing, "the connection was closed"
            return len(held[0].requests)

        deadline = time.monotonic() + 5
        while in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_flight() == 0  # the download's call ended with its stream
