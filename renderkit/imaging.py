"""Decoding, probing and encoding of images (OpenCV for speed, headers read here by hand).

Images travel between stages encoded (JPEG/PNG/WebP), never as raw frames; inside a process
they are uint8 BGR arrays, OpenCV's native order.

Every decode probes first. The probe walks the container's structure (JPEG markers, PNG chunks,
the WebP RIFF), so a truncated or corrupt file is refused instead of decoded with its missing part
grey (libjpeg only warns); it reads the size from the header alone, so a bomb is refused before any
pixel is allocated; it refuses files whose decode or walk would cost far more than their size
suggests (a JPEG of more than MAX_JPEG_SCANS scans, more than MAX_HEADER_PARTS markers or chunks);
and it reads the EXIF orientation. The decoders then ignore the codec's own
orientation handling and apply exactly the orientation the probe read: probe, decode, masks, hints
and outputs are all in the displayed frame. Outputs are encoded without EXIF, so they display as
stored.

The probe also reads the camera's focal length from EXIF (ImageInfo.focal_length_px) and the
embedded ICC profile; colour images in another space than sRGB (Display P3, Adobe RGB) are
converted to sRGB as they are decoded (renderkit.icc), at no cost for sRGB or untagged ones.
HEIC/HEIF photos (phones' default) are read through pillow-heif when it is installed, with the
orientation their container states applied and their profile converted like any other.
"""

from __future__ import annotations

import functools
import io
import math
import re
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType

import cv2
import numpy as np
from PIL import Image

from render.imaging.v1 import imaging_pb2
from renderkit import icc, jpeg_bands
from renderkit.decode_limits import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from renderkit.decode_limits import MAX_SIDE as MAX_SIDE
from renderkit.decode_limits import PROCESS_MAX_PIXELS

CONTENT_TYPES = {
    imaging_pb2.FORMAT_JPEG: "image/jpeg",
    imaging_pb2.FORMAT_PNG: "image/png",
    imaging_pb2.FORMAT_WEBP: "image/webp",
}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
# HEIF's brands of HEVC still images (the first two iPhones write), and the generic image brands.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"})
HEIF_TYPES = frozenset({"image/heic", "image/heif"})
# The colour behind a swatch's transparent parts when the request names none: light grey grout.
DEFAULT_GROUT = "#C8C8C8"
_WHITE = (255, 255, 255)
_TRUNCATED = "the image is truncated or corrupt"
# Encoders write 10 or fewer scans (progressive passes); each is a pass of the decoder over every
# coefficient, so thousands of tiny ones (a few dozen bytes each) cost minutes of decode.
MAX_JPEG_SCANS = 100
# The markers or chunks a header walk visits: every walk step costs Python-speed time, so a
# file of empty chunks would cost seconds. Legitimate files stay far below: a JPEG has a few dozen
# segments, a PNG's image data comes in chunks of 8 KB (libpng) to 64 KB (Pillow). A file may have
# one part per 4 KB besides, so a large PNG in small chunks is not refused for its size alone.
MAX_HEADER_PARTS = 10_000
_BYTES_A_PART = 4096
# What pillow-heif raises for a file it cannot read (ValueError, EOFError, SyntaxError,
# RuntimeError, OSError, as it documents) and IndexError for one that holds no image.
_HEIF_ERRORS = (ValueError, EOFError, SyntaxError, RuntimeError, OSError, IndexError)


class ImageError(ValueError):
    """The bytes are not an image this pipeline accepts."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an encoded image says, in the displayed frame.

    width and height are the displayed size: the stored frame turned by `orientation`, the EXIF
    orientation (1 to 8; 1 when absent) that every decoder of this module applies (HEIC states its
    own turn in its container, which its decoder applies: 1 here).

    focal_length_px is the camera's focal length from EXIF in pixels of this image (0: unknown; see
    exif_focal), exact when focal_length_exact (from the lens's focal length and the sensor's
    resolution, not the 35 mm equivalent rounded to a millimetre), icc_profile the embedded ICC
    profile (empty: none, the pixels are sRGB).
    """

    content_type: str
    width: int
    height: int
    orientation: int = 1
    has_alpha: bool = False
    focal_length_px: float = 0.0
    icc_profile: bytes = field(default=b"", repr=False, compare=False)
    focal_length_exact: bool = False

    @property
    def pixels(self) -> int:
        """The number of pixels."""
        return self.width * self.height


