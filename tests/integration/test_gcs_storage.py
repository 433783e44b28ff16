"""GcsStorage against the GCS emulator: objects, ranges, deletes, V4 signed URLs checked against the
signing key, uploads that fail or lose their answer, and a job whose upload fails halfway."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devstack import scenes
from devstack.launcher import ROOT
from gateway.server import Gateway, create_server
from render.v1 import render_service_pb2 as pb
from render_client.client import material_swap_request
from renderkit import imaging
from renderkit.storage import GcsStorage, StorageError, StorageMissing, open_storage
from tests.conftest import LoopThread, RedisServer, gateway_settings
from tests.credentials import client_for
from tests.gcs_emulator import GcsEmulator, gcs_front, running_emulator

BUCKET = "render-tests"
KEY_EMAIL = "renders@render-tests.iam.gserviceaccount.com"


@pytest.fixture()
def storage(
    gcs_emulator: GcsEmulator, service_account_key: tuple[Path, rsa.RSAPublicKey], request: pytest.FixtureRequest
) -> GcsStorage:
    """A GcsStorage on the emulator under a prefix of its own, opened from STORAGE_URL as the
    servers open it, signing with the throwaway service account's key."""
    gcs_emulator.create_bucket(BUCKET)
    env = {
        "STORAGE_EMULATOR_HOST": gcs_emulator.host,
        "GOOGLE_APPLICATION_CREDENTIALS": str(service_account_key[0]),
        "STORAGE_RETRY_SECONDS": "2",
    }
    opened = open_storage(f"gs://{BUCKET}/{request.node.name}/v1", env)
    assert isinstance(opened, GcsStorage)
    return opened


def test_objects_are_written_read_and_described(storage: GcsStorage, gcs_emulator: GcsEmulator) -> None:
    data = bytes(range(256)) * 40
    stored = storage.put("renders/t/-/job1/full.png", data, "image/png")
    prefix = "test_objects_are_written_read_and_described/v1"
    assert stored.uri == f"gs://{BUCKET}/{prefix}/renders/t/-/job1/full.png"
    assert (stored.size_bytes, stored.content_type) == (len(data), "image/png")
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert gcs_emulator.names(BUCKET, prefix) == [f"{prefix}/renders/t/-/job1/full.png"]
    assert storage.key_of(stored.uri) == "renders/t/-/job1/full.png"
    assert storage.get("renders/t/-/job1/full.png") == data

    info = storage.stat("renders/t/-/job1/full.png")
    assert (info.size_bytes, info.content_type) == (len(data), "image/png")
    assert info.etag.startswith('"') and info.etag.endswith('"') and len(info.etag) > 2
    assert storage.stat("renders/t/-/job1/full.png").etag == info.etag
    storage.put("renders/t/-/job1/full.png", data[::-1], "image/png")
    assert storage.stat("renders/t/-/job1/full.png").etag != info.etag  # changed with the object

    with pytest.raises(StorageMissing, match="no such object"):
        storage.stat("renders/t/-/job1/missing.png")
    with pytest.raises(StorageMissing, match="no such object"):
        storage.get("renders/t/-/job1/missing.png")


def test_ranged_reads_return_exactly_the_bytes_asked_for(storage: GcsStorage) -> None:
    data = bytes(range(256)) * 4
    storage.put("renders/t/-/job2/full.jpg", data, "image/jpeg")
    read = storage.read
    key = "renders/t/-/job2/full.jpg"
    assert read(key, 0, 10) == data[:10]
    assert read(key, 100, 50) == data[100:150]
    assert read(key, 1000) == data[1000:]
    assert read(key, len(data) - 3, 100) == data[-3:]  # a range past the end is cut at the end
    assert read(key, len(data)) == b""
    assert read(key, 5, 0) == b""
    assert read(key) == data
    with pytest.raises(StorageMissing, match="no such object"):
        read("renders/t/-/job2/missing.jpg", 0, 10)
    with pytest.raises(StorageMissing, match="no such object"):
        read("renders/t/-/job2/missing.jpg", 0, 0)


