"""One baseline JPEG encoded as bands of rows on several cores, then joined.

libjpeg encodes an image on one thread: a 4K composite's ~22 ms was the longest serial step of a
swap. A JPEG whose scan restarts at every row of MCUs (a restart interval, DRI: each restart
resets the entropy coder and the DC predictions) can be cut at any such restart: each band of
rows, encoded alone with the same quality and restart interval, holds exactly the bytes that the
whole image's encode holds for those rows. So bands are encoded at once, and their scans joined
behind the first band's headers (its frame's height made the whole image's) with the restart
marker the whole encode would have put between them. Bands are whole multiples of 8 MCU rows, so
the markers inside each later band (RST0 to RST7, in turn) already carry their numbers in the
whole image. The result is byte for byte the whole image encoded with that restart interval (the
tests check it), which differs from one without restarts by ~2.5 bytes an MCU row (markers and
padding) and decodes to the same pixels.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from renderkit.decode_limits import MAX_SIDE
from renderkit.shared_work import WORKERS, SharedWork, helpers

# libjpeg's MCU for three channels with 4:2:0 chroma (OpenCV's default): 16x16 pixels.
_MCU = 16
# Bands are this many rows: 16 MCU rows, two turns of the restart markers' numbers (RST0-RST7), so
# each later band's own markers start at RST0 as in the whole image, after an RST7 between bands.
# Bands cost nothing measurable (a 4K frame takes the same CPU in bands of 128 rows as whole), and
# small ones share out evenly between the threads.
BAND_ROWS = 16 * _MCU
_BETWEEN_BANDS = b"\xff\xd7"  # RST7
assert BAND_ROWS // _MCU % 8 == 0
# (decode_limits.MAX_SIDE is the widest and tallest JPEG libjpeg writes: OpenCV refuses more in one
# call; joined bands would not refuse, and not decode.)
# Bands beside the calling thread's.
_POOL = helpers("jpeg-band")

_SOF0, _DRI, _SOS = 0xC0, 0xDD, 0xDA
_EOI = b"\xff\xd9"


def encode_jpeg(image: np.ndarray, quality: int) -> bytes | None:
    """The image (uint8) as a baseline JPEG at this quality; None when it cannot be encoded.

    A three-channel image always gets a restart at every row of MCUs, so its bytes are the same on
    any machine; it is encoded in bands on several cores where it is at least 2 * BAND_ROWS rows
    tall and the machine has cores to spare (the pool takes bands from the top, the calling thread
    from the bottom), else in one call."""
    height, width = image.shape[:2]
    colour = image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    if colour:
        params += [cv2.IMWRITE_JPEG_RST_INTERVAL, -(-width // _MCU)]
    if not colour or WORKERS < 2 or height < 2 * BAND_ROWS or max(height, width) > MAX_SIDE:
        return _whole(image, params)
    edges = [(top, min(height, top + BAND_ROWS)) for top in range(0, height, BAND_ROWS)]

    def band(top: int, bottom: int) -> tuple[bool, np.ndarray]:
        ok, buf = cv2.imencode(".jpg", image[top:bottom], params)
        return ok, buf

    parts = SharedWork(_POOL, band, edges).results()
    if not all(ok for ok, _ in parts):
        return None
    try:
        # The encoders' own buffers, read in place: the whole JPEG is copied once, by the join.
        return _joined([buf.data for _, buf in parts], height)
    except (ValueError, IndexError, struct.error):  # not what the joining relies on
        return _whole(image, params)


def _whole(image: np.ndarray, params: list[int]) -> bytes | None:
    try:
        ok, buf = cv2.imencode(".jpg", image, params)
    except cv2.error:  # beyond what libjpeg writes (over 65,500 pixels a side)
        return None
    return buf.tobytes() if ok else None


def _joined(parts: list[memoryview], height: int) -> bytes:
    """The bands' JPEGs (each BAND_ROWS tall but the last) as one: the first's headers with the
    whole height, then each band's scan, with the restart marker between each two (RST7: each
    band is 16 restart intervals)."""
    first_header, scan, sof = _split(parts[0])
    header = bytearray(first_header)
    struct.pack_into(">H", header, sof + 5, height)  # after the marker, the length and the precision
    pieces: list[bytes | bytearray | memoryview] = [header, scan]
    for part in parts[1:]:
        pieces.append(_BETWEEN_BANDS)
        pieces.append(_split(part)[1])
    pieces.append(_EOI)
    return b"".join(pieces)


def _split(jpeg: memoryview) -> tuple[memoryview, memoryview, int]:
    """A one-scan JPEG's headers (through its start-of-scan segment), its entropy-coded data
    (without the end marker) and where its frame header starts. Checks what the joining relies on:
    a baseline frame of three components with 4:2:0 chroma, and a restart interval."""
    at = 2  # after SOI
    seen: dict[int, int] = {}
    while True:
        if jpeg[at] != 0xFF:
            raise ValueError("not a JPEG segment")
        marker = jpeg[at + 1]
        (length,) = struct.unpack_from(">H", jpeg, at + 2)
        seen[marker] = at
        at += 2 + length
        if marker == _SOS:
            break
    sof = seen.get(_SOF0)
    if sof is None or jpeg[sof + 9] != 3:
        raise ValueError("not a three-component baseline JPEG")
    if [jpeg[sof + 11 + 3 * i] for i in range(3)] != [0x22, 0x11, 0x11]:
        raise ValueError("not 4:2:0 chroma")
    if _DRI not in seen or jpeg[-2:] != _EOI:
        raise ValueError("no restart interval, or no end marker")
    return jpeg[:at], jpeg[at:-2], sof