def probe(data: bytes, *, max_pixels: int = PROCESS_MAX_PIXELS) -> ImageInfo:
    """Reads an image's type, displayed size, orientation, alpha, EXIF focal length and colour
    profile from its structure, without decoding the pixels; refuses truncated or corrupt files and
    images over max_pixels."""
    if not data:
        raise ImageError("the image is empty")
    if data[:3] == b"\xff\xd8\xff":
        content_type, header = "image/jpeg", _jpeg_header(data)
    elif data[:8] == _PNG_SIGNATURE:
        content_type, header = "image/png", _png_header(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        content_type, header = "image/webp", _webp_header(data)
    elif data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        content_type, header = _heif_header(data)
    else:
        raise ImageError(_foreign_format(data))
    width, height = header.width, header.height
    if width <= 0 or height <= 0:
        raise ImageError(_TRUNCATED)
    exif = _read_exif(header.exif)
    # HEIC's container states its own turn (irot/imir), which its decoder applies; phones also write
    # the EXIF tag there, which must then not turn the image again.
    orientation = exif.orientation if content_type not in HEIF_TYPES and header.turns else 1
    if orientation >= 5:  # 5 to 8 turn the image a quarter: the displayed frame swaps the sides
        width, height = height, width
    pixels = width * height
    if pixels > max_pixels or max(width, height) > MAX_SIDE:
        megapixels = f"{pixels / 1e6:.0f}" if pixels >= 10_000_000 else f"{pixels / 1e6:.1f}"
        limit = f"more than {max_pixels:,} pixels" if pixels > max_pixels else f"a side over {MAX_SIDE:,} px"
        raise ImageError(f"the image is {width}x{height} ({megapixels} MP), {limit}")
    # The frame as stored, before the EXIF's turn: PixelX/YDimension are the camera's in that frame.
    # A HEIC's size has its container's turn applied already: the EXIF tag says the same turn.
    turned = content_type in HEIF_TYPES and exif.orientation >= 5
    stored = (header.height, header.width) if turned else (header.width, header.height)
    focal, exact = exif_focal(exif, width, height, stored)
    # A profile over the limit is unusable (renderkit.icc): dropped here, before anything keeps it.
    icc_profile = header.icc if len(header.icc) <= icc.MAX_PROFILE_BYTES else b""
    return ImageInfo(
        content_type,
        width,
        height,
        orientation,
        header.alpha,
        focal_length_px=focal,
        icc_profile=icc_profile,
        focal_length_exact=exact,
    )


def _foreign_format(data: bytes) -> str:
    """Why bytes that are not JPEG, PNG or WebP are refused, naming their format when Pillow knows it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a large foreign image warns of a bomb: it is refused anyway
            with Image.open(io.BytesIO(data)) as image:
                fmt = image.format
    except Exception:  # any failure to identify means: not an image we know
        fmt = None
    if fmt:
        return f"{fmt} images are not accepted; send JPEG, PNG or WebP"
    return "the bytes are not a JPEG, PNG or WebP image"


@dataclass
class _Header:
    """What a container's structure says: the stored size, alpha, the EXIF block (TIFF-structured,
    without the "Exif\\0\\0" prefix; empty when absent) and the ICC profile (empty when absent)."""

    width: int
    height: int
    alpha: bool = False
    exif: bytes = b""
    icc: bytes = b""
    # Whether the EXIF block's Orientation turns the image: only metadata that comes before the
    # image data does, as browsers read it (CSS Images 3, "image-orientation: from-image": metadata
    # after the image data is ignored). A WebP's EXIF chunk always follows its bitstream, a PNG's
    # eXIf may follow its IDAT: a browser shows those photos as stored, and the console's hints,
    # drawn over what the browser shows, must be in the frame the stages work in.
    turns: bool = True


def _most_parts(data: bytes) -> int:
    """The most markers or chunks a walk of this file visits (MAX_HEADER_PARTS)."""
    return max(MAX_HEADER_PARTS, len(data) // _BYTES_A_PART)


# Start-of-frame markers (baseline, progressive, lossless, arithmetic): all but DHT, JPG and DAC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_ARITHMETIC_SOF = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_FILL_BYTES = re.compile(rb"\xff+")  # fill bytes may precede a marker: skipped at C speed


def _jpeg_header(data: bytes) -> _Header:
    """Walks a JPEG's markers: segments are skipped by their length (an APP1 holding an EXIF
    thumbnail, with its own EOI, included), entropy-coded scans by the next true marker; an EOI
    must follow the last scan. Bytes after the EOI are allowed (phones append data there). More
    than MAX_JPEG_SCANS scans, or markers past MAX_HEADER_PARTS, are refused."""
    size = len(data)
    pos = 2
    width = height = scans = coded = 0
    huffman = True
    exif = b""
    icc_chunks: dict[int, bytes] = {}
    markers: np.ndarray | None = None
    most_markers = _most_parts(data)
    for _ in range(most_markers):
        fill = _FILL_BYTES.match(data, pos)
        if fill is None or fill.end() >= size:
            raise ImageError(_TRUNCATED)
        pos = fill.end()
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue  # markers without a segment
        if marker in (0x00, 0xD8) or pos + 2 > size:
            raise ImageError(_TRUNCATED)
        length = int.from_bytes(data[pos : pos + 2], "big")
        end = pos + length
        if length < 2 or end > size:
            raise ImageError(_TRUNCATED)
        if marker in _SOF_MARKERS:
            if length < 8:
                raise ImageError(_TRUNCATED)
            if width:  # libjpeg decodes by the first frame header: a second one would set the size here
                raise ImageError("the JPEG has more than one frame header")
            height, width = struct.unpack_from(">HH", data, pos + 3)
            huffman = marker not in _ARITHMETIC_SOF
            if data[pos + 2] != 8:  # libjpeg's 8-bit decoder refuses any other sample precision
                raise ImageError(
                    f"the JPEG has {data[pos + 2]}-bit samples, which are not accepted; send an 8-bit JPEG, PNG or WebP"
                )
        elif marker == 0xE1 and not exif and data[pos + 2 : pos + 8] == b"Exif\x00\x00":
            exif = data[pos + 8 : end]
        elif marker == 0xE2 and data[pos + 2 : pos + 14] == b"ICC_PROFILE\x00" and length > 14:
            icc_chunks.setdefault(data[pos + 14], data[pos + 16 : end])  # a profile split in numbered chunks
        pos = end
        if marker == 0xDA:
            if not width:
                raise ImageError(_TRUNCATED)  # a scan before any frame header
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ImageError(f"the JPEG has more than {MAX_JPEG_SCANS} scans (progressive passes)")
            if markers is None:
                markers = _jpeg_markers(data, pos)
            index = int(np.searchsorted(markers, pos))
            if index == markers.size:
                raise ImageError(_TRUNCATED)  # the scan runs to the end of the data: no EOI
            coded += int(markers[index]) - pos
            pos = int(markers[index])
    else:
        raise ImageError(f"the JPEG has more than {most_markers:,} markers")
    if not scans:
        raise ImageError(_TRUNCATED)
    # Huffman coding spends at least a bit on each 8 x 8 block's DC value (a flat photo's, in one
    # scan or a progressive one's first). Fewer: a frame header claiming more pixels than the data
    # holds, which libjpeg would fill with grey, reporting the early end only as a warning.
    if huffman and coded * 8 < -(-width // 8) * -(-height // 8):
        raise ImageError("the JPEG's data is far shorter than the size its header states (truncated or altered)")
    icc_profile = b"".join(icc_chunks[k] for k in sorted(icc_chunks))
    return _Header(width, height, exif=exif, icc=icc_profile)


def _jpeg_markers(data: bytes, start: int) -> np.ndarray:
    """The offsets (from start on) of the 0xFF bytes that begin a marker. In entropy-coded data an
    0xFF followed by 0x00 (a stuffed byte) or by RST0-7 is data, and an 0xFF followed by 0xFF is a
    fill byte; numpy finds them all in about a millisecond for a 4K photo."""
    buffer = np.frombuffer(data, np.uint8)[start:]
    ff = np.flatnonzero(buffer[:-1] == 0xFF)
    following = buffer[ff + 1]
    marker = (following != 0x00) & (following != 0xFF) & ((following < 0xD0) | (following > 0xD7))
    return ff[marker] + start


def _png_header(data: bytes) -> _Header:
    """Walks a PNG's chunks: IHDR first, valid lengths, image data, and IEND at the end, in at most
    MAX_HEADER_PARTS chunks. Only the first iCCP chunk counts (PNG allows one; libpng, too, ignores
    any other), so a file cannot make the probe inflate a profile more than once."""
    size = len(data)
    pos = len(_PNG_SIGNATURE)
    width = height = 0
    alpha, pixels, profiled = False, False, False
    exif = icc_profile = b""
    turns = True
    most_chunks = _most_parts(data)
    for _ in range(most_chunks):
        if pos + 12 > size:
            raise ImageError(_TRUNCATED)
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > size or not kind.isalpha():
            raise ImageError(_TRUNCATED)
        body = data[pos + 8 : pos + 8 + length] if kind != b"IDAT" else b""
        if pos == len(_PNG_SIGNATURE):
            if kind != b"IHDR" or length != 13:
                raise ImageError(_TRUNCATED)
            width, height, _depth, colour = struct.unpack_from(">IIBB", body)
            alpha = colour in (4, 6)  # greyscale or truecolour with alpha
        elif kind == b"IDAT":
            pixels = True
        elif kind == b"tRNS":
            alpha = True  # a transparent colour or palette entries
        elif kind == b"eXIf":
            exif, turns = body.removeprefix(b"Exif\x00\x00"), not pixels
        elif kind == b"iCCP" and not profiled:
            icc_profile, profiled = _png_profile(body), True
        elif kind == b"IEND":
            break
        pos = end
    else:
        raise ImageError(f"the PNG has more than {most_chunks:,} chunks")
    if not pixels:
        raise ImageError(_TRUNCATED)
    return _Header(width, height, alpha, exif, icc_profile, turns)


def _png_profile(body: bytes) -> bytes:
    """The profile of an iCCP chunk (a name, a NUL, method 0, zlib data); empty when unreadable."""
    name_end = body.find(b"\x00", 0, 80)
    if name_end < 1 or body[name_end + 1 : name_end + 2] != b"\x00":
        return b""
    try:
        inflater = zlib.decompressobj()
        profile = inflater.decompress(body[name_end + 2 :], icc.MAX_PROFILE_BYTES)
    except zlib.error:
        return b""
    return b"" if inflater.unconsumed_tail else profile


def _webp_header(data: bytes) -> _Header:
    """Checks a WebP's RIFF size against the data and walks its chunks (at most MAX_HEADER_PARTS)
    for the frame's size, the alpha channel, the EXIF block and the colour profile."""
    riff_end = 8 + int.from_bytes(data[4:8], "little")
    if riff_end > len(data) or riff_end < 20:
        raise ImageError(_TRUNCATED)
    pos = 12
    width = height = 0
    canvas: tuple[int, int] | None = None
    alpha, frame = False, False
    exif = icc_profile = b""
    most_chunks, chunks = _most_parts(data), 0
    while pos + 8 <= riff_end:
        chunks += 1
        if chunks > most_chunks:
            raise ImageError(f"the WebP has more than {most_chunks:,} chunks")
        kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body, end = pos + 8, pos + 8 + length
        if end > riff_end:
            raise ImageError(_TRUNCATED)
        if kind == b"VP8X" and length >= 10:
            alpha = bool(data[body] & 0x10)
            canvas = (
                1 + int.from_bytes(data[body + 4 : body + 7], "little"),
                1 + int.from_bytes(data[body + 7 : body + 10], "little"),
            )
        elif kind == b"ANIM":
            raise ImageError("animated WebP images are not accepted")
        elif kind in (b"VP8 ", b"VP8L") and frame:  # libwebp decodes the first frame: its size is the one
            raise ImageError("the WebP has more than one image")
        elif kind == b"VP8 ":
            if length < 10 or data[body + 3 : body + 6] != b"\x9d\x01\x2a":
                raise ImageError(_TRUNCATED)
            width, height = (v & 0x3FFF for v in struct.unpack_from("<HH", data, body + 6))
            frame = True
        elif kind == b"VP8L":
            if length < 5 or data[body] != 0x2F:
                raise ImageError(_TRUNCATED)
            bits = int.from_bytes(data[body + 1 : body + 5], "little")
            width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            alpha = alpha or bool(bits >> 28 & 1)
            frame = True
        elif kind == b"ALPH":
            alpha = True
        elif kind == b"EXIF":
            exif = data[body:end].removeprefix(b"Exif\x00\x00")
        elif kind == b"ICCP" and length <= icc.MAX_PROFILE_BYTES:  # a larger one is unusable: not copied
            icc_profile = data[body:end]
        pos = end + (length & 1)  # chunks are padded to an even length
    if not frame:
        raise ImageError(_TRUNCATED)
    if canvas is not None:
        width, height = canvas
    # The container puts EXIF after the image data: browsers show a WebP as stored, whatever its
    # Orientation says (its focal length is still read).
    return _Header(width, height, alpha, exif, icc_profile, turns=False)


