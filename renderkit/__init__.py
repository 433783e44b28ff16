"""Shared building blocks of the render pipeline: serving, imaging, storage, geometry, Triton."""

# First, before any module can load cv2: OpenCV reads its decode limits from the environment then.
from renderkit import decode_limits as decode_limits
