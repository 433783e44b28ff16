"""The pixel limit of every image decode, and OpenCV's own decode limits set from it.

OpenCV reads OPENCV_IO_MAX_IMAGE_PIXELS, _WIDTH and _HEIGHT from the environment once, when cv2 is
first loaded, and refuses any decode whose header exceeds them. The `renderkit` package imports
this module before anything can import cv2, so every process that handles images gets a decode
that can never allocate beyond the pixel limit, even where a caller forgot to probe first.
"""

from __future__ import annotations

import os

# A decompression bomb guard; 8K UHD is 33 MP.
DEFAULT_MAX_PIXELS = 40_000_000
# The longest side of any image: libjpeg's own limit, so that every output can be written as JPEG
# (the default format; JPEG's header could hold 65,535, and a photo of 65,501-65,535 px passed the
# submit and failed the job). WebP's is 16,383; a PNG could claim 2^31.
MAX_SIDE = 65_500


def opencv_pixel_limit(environ: dict[str, str] | os._Environ[str]) -> int:
    """The decode limit OpenCV gets: the default pixel limit, or the gateway's MAX_IMAGE_PIXELS
    when an operator raised it (read here because cv2 must have it before the settings are parsed)."""
    raised = environ.get("MAX_IMAGE_PIXELS", "")
    return max(DEFAULT_MAX_PIXELS, int(raised)) if raised.isdigit() else DEFAULT_MAX_PIXELS


# The limit a decode applies when its caller names none (the stages): the gateway's raised
# MAX_IMAGE_PIXELS too, so a photo the gateway accepts is not refused by a stage.
PROCESS_MAX_PIXELS = opencv_pixel_limit(os.environ)

os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(opencv_pixel_limit(os.environ)))
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_WIDTH", str(MAX_SIDE))
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_HEIGHT", str(MAX_SIDE))