@functools.cache
def _heif() -> ModuleType | None:
    """pillow-heif (libheif), when installed."""
    try:
        import pillow_heif
    except ImportError:
        return None
    return pillow_heif


def _heif_header(data: bytes) -> tuple[str, _Header]:
    """A HEIC/HEIF file's displayed size (its container's turn applied), alpha, EXIF block and ICC
    profile, from its boxes (libheif parses them without decoding; it refuses a file whose image
    data would lie past its end)."""
    content_type = "image/heic" if data[8:12] in (b"heic", b"heix", b"heim", b"heis") else "image/heif"
    heif = _heif()
    if heif is None:
        raise ImageError("HEIC photos are not supported here: convert them to JPEG")
    try:
        image = heif.open_heif(data, convert_hdr_to_8bit=True)
        (width, height), alpha = image.size, bool(image.has_alpha)  # the primary image's: IndexError without one
        exif = image.info.get("exif") or b""
        icc_profile = image.info.get("icc_profile") or b""
    except _HEIF_ERRORS:
        raise ImageError(_TRUNCATED) from None
    return content_type, _Header(width, height, alpha, exif.removeprefix(b"Exif\x00\x00"), icc_profile)


def _heif_decode(data: bytes, what: str) -> np.ndarray:
    """A HEIC/HEIF file's primary image as uint8 BGR (or BGRA), in the displayed frame."""
    heif = _heif()
    if heif is None:
        raise ImageError("HEIC photos are not supported here: convert them to JPEG")
    try:
        pixels = np.asarray(heif.open_heif(data, convert_hdr_to_8bit=True))
    except _HEIF_ERRORS:
        raise ImageError(f"the {what} could not be decoded") from None
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR)