def test_delete_and_delete_prefix_remove_only_what_they_name(storage: GcsStorage, gcs_emulator: GcsEmulator) -> None:
    for key in ("uploads/job1/photo", "uploads/job1/swatch", "uploads/job10/photo", "work/job1/mask.pb"):
        storage.put(key, key.encode(), "application/octet-stream")
    assert storage.delete_prefix("uploads/job1/") == 2
    assert storage.delete_prefix("uploads/job1/") == 0
    storage.delete("work/job1/mask.pb")
    storage.delete("work/job1/mask.pb")  # a missing key is no error
    prefix = "test_delete_and_delete_prefix_remove_only_what_they_name/v1/"
    assert gcs_emulator.names(BUCKET, prefix) == [prefix + "uploads/job10/photo"]


def test_urls_name_the_bucket_and_prefix_and_nothing_else(
    storage: GcsStorage, gcs_emulator: GcsEmulator, service_account_key: tuple[Path, rsa.RSAPublicKey]
) -> None:
    prefix = "test_urls_name_the_bucket_and_prefix_and_nothing_else/v1"
    assert storage.uri("assets/t/a1") == f"gs://{BUCKET}/{prefix}/assets/t/a1"
    for foreign in (
        "local:assets/t/a1",
        f"gs://other-bucket/{prefix}/assets/t/a1",
        f"gs://{BUCKET}/assets/t/a1",
        f"gs://{BUCKET}/{prefix}/../x",
        f"gs://{BUCKET}/{prefix}/",
    ):
        with pytest.raises(StorageError):
            storage.key_of(foreign)
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator.host}
    whole = open_storage(f"gs://{BUCKET}", env)
    assert isinstance(whole, GcsStorage) and whole.key_of(f"gs://{BUCKET}/a/b") == "a/b"
    for bad in ("gs://", "gs://Not_A_Bucket/x", f"gs://{BUCKET}/a/../b", "s3://bucket/x"):
        with pytest.raises(StorageError):
            open_storage(bad, env)
    with pytest.raises(StorageError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        open_storage(f"gs://{BUCKET}", {**env, "GOOGLE_APPLICATION_CREDENTIALS": str(ROOT / "no-such-key.json")})


def signed_string(url: str) -> tuple[bytes, bytes]:
    """What a V4 signed URL's signature signs, rebuilt from the URL by the GCS specification
    (canonical request, then the string to sign), and the signature itself."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    fields = dict(query)
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in query if k != "X-Goog-Signature")
    canonical_request = "\n".join(
        [
            "GET",
            parts.path,
            "&".join(f"{k}={v}" for k, v in encoded),
            f"host:{parts.netloc}\n",
            fields["X-Goog-SignedHeaders"],
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = fields["X-Goog-Credential"].split("/", 1)[1]
    to_sign = "\n".join(
        [
            fields["X-Goog-Algorithm"],
            fields["X-Goog-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    return to_sign.encode(), bytes.fromhex(fields["X-Goog-Signature"])


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True)) | changes
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def verifies(public_key: rsa.RSAPublicKey, url: str) -> bool:
    message, signature = signed_string(url)
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def test_a_signed_url_downloads_the_object_until_its_expiry_under_the_keys_signature(
    storage: GcsStorage, gcs_emulator: GcsEmulator, service_account_key: tuple[Path, rsa.RSAPublicKey]
) -> None:
    data = b"\x89PNG a render" * 100
    storage.put("renders/t/p/job3/preview.png", data, "image/png")
    before = int(time.time())
    made = storage.signed_url("renders/t/p/job3/preview.png", 900)
    assert made is not None
    url, expires = made
    # Any host can open it, without credentials (it points at the emulator, as GCS's would at GCS).
    assert url.startswith(gcs_emulator.host + f"/{BUCKET}/")
    assert storage.link_origin() == gcs_emulator.host  # what the console's policy lets images come from
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.read() == data
        assert answer.headers["Content-Type"] == "image/png"

    fields = dict(parse_qsl(urlsplit(url).query))
    assert fields["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert fields["X-Goog-Credential"].startswith(KEY_EMAIL + "/")
    signed_at = int(datetime.strptime(fields["X-Goog-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp())
    assert fields["X-Goog-Expires"] == "900" and expires == signed_at + 900
    assert before - 1 <= signed_at <= time.time() + 1

    # The signature is the key's over the canonical request; any change to the expiry breaks it.
    public_key = service_account_key[1]
    assert verifies(public_key, url)
    assert not verifies(public_key, with_query(url, **{"X-Goog-Expires": "604800"}))
    assert not verifies(public_key, with_query(url, **{"X-Goog-Date": "20990101T000000Z"}))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    assert not verifies(other, url)
    # The emulator itself checks neither signatures nor expiry (see tests/gcs_emulator.py), so a
    # tampered URL would still download there: the checks above are what stands for GCS's.

    longest = storage.signed_url("renders/t/p/job3/preview.png", 30 * 24 * 3600)
    assert longest is not None and dict(parse_qsl(urlsplit(longest[0]).query))["X-Goog-Expires"] == "604800"


def test_outside_an_emulator_signed_urls_point_at_gcs(service_account_key: tuple[Path, rsa.RSAPublicKey]) -> None:
    """Signing needs no network: the production configuration's URLs, checked offline."""
    from google.oauth2 import service_account

    key_file, public_key = service_account_key
    credentials = service_account.Credentials.from_service_account_file(str(key_file))
    storage = GcsStorage("render-outputs", "prod", credentials=credentials)
    made = storage.signed_url("renders/t/-/j/full.jpg", 3600)
    assert made is not None
    assert made[0].startswith("https://storage.googleapis.com/render-outputs/prod/renders/t/-/j/full.jpg?")
    assert storage.link_origin() == "https://storage.googleapis.com"
    assert verifies(public_key, made[0])


def test_without_a_signing_key_no_url_is_signed(gcs_emulator: GcsEmulator) -> None:
    """The gateway then links outputs to its own HTTP port."""
    gcs_emulator.create_bucket(BUCKET)
    storage = open_storage(f"gs://{BUCKET}/unsigned", {"STORAGE_EMULATOR_HOST": gcs_emulator.host})
    storage.put("renders/t/-/j/full.jpg", b"jpeg", "image/jpeg")
    assert storage.signed_url("renders/t/-/j/full.jpg", 60) is None
    assert storage.link_origin() is None


def test_a_retried_upload_whose_first_answer_was_lost_is_written_once(gcs_emulator: GcsEmulator) -> None:
    """GCS uploads here are create-only (ifGenerationMatch=0): the retry of an upload that landed
    gets 412, recognised by the object's MD5 as this upload's own; replacing an object is
    conditional on the generation just read."""
    gcs_emulator.create_bucket(BUCKET)
    with gcs_front(gcs_emulator) as front:
        storage = GcsStorage(BUCKET, "retries", emulator_host=front.host, retry_s=10)
        lost = {"retries/renders/t/-/j/full.jpg"}

        def lose_once(name: str) -> bool:
            if name in lost:
                lost.remove(name)
                return True
            return False

        front.lose_answer = lose_once
        stored = storage.put("renders/t/-/j/full.jpg", b"first", "image/jpeg")
        assert stored.size_bytes == 5 and storage.get("renders/t/-/j/full.jpg") == b"first"
        assert front.uploads == ["retries/renders/t/-/j/full.jpg"]  # the retry wrote nothing

        storage.put("renders/t/-/j/full.jpg", b"second", "image/jpeg")  # an existing object is replaced
        assert storage.get("renders/t/-/j/full.jpg") == b"second"
        storage.put("renders/t/-/j/full.jpg", b"second", "image/png")  # as is its content type
        assert storage.stat("renders/t/-/j/full.jpg").content_type == "image/png"


def test_a_replacing_upload_whose_answer_was_lost_is_written_once(gcs_emulator: GcsEmulator) -> None:
    """Replacing an object (a job run again after a takeover writes its outputs' keys again, with
    new bytes) is conditional on the generation read: when that write lands and its answer is
    lost, the library's retry gets 412, its own write having moved the generation on; the object
    holding these bytes is recognised as this write's, not reported as another writer's."""
    gcs_emulator.create_bucket(BUCKET)
    with gcs_front(gcs_emulator) as front:
        storage = GcsStorage(BUCKET, "replace-lost", emulator_host=front.host, retry_s=10)
        storage.put("renders/t/-/j/full.jpg", b"first run", "image/jpeg")
        name = "replace-lost/renders/t/-/j/full.jpg"
        front.lose_answer = lambda uploaded: uploaded == name and front.uploads.count(name) == 2
        storage.put("renders/t/-/j/full.jpg", b"second run", "image/jpeg")
        assert storage.get("renders/t/-/j/full.jpg") == b"second run"
        assert front.uploads == [name, name]  # the create and the replace: its retry wrote nothing


def test_a_failed_upload_raises_storage_error_with_a_safe_message(
    gcs_emulator: GcsEmulator, tmp_path: Path, service_account_key: tuple[Path, rsa.RSAPublicKey]
) -> None:
    missing = GcsStorage("no-such-bucket", "p", emulator_host=gcs_emulator.host, retry_s=1)
    with pytest.raises(StorageError) as no_bucket:
        missing.put("renders/t/-/j/full.jpg", b"x", "image/jpeg")
    assert str(no_bucket.value) == "could not write renders/t/-/j/full.jpg: the bucket does not exist"

    with running_emulator(tmp_path / "emulator.log") as stopping:
        stopping.create_bucket(BUCKET)
        storage = GcsStorage(BUCKET, "p", emulator_host=stopping.host, retry_s=1)
        storage.put("renders/t/-/j/full.jpg", b"x", "image/jpeg")
        stopping.stop()
        started = time.monotonic()
        with pytest.raises(StorageError) as down:
            storage.put("renders/t/-/j/preview.jpg", b"x", "image/jpeg")
        assert time.monotonic() - started < 10  # retried for STORAGE_RETRY_SECONDS, not forever
    message = str(down.value)
    assert message == "could not write renders/t/-/j/preview.jpg: the storage service is unavailable"
    for leak in ("127.0.0.1", str(stopping.port), BUCKET, "Error", "http"):
        assert leak not in message


def test_google_cloud_storage_is_loaded_only_for_gs_urls() -> None:
    script = (
        "import sys, gateway.server; from renderkit.storage import open_storage; open_storage(sys.argv[1]); "
        "assert 'google.cloud.storage' not in sys.modules, 'loaded'"
    )
    subprocess.run([sys.executable, "-c", script, str(ROOT / "var" / "lazy-check")], check=True, cwd=ROOT)


def test_a_job_whose_upload_fails_halfway_ends_upload_failed_leaving_no_output(
    gcs_emulator: GcsEmulator,
    own_redis: RedisServer,  # no other gateway's dispatcher takes its jobs
    stages: dict[str, str],
    loop_thread: LoopThread,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gateway on gs:// storage (STORAGE_URL and STORAGE_EMULATOR_HOST, as in production) whose
    storage answers 503 to the job's second output for longer than STORAGE_RETRY_SECONDS."""
    gcs_emulator.create_bucket(BUCKET)
    scene = scenes.room_scene(160, 120)
    request = material_swap_request(
        imaging.encode(scene.photo)[0],
        imaging.encode(scenes.plank_texture(64))[0],
        quad=[(float(x), float(y)) for x, y in scene.quad],
    )
    with gcs_front(gcs_emulator) as front:
        outputs: list[str] = []

        def refuse(name: str) -> int | None:
            if "/renders/" in name:
                outputs.append(name)
                return 503 if len(outputs) >= 2 else None
            return None

        front.refuse = refuse
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", front.host)
        monkeypatch.setenv("STORAGE_RETRY_SECONDS", "1")
        settings = gateway_settings(own_redis.url, tmp_path / "unused", stages, storage_url=f"gs://{BUCKET}/halfway")

        async def start() -> Gateway:
            gateway = create_server(settings)
            await gateway.start()
            await gateway.edge.wait_serving(30)
            return gateway

        gateway = loop_thread.run(start())
        try:
            with client_for(f"127.0.0.1:{gateway.port}", own_redis.url, "gcs") as client:
                done = client.wait(client.submit(request).job.id, timeout=60)
            inputs = f"halfway/uploads/{done.id}/"
            deadline = time.monotonic() + 10
            while gcs_emulator.names(BUCKET, inputs) and time.monotonic() < deadline:
                time.sleep(0.05)  # the dispatcher releases a job's inputs once it has ended
        finally:
            loop_thread.run(gateway.stop(0.5))
    assert done.state == pb.JOB_STATE_FAILED
    assert (done.error.code, done.error.message) == (pb.ERROR_CODE_UPLOAD_FAILED, "the render could not be stored")
    folder = f"halfway/renders/gcs/-/{done.id}/"
    assert outputs[0].startswith(folder) and len(outputs) >= 2  # the first was written, the second refused
    assert front.uploads[-1] == outputs[0]
    assert gcs_emulator.names(BUCKET, folder) == []  # and deleted again
    assert gcs_emulator.names(BUCKET, inputs) == []
