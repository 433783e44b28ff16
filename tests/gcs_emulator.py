"""Google Cloud Storage for tests: gcp-storage-emulator run as a server from its own virtualenv
(`make gcs-emulator` makes .venv-gcs: its dependencies conflict with ours), a throwaway
service-account key that signs URLs, and a front that gives the emulator what GCS has and it lacks.

What the emulator (2026.7.19) does and does not do, read from its source: it serves the JSON API,
media, multipart and resumable uploads, ranged downloads, and `GET /{bucket}/{object}`, which is
where V4 signed URLs point, but it ignores their query entirely: neither the signature nor the
expiry is checked (tests verify signatures themselves, against the key's public key). It also
ignores `ifGenerationMatch`, so `GcsFront` enforces it as GCS does.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.launcher import ROOT, free_port

EMULATOR = ROOT / ".venv-gcs" / "bin" / "gcp-storage-emulator"
Answer = tuple[int, list[tuple[str, str]], bytes]  # an HTTP answer: status, headers, body


class GcsEmulator:
    """gcp-storage-emulator on a free loopback port, objects in memory; `host` is what
    STORAGE_EMULATOR_HOST takes."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> None:
        """Starts it and waits until it answers its health check."""
        if not EMULATOR.exists():
            pytest.fail(f"{EMULATOR.relative_to(ROOT)} is missing: run `make gcs-emulator` (make test does)")
        command = [str(EMULATOR), "start", "--host", "127.0.0.1", "--port", str(self.port), "--in-memory", "--quiet"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(self.host + "/", timeout=1) as answer:
                if answer.read() == b"OK":
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the GCS emulator did not start; see {self.log_path}")
            time.sleep(0.05)

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(
            f"{self.host}/storage/v1/b?project=render-tests",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with contextlib.suppress(urllib.error.HTTPError):  # 409: it exists already
            urllib.request.urlopen(request, timeout=10).close()

    def names(self, bucket: str, prefix: str = "") -> list[str]:
        """The names of the objects in a bucket under a prefix, read from the emulator directly."""
        url = f"{self.host}/storage/v1/b/{bucket}/o?prefix={quote(prefix)}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return [item["name"] for item in json.load(answer).get("items") or []]

    def stop(self) -> None:
        """Stops it by its process id (SIGTERM, then SIGKILL if it lingers)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@contextlib.contextmanager
def running_emulator(log_path: Path) -> Iterator[GcsEmulator]:
    emulator = GcsEmulator(log_path)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    """The GCS emulator for the session; tests make their own buckets."""
    with running_emulator(tmp_path_factory.mktemp("gcs") / "emulator.log") as emulator:
        yield emulator


@pytest.fixture(scope="session")
def service_account_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rsa.RSAPublicKey]:
    """A throwaway service account's key file (as GOOGLE_APPLICATION_CREDENTIALS names one) and its
    public key, to check the signatures made with it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    info = {
        "type": "service_account",
        "project_id": "render-tests",
        "private_key_id": "0123456789abcdef",
        "private_key": pem.decode(),
        "client_email": "renders@render-tests.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path_factory.mktemp("gcs-key") / "service-account.json"
    path.write_text(json.dumps(info))
    path.chmod(0o600)
    return path, key.public_key()


class GcsFront:
    """An HTTP front to the emulator (point STORAGE_EMULATOR_HOST at `host`) that honours
    `ifGenerationMatch` on uploads, as GCS does (412 when the object's generation differs; 0: it
    must not exist), and fails uploads on purpose: `refuse(name)` gives a status to answer instead
    of uploading, `lose_answer(name)` uploads and then answers 503, as a connection lost after the
    write would. `uploads` lists the object names uploaded, in order."""

    def __init__(self, emulator: GcsEmulator) -> None:
        self.upstream = urlsplit(emulator.host).netloc
        self.refuse: Callable[[str], int | None] = lambda name: None
        self.lose_answer: Callable[[str], bool] = lambda name: False
        self.uploads: list[str] = []
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                front.handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _forward(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        connection = HTTPConnection(self.upstream, timeout=30)
        try:
            connection.request(method, path, body, headers)
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()

    def _generation(self, bucket: str, name: str) -> int:
        status, _, body = self._forward("GET", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}", None, {})
        return int(json.loads(body)["generation"]) if status == 200 else 0

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "connection")}
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        answer_headers: list[tuple[str, str]] = []
        if request.command == "POST" and url.path.startswith("/upload/") and body is not None:
            bucket = url.path.split("/")[5]
            name = _upload_name(body, request.headers.get("Content-Type", ""), query)
            wanted = query.get("ifGenerationMatch")
            refused = self.refuse(name)
            if refused is not None:
                status, answer = refused, json.dumps({"error": {"code": refused, "message": "refused"}}).encode()
            elif wanted and int(wanted[0]) != self._generation(bucket, name):
                status, answer = 412, json.dumps({"error": {"code": 412, "message": "conditionNotMet"}}).encode()
            else:
                self.uploads.append(name)
                status, answer_headers, answer = self._forward(request.command, request.path, body, headers)
                if self.lose_answer(name):
                    status, answer_headers, answer = 503, [], b'{"error": {"code": 503, "message": "lost"}}'
        else:
            status, answer_headers, answer = self._forward(request.command, request.path, body, headers)
        request.send_response(status)
        for key, value in answer_headers:
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                request.send_header(key, value)
        if not answer_headers:
            request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(answer)))
        request.end_headers()
        request.wfile.write(answer)


def _upload_name(body: bytes, content_type: str, query: dict[str, list[str]]) -> str:
    """The object name an upload names: in its query, or in a multipart upload's JSON part."""
    if "name" in query:
        return query["name"][0]
    if content_type.startswith("application/json"):  # a resumable upload's start
        return str(json.loads(body).get("name", ""))
    if content_type.startswith("multipart/"):
        message = BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        metadata = json.loads(message.get_payload()[0].get_payload())  # type: ignore[index, union-attr, arg-type]
        return str(metadata.get("name", ""))
    return ""


@contextlib.contextmanager
def gcs_front(emulator: GcsEmulator) -> Iterator[GcsFront]:
    front = GcsFront(emulator)
    try:
        yield front
    finally:
        front.close()