@dataclass(frozen=True)
class Exif:
    """The EXIF tags this pipeline uses, as stored (0 where absent or invalid)."""

    orientation: int = 1
    focal_mm: float = 0.0  # FocalLength (0x920A)
    focal_35mm: float = 0.0  # FocalLengthIn35mmFilm (0xA405)
    focal_plane_x_resolution: float = 0.0  # FocalPlaneXResolution (0xA20E): pixels per unit on the sensor
    focal_plane_unit_mm: float = 0.0  # FocalPlaneResolutionUnit (0xA210) in millimetres
    pixel_dimensions: tuple[int, int] = (0, 0)  # PixelXDimension, PixelYDimension (0xA002, 0xA003)


# FocalPlaneResolutionUnit: 2 inch, 3 centimetre (EXIF); 4 millimetre and 5 micrometre (as DNG and
# some cameras write).
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}
_TYPE_SIZES = {1: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}
_EXIF_IFD = 0x8769


def _ifd_entries(tiff: bytes, order: str, offset: int) -> dict[int, float]:
    """The single-valued numeric entries (BYTE, SHORT, LONG, RATIONAL) of the IFD at offset."""
    values: dict[int, float] = {}
    if offset < 8 or offset + 2 > len(tiff):
        return values
    (count,) = struct.unpack_from(order + "H", tiff, offset)
    for entry in range(offset + 2, min(offset + 2 + 12 * count, len(tiff) - 11), 12):
        tag, kind, number = struct.unpack_from(order + "HHI", tiff, entry)
        if number != 1 or kind not in (1, 3, 4, 5, 9, 10):
            continue
        at = entry + 8
        if _TYPE_SIZES[kind] > 4:  # stored elsewhere; the entry holds its offset
            (at,) = struct.unpack_from(order + "I", tiff, entry + 8)
            if at + 8 > len(tiff):
                continue
        if kind in (5, 10):
            numerator, denominator = struct.unpack_from(order + ("II" if kind == 5 else "ii"), tiff, at)
            values[tag] = numerator / denominator if denominator else 0.0
        else:
            values[tag] = struct.unpack_from(order + {1: "B", 3: "H", 4: "I", 9: "i"}[kind], tiff, at)[0]
    return values


