"""What every process of the stack shares besides the serving edge: channel options (logging,
traces and metrics are renderkit.telemetry's)."""

from __future__ import annotations

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]
