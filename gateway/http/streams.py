"""The HTTP port's HTTP/2 connections, kept cheap whatever their client does.

Hypercorn keeps every stream it has been sent in a priority tree until the stream's handler writes
again, and takes a stream out of that tree in time proportional to the tree's size. A client that
opens streams and resets them at once (HTTP/2 "rapid reset") therefore grew one connection's tree
to a thousand entries, and each stream's removal cost a millisecond of the event loop the gRPC port
shares: one such client held every caller of either port at 0.6 s. HTTP/2's own bound on a
connection's concurrent streams does not apply to it, since a reset stream is closed at once.

`BoundedH2Protocol`:

- lets go of a stream its client reset as soon as Hypercorn has told the stream's handler, so the
  tree holds no more than the connection's open streams;
- reads a connection more slowly once its client has reset more streams than RESETS_BURST at once
  and RESETS_PER_S a second after: the rest of what it sent waits (so its own socket's
  backpressure slows it to that pace) while every other connection goes on.

Measured with one such client against a stack (docs/architecture.md, "Trust boundaries"): a normal
caller's GetJob on the gRPC port took 0.6 s (p50) with Hypercorn's own protocol, 0.2 s with the
first change alone and 5 ms with both (1.5 ms with no such client).

`install` makes Hypercorn's connections use it (requirements.lock pins Hypercorn;
tests/integration/test_connection_limits.py checks it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import h2.events
import hypercorn.protocol
from hypercorn.protocol.h2 import H2Protocol
from priority.priority import MissingStreamError

# Streams a connection's client may reset in a burst, and after it each second, before its
# connection is read more slowly (a browser cancels a few requests when a page goes away).
RESETS_BURST = 200.0
RESETS_PER_S = 50.0


class BoundedH2Protocol(H2Protocol):
    """Hypercorn's HTTP/2 connection, holding no stream its client reset and reading a client that
    resets streams past its budget at the budget's pace."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._budget = RESETS_BURST
        self._stamp = time.monotonic()

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        kept: list[h2.events.Event] = []
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                # Each new stream is taken in after what came before it, and after letting go of
                # the streams reset so far, so the tree stays as small as the open streams.
                await super()._handle_events(kept)
                kept = []
                self._let_go_of_reset_streams()
                if self._over_budget():  # this connection waits; every other one goes on
                    await asyncio.sleep(-self._budget / RESETS_PER_S)
                    if self.closed:
                        return
            elif isinstance(event, h2.events.StreamReset) and event.remote_reset:
                self._budget -= 1
            kept.append(event)
        await super()._handle_events(kept)
        self._let_go_of_reset_streams()

    def _over_budget(self) -> bool:
        """Whether the client has reset more streams than its budget allows by now."""
        now = time.monotonic()
        self._budget = min(RESETS_BURST, self._budget + (now - self._stamp) * RESETS_PER_S)
        self._stamp = now
        return self._budget < 0

    def _let_go_of_reset_streams(self) -> None:
        """Drops the streams closed on the wire whose handler Hypercorn has told (it would hold
        them until the handler writes again, which a handler told of the reset may never do)."""
        for stream_id in [s for s in self.stream_buffers if s not in self.streams]:
            wire = self.connection.streams.get(stream_id)
            if wire is None or wire.closed:
                del self.stream_buffers[stream_id]
                with contextlib.suppress(MissingStreamError):
                    self.priority.remove_stream(stream_id)


def install() -> None:
    """Hypercorn's connections speak HTTP/2 through BoundedH2Protocol from now on (its protocol
    wrapper picks the class by this name, for HTTP/2 over TLS and in cleartext alike)."""
    hypercorn.protocol.H2Protocol = BoundedH2Protocol  # type: ignore[attr-defined,misc]