def _read_exif(tiff: bytes) -> Exif:
    """The tags of a TIFF-structured EXIF block: Orientation from IFD0, the focal length's from the
    Exif IFD it points to. Missing, malformed or out-of-range values read as absent."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return Exif()
    order = "<" if tiff[:2] == b"II" else ">"
    magic, ifd = struct.unpack_from(order + "HI", tiff, 2)
    if magic != 42:
        return Exif()
    ifd0 = _ifd_entries(tiff, order, ifd)
    orientation = int(ifd0.get(0x0112, 1))
    pointer = int(ifd0.get(_EXIF_IFD, 0))
    tags = _ifd_entries(tiff, order, pointer) if pointer != ifd else {}

    def positive(tag: int) -> float:
        value = tags.get(tag, 0.0)
        return float(value) if math.isfinite(value) and value > 0 else 0.0

    return Exif(
        orientation=orientation if 1 <= orientation <= 8 else 1,
        focal_mm=positive(0x920A),
        focal_35mm=positive(0xA405),
        focal_plane_x_resolution=positive(0xA20E),
        focal_plane_unit_mm=_UNIT_MM.get(int(tags.get(0xA210, 2)), 0.0),  # the default unit is the inch
        pixel_dimensions=(int(positive(0xA002)), int(positive(0xA003))),
    )


# The 35 mm frame's diagonal, which FocalLengthIn35mmFilm is defined against (below).
FILM_35MM_DIAGONAL_MM = math.hypot(36.0, 24.0)


def _taken_scale(taken: tuple[int, int], stored: tuple[int, int]) -> float:
    """The scale of the stored frame against the PixelX/YDimension it was taken at, where the stored
    frame fits within them (a crop, a resize or both; 0 otherwise): the larger of the two sides'
    ratios, exact for a crop that keeps one whole side and for any resize. A frame of the taken
    one's aspect turned a quarter was turned by an editor that kept the EXIF (Pillow's
    exif_transpose, ImageMagick's -auto-orient: the pixels turned, the Orientation tag dropped,
    PixelX/YDimension as the camera wrote them): it is compared with them turned too (against them
    as written, a turned and scaled-down photo read 33 % long)."""
    if min(taken) <= 0 or min(stored) <= 0:
        return 0.0
    if _same_aspect(stored, (taken[1], taken[0])) and not _same_aspect(stored, taken):
        taken = (taken[1], taken[0])
    if stored[0] > taken[0] or stored[1] > taken[1]:
        return 0.0
    return max(stored[0] / taken[0], stored[1] / taken[1])


def _same_aspect(frame: tuple[int, int], other: tuple[int, int]) -> bool:
    """Whether a frame has another's aspect, within a resize's rounding to a pixel."""
    return abs(frame[0] * other[1] - frame[1] * other[0]) <= max(other)


def exif_focal(exif: Exif, width: int, height: int, stored: tuple[int, int] = (0, 0)) -> tuple[float, bool]:
    """The focal length in pixels of a width x height image (the displayed frame) from its EXIF
    (0 when EXIF does not give it), and whether it is exact (from the sensor's figures).

    FocalLengthIn35mmFilm is read by the diagonal: f_px = f35 x diagonal_px / 43.27 mm, the
    convention cameras and phones compute it by (the crop factor of a sensor is the ratio of the
    diagonals; by the width of a 36 mm frame instead, a 4:3 photo's focal length would come out 4 %
    short). The diagonal does not change when a photo is turned or scaled down, so neither the EXIF
    orientation nor a resize by an editor matters; a crop does shorten it, so where the stored frame
    fits within the PixelX/YDimension the photo was taken at, the diagonal is the taken one at the
    photo's scale (exact for a resize and for a crop that keeps one whole side; a crop to the
    photo's own aspect reads as a resize). FocalLength in mm with the sensor's
    FocalPlaneXResolution is exact when the camera writes it (DSLRs do, most phones do not): it is
    used when no 35 mm value says otherwise (the 35 mm value is rounded to a millimetre, about 2 %),
    scaled by the image's size over the PixelX/YDimension it was taken at. Values implying a field
    of view outside what cameras take (focal length under 0.1 or over 20 times the longer side,
    as for the focal_length_px hint) are ignored.
    """
    longer = max(width, height)
    # A crop keeps the focal length in pixels but shortens the diagonal: where the stored frame
    # (`stored`, before the EXIF orientation's turn) fits within the PixelX/YDimension the photo was
    # taken at, the diagonal is the taken one at the photo's scale.
    scale = _taken_scale(exif.pixel_dimensions, stored)
    diagonal = math.hypot(*exif.pixel_dimensions) * scale if scale else math.hypot(width, height)
    by_35mm = exif.focal_35mm * diagonal / FILM_35MM_DIAGONAL_MM
    by_sensor = 0.0
    if exif.focal_mm and exif.focal_plane_x_resolution and exif.focal_plane_unit_mm:
        by_sensor = exif.focal_mm * exif.focal_plane_x_resolution / exif.focal_plane_unit_mm
        taken = max(exif.pixel_dimensions)
        if scale:
            by_sensor *= scale
        elif taken:
            by_sensor *= longer / taken
    sensor = by_sensor if by_sensor and 0.1 <= by_sensor / longer <= 20 else 0.0
    rounded = by_35mm if by_35mm and 0.1 <= by_35mm / longer <= 20 else 0.0
    if sensor and rounded and abs(sensor / rounded - 1) > 0.05:
        return rounded, False  # the sensor's figures disagree: a resized or re-tagged photo
    if sensor:
        return sensor, True
    return rounded, False


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """The stored frame turned into the displayed frame for an EXIF orientation (1 to 8)."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def _imdecode(data: bytes, flags: int, what: str) -> np.ndarray:
    """cv2.imdecode, in the stored frame, with OpenCV's failures (and its own pixel limit, which
    raises with a source path in the message) as a plain ImageError."""
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        image = None
    if image is None:
        raise ImageError(f"the {what} could not be decoded")
    if image.dtype == np.uint16:
        image = np.right_shift(image, 8).astype(np.uint8)  # exact for 8-bit values scaled by 257
    elif image.dtype != np.uint8:
        raise ImageError(f"the {what} could not be decoded")
    return image


def _png_grey_key(data: bytes) -> tuple[int, int] | None:
    """A greyscale PNG's bit depth and transparent grey level (its tRNS chunk), or None. tRNS comes
    before the image data; the chunks were checked by the probe."""
    depth, colour = data[24], data[25]
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"tRNS" and colour == 0 and length >= 2:
            return depth, struct.unpack_from(">H", data, pos + 8)[0]
        pos += 12 + length
    return None


def _grey_keyed(data: bytes, grey: np.ndarray, what: str) -> np.ndarray:
    """A greyscale PNG with a transparent grey level as BGRA (the grey as decoded, 8 bits); the
    grey image itself when it has no such level."""
    found = _png_grey_key(data)
    if found is None:
        return grey
    depth, key = found
    if depth == 16:  # the key is a 16-bit level: compared before the levels are cut to 8 bits
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.shape != grey.shape:
            raise ImageError(f"the {what} could not be decoded")
        opaque = raw != key
    else:  # 1, 2 and 4 bits are decoded scaled to 8 bits (255 / (2^depth - 1) a level)
        opaque = grey != key * (255 // ((1 << depth) - 1))
    alpha = opaque.astype(np.uint8) * np.uint8(255)
    return cv2.merge([grey, grey, grey, alpha])


def decode_bgr(data: bytes, *, max_pixels: int = PROCESS_MAX_PIXELS) -> np.ndarray:
    """Decodes an encoded image to a uint8 BGR array in the displayed frame.

    A photo with alpha is composited over white, deliberately: transparent parts of a photo are
    rare (a cut-out product shot), white is what viewers show behind them, and the colour a
    transparent pixel happens to store (often black) is not meant to be seen.
    """
    return _decode_colour(data, probe(data, max_pixels=max_pixels), _WHITE, "image")[0]


def decode_swatch(
    data: bytes, grout: str = DEFAULT_GROUT, *, max_pixels: int = PROCESS_MAX_PIXELS
) -> tuple[np.ndarray, float]:
    """Decodes a swatch to uint8 BGR in the displayed frame, its transparent parts (the joints of a
    tile cut out around its tiles) filled with the grout colour "#RRGGBB"; also returns the share of
    the swatch that was transparent (half-transparent pixels counting half), 0 without alpha."""
    image, fraction, _ = _decode_colour(data, probe(data, max_pixels=max_pixels), grout_bgr(grout), "swatch")
    return image, fraction


def decode_swatch_layers(
    data: bytes, grout: str = DEFAULT_GROUT, *, max_pixels: int = PROCESS_MAX_PIXELS
) -> tuple[np.ndarray, float, np.ndarray | None]:
    """decode_swatch, and also the swatch's alpha (uint8, displayed frame; None without one):
    where it is transparent is a cut-out's joints, which its maps lay lower than its tiles."""
    return _decode_colour(data, probe(data, max_pixels=max_pixels), grout_bgr(grout), "swatch", keep_alpha=True)


def grout_bgr(text: str) -> tuple[int, int, int]:
    """The BGR colour of "#RRGGBB" (empty means the default grout); ValueError when malformed."""
    text = text or DEFAULT_GROUT
    # Six hexadecimal digits exactly: int(..., 16) alone also takes signs, spaces and other
    # scripts' digits ("#-1-1-1" read as -1, -1, -1).
    if not _HEX_COLOUR.fullmatch(text):
        raise ValueError("must be a colour written #RRGGBB")
    red, green, blue = (int(text[i : i + 2], 16) for i in (1, 3, 5))
    return blue, green, red


_HEX_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")


def _decode_colour(
    data: bytes, info: ImageInfo, background: tuple[int, int, int], what: str, *, keep_alpha: bool = False
) -> tuple[np.ndarray, float, np.ndarray | None]:
    if info.content_type in HEIF_TYPES:
        image = _heif_decode(data, what)
    elif not info.has_alpha:
        image = _imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION, what)
    else:
        image = _imdecode(data, cv2.IMREAD_UNCHANGED, what)  # UNCHANGED never applies EXIF itself
        if image.ndim == 2 and info.content_type == "image/png":
            # OpenCV drops a greyscale PNG's tRNS (one grey level that is transparent), which it
            # honours for a truecolour PNG: the alpha is made here from the key.
            image = _grey_keyed(data, image, what)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    conversion = icc.conversion_for(info.icc_profile) if info.icc_profile else None
    if conversion is not None and conversion.grey and not _is_grey(image):
        conversion = None  # a grey profile on a colour image: meaningless, ignored as browsers do
    if conversion is not None:  # the colours are another space's: to sRGB before anything mixes them
        if image.shape[2] == 4:
            image[:, :, :3] = icc.to_srgb(np.ascontiguousarray(image[:, :, :3]), conversion)
        else:
            image = icc.to_srgb(image, conversion)
    fraction, alpha = 0.0, None
    if image.shape[2] == 4:
        if keep_alpha:
            alpha = apply_orientation(np.ascontiguousarray(image[:, :, 3]), info.orientation)
        image, fraction = _over(image, background)
    if fraction == 0.0:
        alpha = None  # all opaque: nothing to lay lower
    return apply_orientation(image, info.orientation), fraction, alpha


def _is_grey(image: np.ndarray) -> bool:
    """Whether a BGR(A) image's colour channels are all equal (a greyscale image decoded to BGR)."""
    return bool(np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 1], image[:, :, 2]))


