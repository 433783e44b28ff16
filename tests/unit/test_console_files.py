"""The console's static files as the gateway's HTTP port serves them: what each answer says to the
browser (its policy, its caching) and what it refuses to serve."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from gateway.http.console import ConsoleFiles, content_security_policy


def get(files: ConsoleFiles, path: str, method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through the ASGI callable: its status, headers and body."""
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(files({"type": "http", "method": method, "path": path}, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


def built(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text('<!doctype html><script type="module" src="/assets/app-1a2b.js"></script>')
    (root / "assets" / "app-1a2b.js").write_text("console.log(1)")
    return root


def directives(policy: bytes) -> dict[str, list[str]]:
    return {name: values for name, *values in (d.split() for d in policy.decode().split(";"))}


def test_every_answer_carries_a_policy_allowing_only_its_own_code_and_the_output_links_images(tmp_path: Path) -> None:
    files = ConsoleFiles(built(tmp_path), ["https://renders.example.com", "https://storage.googleapis.com"])
    for path in ("/", "/jobs/abc", "/assets/app-1a2b.js"):
        status, headers, _ = get(files, path)
        assert status == 200, path
        policy = directives(headers[b"content-security-policy"])
        assert policy["default-src"] == ["'none'"]
        assert policy["script-src"] == ["'self'"]  # no inline script, no eval, no other origin
        assert policy["connect-src"] == ["'self'"]
        assert policy["img-src"] == [
            "'self'",
            "data:",
            "blob:",
            "https://renders.example.com",
            "https://storage.googleapis.com",
        ]
        assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
        assert headers[b"x-content-type-options"] == b"nosniff"


def test_the_policy_names_each_image_origin_once_and_skips_none() -> None:
    policy = directives(content_security_policy(["", "http://127.0.0.1:8080", "http://127.0.0.1:8080"]))
    assert policy["img-src"] == ["'self'", "data:", "blob:", "http://127.0.0.1:8080"]


def test_the_page_is_never_cached_its_hashed_assets_for_a_year(tmp_path: Path) -> None:
    files = ConsoleFiles(built(tmp_path))
    assert get(files, "/")[1][b"cache-control"] == b"no-cache"
    assert get(files, "/assets/app-1a2b.js")[1][b"cache-control"] == b"public, max-age=31536000, immutable"


def test_files_outside_the_build_and_other_methods_are_refused(tmp_path: Path) -> None:
    root = built(tmp_path / "dist")
    (tmp_path / "secret.txt").write_text("not the console's")
    files = ConsoleFiles(root)
    assert get(files, "/../secret.txt")[0] == 404
    assert get(files, "/assets/missing.js")[0] == 404
    assert get(files, "/a\0b.js")[0] == 404
    assert get(files, "/", "POST")[0] == 405
