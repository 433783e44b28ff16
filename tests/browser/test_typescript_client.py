"""The TypeScript client (clients/typescript, built to dist/) in Node against the embedded stack,
over Connect and gRPC-web: what its README example does, checked from the outside."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from devstack.launcher import ROOT, Stack
from render.v1 import render_service_pb2 as pb

CLIENT = ROOT / "clients" / "typescript"
SAMPLES = ROOT / "console" / "dist" / "samples"


@pytest.fixture(scope="module")
def dist() -> Path:
    """The client compiled by its own build script (tsc into dist/)."""
    if not (CLIENT / "node_modules").exists():
        pytest.fail("the client's packages are not installed: run `make console`")
    subprocess.run(["npm", "run", "--silent", "build"], cwd=CLIENT, check=True, timeout=120)
    return CLIENT / "dist" / "index.js"


@pytest.mark.parametrize("protocol", ["connect", "grpc-web"])
def test_node_uploads_reads_field_violations_submits_and_watches_in_two_calls_and_one(
    dist: Path, stack: Stack, protocol: str
) -> None:
    manifest = json.loads((SAMPLES / "sample.json").read_text())
    ran = subprocess.run(
        [
            "node",
            str(Path(__file__).with_name("client_check.mjs")),
            str(dist),
            stack.http_url,
            stack.api_key,
            protocol,
            str(SAMPLES / manifest["photo"]),
            str(SAMPLES / manifest["swatches"]["oak"]),
            json.dumps(manifest["quad"]),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert report["violations"] == [
        {"field": "material_swap.hints.quad", "description": "needs exactly 4 points, got 3"}
    ]
    events = report["events"]
    cursors = [e["cursor"] for e in events]
    assert len(cursors) == len(set(cursors)) and all(cursors)
    assert [e["state"] for e in events][-1] == pb.JOB_STATE_SUCCEEDED
    assert events[-1]["outputs"] >= 2 and any(e["message"].startswith("Step 2/4") for e in events)
    assert report["fullBytes"] == report["fullSize"] > 0
    # The same swap in one call: a new job, its events from QUEUED to the end.
    followed = report["followed"]
    assert followed[0]["state"] == pb.JOB_STATE_QUEUED and followed[-1]["state"] == pb.JOB_STATE_SUCCEEDED
    assert {e["jobId"] for e in followed} == {followed[0]["jobId"]} != {report["jobId"]}
    # For the outcome only: the first event and the terminal one; a watch for it, the terminal one.
    outcome = report["outcome"]
    assert [e["state"] for e in outcome] == [pb.JOB_STATE_QUEUED, pb.JOB_STATE_SUCCEEDED]
    assert outcome[0]["jobId"] == outcome[1]["jobId"]
    assert report["outcomeWatched"] == [{"cursor": outcome[1]["cursor"], "state": pb.JOB_STATE_SUCCEEDED}]
    # Cut after its first event, a wait for the outcome goes on as a WatchJob for the outcome.
    assert report["outcomeCalls"] == ["SubmitAndWatch", "WatchJob"]
    assert report["outcomeResumed"] == [pb.JOB_STATE_QUEUED, pb.JOB_STATE_SUCCEEDED]
    # Past the ended job's last event: OUT_OF_RANGE (11), thrown after one call.
    assert (report["pastEnd"], report["pastEndCalls"]) == ("11", 1)
    # Cut after two events, the one-call stream goes on as a watch: every event once, in order.
    resumed = report["resumed"]
    assert report["calls"] == ["SubmitAndWatch", "WatchJob"]
    assert resumed[0]["state"] == pb.JOB_STATE_QUEUED and resumed[-1]["state"] == pb.JOB_STATE_SUCCEEDED
    cursors = [e["cursor"] for e in resumed]
    assert len(cursors) == len(set(cursors)) > 2 and len({e["jobId"] for e in resumed}) == 1
    # Lost before its first event: made again with the key, and the first request's job streamed
    # from its start (the same job: its events were all written before the second call); without
    # a key, thrown (Code.Unknown, 2: a dropped fetch).
    repeated = report["repeated"]
    assert report["repeatCalls"] == ["SubmitAndWatch", "SubmitAndWatch"]
    assert repeated[0]["state"] == pb.JOB_STATE_QUEUED and repeated[-1]["state"] == pb.JOB_STATE_SUCCEEDED
    assert len({e["jobId"] for e in repeated}) == 1 and len({e["cursor"] for e in repeated}) == len(repeated)
    assert max(e["ms"] for e in repeated) <= report["droppedAt"]
    assert report["unkeyedCalls"] == ["SubmitAndWatch"] and report["unkeyedError"] == "2"
    # An upload slower than the idle limit: the limit counts from the first message.
    assert report["slow"][0] == pb.JOB_STATE_QUEUED and report["slow"][-1] == pb.JOB_STATE_SUCCEEDED


def test_node_credentials_downloads_and_idle_limits_without_a_stack(dist: Path) -> None:
    """What needs no gateway (client_offline_check.mjs answers as one): a credential no header can
    carry is refused when the client is made (fetch failed each call with a TypeError, which
    watches retried as a dropped connection), an empty apiKey leaves the token, readOutput checks
    the announced size and SHA-256 (DATA_LOSS, 15) and gives up on a silent download
    (DEADLINE_EXCEEDED, 4), and a caller holding an event longer than the idle limit is not a
    silent connection."""
    ran = subprocess.run(
        ["node", str(Path(__file__).with_name("client_offline_check.mjs")), str(dist)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert all("cannot be sent" in message for message in report["badKeys"]), report["badKeys"]
    assert report["tokenSent"] == "Bearer a.b.c"
    assert report["trimmedSent"] == "Bearer rk_a_b"
    read = report["read"]
    assert read["good"] == "ok 18"
    assert read["short"].startswith("15 ") and read["damaged"].startswith("15 ")
    assert read["silent"].startswith("4 ") and read["silentMs"] < 5000
    assert report["watch"] == {"calls": 1, "reconnects": [], "seen": ["c0", "c1", "c2"]}
    assert report["retry"] == [1500, None, None]  # RetryInfo read; a broken one or none says nothing