# Rows composited at a time: bounds the float32 working set at ~24 MB whatever the image's size.
_OVER_CHUNK_PIXELS = 1 << 20


def _over(bgra: np.ndarray, background: tuple[int, int, int]) -> tuple[np.ndarray, float]:
    """BGRA composited over a flat colour in linear light (as light mixes, so a half-transparent
    edge is not darker than either side), and the transparent share."""
    alpha = bgra[:, :, 3]
    transparent = 1.0 - float(alpha.mean(dtype=np.float64)) / 255.0
    out = np.ascontiguousarray(bgra[:, :, :3])
    if transparent == 0.0:
        return out, 0.0
    behind = srgb_to_linear(np.array([[background]], np.uint8))[0, 0]
    rows = max(1, _OVER_CHUNK_PIXELS // max(1, bgra.shape[1]))
    for top in range(0, bgra.shape[0], rows):
        a = alpha[top : top + rows, :, None].astype(np.float32) * np.float32(1 / 255)
        colour = srgb_to_linear(out[top : top + rows])
        colour -= behind
        colour *= a
        colour += behind
        out[top : top + rows] = linear_to_srgb(colour)
    return out, transparent


def decode_gray(data: bytes, *, max_pixels: int = PROCESS_MAX_PIXELS) -> np.ndarray:
    """Decodes an encoded image to a uint8 single-channel array (masks) in the displayed frame.

    A mask with an alpha channel uses its alpha as the mask where the colour is uniform (a shape
    painted in one colour) or some pixel is at most half opaque (a cut-out, whatever its colours);
    otherwise its colour (a white-on-black mask whose alpha is opaque but for a stray pixel was
    taken as covering everything).
    """
    info = probe(data, max_pixels=max_pixels)
    if info.content_type in HEIF_TYPES:
        image = _heif_decode(data, "mask")
    else:
        image = _imdecode(data, cv2.IMREAD_UNCHANGED, "mask")
    if image.ndim == 3 and image.shape[2] == 4:
        alpha = image[:, :, 3]
        least = int(alpha.min())
        if least < 255:
            colour = image[:, :, :3]
            if least < 128 or int(colour.min()) == int(colour.max()):
                return apply_orientation(np.ascontiguousarray(alpha), info.orientation)
        image = image[:, :, :3]
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return apply_orientation(image, info.orientation)


def encode(image: np.ndarray, fmt: int = imaging_pb2.FORMAT_JPEG, quality: int = 0) -> tuple[bytes, str]:
    """Encodes an array; returns the bytes and their media type."""
    quality = quality or 90
    if fmt in (imaging_pb2.FORMAT_JPEG, imaging_pb2.FORMAT_UNSPECIFIED):
        jpeg = jpeg_bands.encode_jpeg(image, quality)  # a large image's bands on several cores
        if jpeg is None:
            raise ImageError("the image could not be encoded")
        return jpeg, "image/jpeg"
    elif fmt == imaging_pb2.FORMAT_PNG:
        # Level 1: PNG at OpenCV's default level costs ~8x more at 4K for a few percent of size.
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        content_type = "image/png"
    elif fmt == imaging_pb2.FORMAT_WEBP:
        try:
            ok, buf = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, quality])
        except cv2.error:  # WebP stores a side in 14 bits: OpenCV raises past 16,383 px
            height, width = image.shape[:2]
            raise ImageError(
                f"an image of {width}x{height} cannot be encoded as WebP, which holds at most 16383 px a side"
            ) from None
        content_type = "image/webp"
    else:
        raise ValueError(f"unknown image format {fmt}")
    if not ok:
        raise ImageError("the image could not be encoded")
    return buf.tobytes(), content_type


