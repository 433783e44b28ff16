"""Images whose headers claim a size their data does not hold: cheap stand-ins for huge inputs
where only what the headers say matters (budgets, limits, refusals before any decode)."""

from __future__ import annotations

import numpy as np

from renderkit import imaging


def forged_jpeg(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) is patched to claim width x height, its scan padded
    with zero bytes to the least a JPEG of that size could hold (a bit per 8 x 8 block, which the
    probe checks), so that every parser reading the headers takes it for that size."""
    data = imaging.encode(np.full((64, 64, 3), 100, np.uint8))[0]
    sof = data.index(b"\xff\xc0")
    patched = data[: sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[sof + 9 :]
    blocks = -(-width // 8) * -(-height // 8)
    end = patched.rindex(b"\xff\xd9")  # the EOI: the scan's data runs up to it
    return patched[:end] + bytes(blocks // 8 + 1) + patched[end:]
