"""What every process of the stack shares besides the serving edge: channel options and logging."""

from __future__ import annotations

import logging

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]


def configure_logging(name: str) -> None:
    """One log format for every process of the stack."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