def encode_mask(mask: np.ndarray) -> bytes:
    """Encodes a mask as PNG. Single-channel masks skip libpng: every row gets PNG's "Up" filter
    (masks are mostly flat, so the rows become mostly zeros) and zlib level 1 compresses them, ~5x
    faster than cv2.imencode at any level (a 4K mask: ~16 ms instead of ~75 ms); it is a standard
    PNG that every decoder reads."""
    if mask.ndim != 2 or mask.dtype != np.uint8:
        ok, buf = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise ImageError("the mask could not be encoded")
        return buf.tobytes()
    height, width = mask.shape
    rows = np.empty((height, width + 1), np.uint8)
    rows[:, 0] = 2  # filter type Up: each byte minus the byte above it (modulo 256)
    rows[0, 1:] = mask[0]
    np.subtract(mask[1:], mask[:-1], out=rows[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale, no interlace
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(rows.data, 1)),
            _png_chunk(b"IEND", b""),
        )
    )


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrinks an image so its longer side is at most max_side; never enlarges it."""
    height, width = image.shape[:2]
    if max_side <= 0 or max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Halvings first: INTER_AREA averages 2x2 blocks several times faster than it averages at an
    # arbitrary ratio (a 4K frame to 512 px: 5.5 ms against 20 ms), and box filters in cascade
    # still leave nothing to alias.
    while image.shape[1] // 2 >= size[0] and image.shape[0] // 2 >= size[1]:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def enlarge_to(image: np.ndarray, side: int) -> np.ndarray:
    """Enlarges an image so its longer side is `side` (Lanczos): more pixels, no new detail."""
    height, width = image.shape[:2]
    scale = side / max(height, width)
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_LANCZOS4)


# The most renditions a request may ask for, and the longest side an enlarged one may have (the
# pipeline's own: the full image, a 2,048 px high-res and a 512 px preview).
MAX_RENDITIONS = 8
MAX_ENLARGED_SIDE = 4096
# WebP stores each side in 14 bits.
MAX_WEBP_SIDE = 16383


def output_problem(spec: imaging_pb2.OutputSpec, width: int = 0, height: int = 0) -> tuple[str, str] | None:
    """What is wrong with an output spec, as (field, description), before any work: an unknown
    format, a quality outside 0-100, too many renditions, a negative side or an enlargement past
    MAX_ENLARGED_SIDE (each costs memory in proportion), and, when the image's size is known, a
    WebP rendition larger than WebP holds."""
    if spec.format not in imaging_pb2.Format.values():
        return "output.format", f"unknown format {spec.format}"
    if not 0 <= spec.quality <= 100:
        return "output.quality", "must be 0 (the default) to 100"
    if len(spec.renditions) > MAX_RENDITIONS:
        return "output.renditions", f"at most {MAX_RENDITIONS}, got {len(spec.renditions)}"
    for i, rendition in enumerate(spec.renditions):
        if rendition.max_side < 0:
            return f"output.renditions[{i}].max_side", "must be 0 (the full size) or more"
        if rendition.upscale and rendition.max_side > MAX_ENLARGED_SIDE:
            return (
                f"output.renditions[{i}].max_side",
                f"an enlarged rendition has at most {MAX_ENLARGED_SIDE} px a side",
            )
    if spec.format == imaging_pb2.FORMAT_WEBP and width and height:
        for i, rendition in enumerate(spec.renditions or [imaging_pb2.Rendition()]):
            side = rendition_side(rendition, max(width, height))
            if side > MAX_WEBP_SIDE:
                return "output.format", (
                    f"WebP holds at most {MAX_WEBP_SIDE} px a side; rendition {i} would have {side}"
                )
    return None


def rendition_side(rendition: imaging_pb2.Rendition, side: int) -> int:
    """The longer side of a rendition of an image whose longer side is `side`."""
    if rendition.max_side <= 0:
        return side
    if rendition.upscale or rendition.max_side < side:
        return rendition.max_side
    return side


# Renditions are encoded side by side: libjpeg and libpng use one thread an image and release the
# GIL (a 4K composite's full JPEG and its 512 px preview: ~22 and ~7 ms).
_RENDITIONS = ThreadPoolExecutor(2, thread_name_prefix="renditions")


def encode_renditions(image: np.ndarray, spec: imaging_pb2.OutputSpec) -> list[imaging_pb2.EncodedImage]:
    """Encodes one image per rendition of the spec (the full size when none is listed), the
    first on the calling thread and the others beside it."""
    renditions = list(spec.renditions) or [imaging_pb2.Rendition(name="full", max_side=0)]

    def rendered(rendition: imaging_pb2.Rendition) -> imaging_pb2.EncodedImage:
        sized = fit_within(image, rendition.max_side)
        if rendition.upscale and rendition.max_side > max(image.shape[:2]):
            sized = enlarge_to(image, rendition.max_side)
        data, content_type = encode(sized, spec.format, spec.quality)
        return imaging_pb2.EncodedImage(
            name=rendition.name, data=data, content_type=content_type, width=sized.shape[1], height=sized.shape[0]
        )

    others = [_RENDITIONS.submit(rendered, rendition) for rendition in renditions[1:]]
    first = rendered(renditions[0])
    return [first] + [other.result() for other in others]


def srgb_to_linear(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 sRGB to float32 linear light in [0, 1] (through a 256-entry table), into `out` when
    given (an array of the image's shape)."""
    if image.ndim == 3 and image.shape[2] <= 4:
        return cv2.LUT(image, _SRGB_TO_LINEAR, dst=out)  # several times faster than numpy indexing
    if out is None:
        return _SRGB_TO_LINEAR[image]
    return np.take(_SRGB_TO_LINEAR, image, out=out)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """float32 linear light to uint8 sRGB, clipping out-of-range values."""
    index = np.clip(linear * 4095.0 + 0.5, 0, 4095).astype(np.uint16)
    return _LINEAR_TO_SRGB[index]


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    c = np.arange(256, dtype=np.float64) / 255.0
    to_linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
    x = np.arange(4096, dtype=np.float64) / 4095.0
    to_srgb = np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)
    return to_linear, np.clip(to_srgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


_SRGB_TO_LINEAR, _LINEAR_TO_SRGB = _build_tables()


_SUBPIXEL_BITS = 4


# mask_pixels finds a mask's pixels in bands of rows of about this many pixels.
_MASK_BAND_PIXELS = 1 << 20


def mask_pixels(mask: np.ndarray, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns of every step-th pixel above 127 of a uint8 mask, in row-major order:
    np.nonzero(mask > 127) and then [::step] of each. Found a band of rows at a time (OpenCV's
    findNonZero), so a sample of a 4K mask never holds all its pixels' coordinates: those were 32
    to 64 MB of fresh pages a call, whose faults cost a stage's worker thread ~40 ms."""
    height = mask.shape[0]
    band = max(1, _MASK_BAND_PIXELS // max(1, mask.shape[1]))
    rows, cols = [], []
    seen = 0  # pixels above 127 in the bands before this one
    for top in range(0, height, band):
        found = cv2.findNonZero(cv2.threshold(mask[top : top + band], 127, 255, cv2.THRESH_BINARY)[1])
        if found is None:
            continue
        first = -seen % step  # this band's first pixel whose overall index is a multiple of step
        picked = found[first::step, 0]
        rows.append(picked[:, 1] + top)
        cols.append(picked[:, 0])
        seen += len(found)
    if not rows:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    return np.concatenate(rows).astype(np.intp), np.concatenate(cols).astype(np.intp)


def polygon_mask(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """An anti-aliased mask of a polygon, rasterised with sub-pixel corner positions.

    A polygon reaching further than the image's own size past its edges is first cut to that
    margin: its corners become int32 fixed point, which a corner past about 1.3e8 px would overflow
    (the outline wrapped round and the mask came out empty)."""
    mask = np.zeros((height, width), np.uint8)
    corners = np.asarray(points, np.float64).reshape(-1, 2)
    size = np.array([width, height], np.float64)
    if not ((corners >= -size) & (corners <= 2 * size)).all():
        corners = _clipped_polygon(corners, -size, 2 * size)
        if len(corners) < 3:
            return mask
    fixed = np.round(corners * (1 << _SUBPIXEL_BITS)).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(mask, [fixed], 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)  # type: ignore[call-overload]
    return mask


def _clipped_polygon(corners: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A polygon cut to the box from low to high (Sutherland-Hodgman, one side at a time): what lies
    inside the box is unchanged, concave outlines too (they may gain edges along the box)."""
    polygon = [(float(x), float(y)) for x, y in corners]
    # Each side as (axis, bound, sign): a point is kept where sign * (its coordinate - bound) >= 0.
    for axis, bound, sign in ((0, low[0], 1.0), (0, high[0], -1.0), (1, low[1], 1.0), (1, high[1], -1.0)):
        cut: list[tuple[float, float]] = []
        for i, current in enumerate(polygon):
            previous = polygon[i - 1]
            keep, kept_before = sign * (current[axis] - bound) >= 0, sign * (previous[axis] - bound) >= 0
            if keep != kept_before:
                t = (bound - previous[axis]) / (current[axis] - previous[axis])
                cut.append((previous[0] + t * (current[0] - previous[0]), previous[1] + t * (current[1] - previous[1])))
            if keep:
                cut.append(current)
        polygon = cut
    return np.array(polygon, np.float64).reshape(-1, 2)


def convex_coverage(points: np.ndarray, width: int, height: int) -> float:
    """The share of a width x height image that a convex polygon covers (its part inside the
    image over the image's area; either winding)."""
    image = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    area, _ = cv2.intersectConvexConvex(np.asarray(points, np.float32).reshape(-1, 2), image)
    return float(area) / (width * height)
