"""renderkit.telemetry's Prometheus endpoint: a connection that sends nothing does not hold its
thread for good."""

from __future__ import annotations

import socket
import time

import pytest

from renderkit import telemetry


def test_the_metrics_endpoint_closes_a_connection_that_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each connection to /metrics holds a thread: one that never sends its request must not hold
    it for good (thousands of idle connections were thousands of threads of the gateway)."""
    monkeypatch.setattr(telemetry, "IDLE_TIMEOUT_S", 0.5, raising=False)
    endpoint = telemetry.MetricsEndpoint("127.0.0.1:0")
    endpoint.start()
    try:
        with socket.create_connection(("127.0.0.1", endpoint.port)) as idle:
            idle.settimeout(5)
            started = time.monotonic()
            assert idle.recv(1) == b""  # closed by the server (a timeout here raises)
            assert time.monotonic() - started < 3
    finally:
        endpoint.stop()
