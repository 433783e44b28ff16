"""Line segments placed to a fraction of a pixel on the photo's own edges.

The line segment detector places a segment from the rectangle of pixels whose gradients agree: its
position and angle carry a few tenths of a pixel of noise, more on short segments and on the
reduced copy a large photo is searched on. A vanishing point far off is fixed by the lines'
slight convergence, which that noise swamps (a facade's horizontal joints put its plane 1.6° off).

Each segment is therefore re-fitted on the full-size photo: across it, every second pixel along
its length, the brightness profile (lightly smoothed) is read at half-pixel steps, and the edge
placed where it changes fastest in the segment's own polarity (a parabola through the steepest
step and its neighbours); a robust line through those places replaces the segment's. A segment
whose profile finds no edge, or whose line would move it further than the detector's error
(another edge nearby), is left as detected.
"""

from __future__ import annotations

import cv2
import numpy as np

from renderkit.imaging import srgb_to_linear

# The smoothing before the profiles are read (pixels): enough to steady a JPEG's blocks and the
# sensor's noise, little enough to keep the two sides of a thin joint apart.
_SMOOTHING = 0.7
# The profile reaches this far either side of the detected line (pixels), in half-pixel steps.
_REACH = 2.0
_STEP_ACROSS = 0.5
# Profiles are read this far apart along the segment (pixels), from a pixel inside either end.
_STEP_ALONG = 2.0
# A re-fitted end further than this from the detected one found another edge: the segment stays.
_MAX_SHIFT = 2.5
_MIN_SAMPLES = 3
# cv2.remap reads images and maps under 32,767 px a side: the largest side of the photo's part read
# at once, and the rows of samples read in one call.
_MAX_PART = 32000
_BLOCK_ROWS = 16384


def refine_segments(photo_bgr: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """The segments (N, 4: x1, y1, x2, y2 in photo pixels, centres on integers) re-fitted to the
    photo's edges (a new float64 array; segments without a clear edge unchanged)."""
    refined = segments.astype(np.float64, copy=True)
    if len(segments) == 0:
        return refined
    # Only the part of the photo the profiles read (with the smoothing's and the gradient's reach).
    height, width = photo_bgr.shape[:2]
    margin = _REACH + _MAX_SHIFT + 4 * _SMOOTHING + 2
    x0, y0 = (max(0, int(np.floor(segments[:, [k, k + 2]].min() - margin))) for k in (0, 1))
    x1 = min(width, int(np.ceil(segments[:, [0, 2]].max() + margin)) + 1)
    y1 = min(height, int(np.ceil(segments[:, [1, 3]].max() + margin)) + 1)
    if x1 <= x0 or y1 <= y0:
        return refined
    if max(x1 - x0, y1 - y0) > _MAX_PART:
        # cv2.remap reads images under 32,767 px a side (a panorama may be 65,500 wide): the
        # segments are split across the longer side until each part's box fits; a single segment
        # longer than that stays as detected.
        if len(segments) == 1:
            return refined
        axis = 0 if x1 - x0 >= y1 - y0 else 1
        middle = (segments[:, axis] + segments[:, axis + 2]) / 2
        order = np.argsort(middle, kind="stable")
        half = len(order) // 2
        for part in (order[:half], order[half:]):
            refined[part] = refine_segments(photo_bgr, segments[part])
        return refined
    # In linear light: the lens blurs the scene's light, so an edge lies where the blurred light
    # changes fastest; in sRGB that place moves towards the dark side by a fraction of the blur.
    grey = srgb_to_linear(cv2.cvtColor(photo_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)[..., None]).reshape(
        y1 - y0, x1 - x0
    )
    cv2.GaussianBlur(grey, (0, 0), _SMOOTHING, dst=grey)

    start, end = segments[:, :2] - (x0, y0), segments[:, 2:] - (x0, y0)
    length = np.linalg.norm(end - start, axis=1)
    along = (end - start) / np.maximum(length, 1e-9)[:, None]
    normal = np.column_stack([-along[:, 1], along[:, 0]])
    # Samples along each segment: t = 1, 3, 5, ... short of its far end.
    counts = np.maximum(0, np.ceil((length - 2.0) / _STEP_ALONG)).astype(np.intp)
    owner = np.repeat(np.arange(len(segments)), counts)
    if owner.size == 0:
        return refined
    first = np.cumsum(counts) - counts
    t = 1.0 + _STEP_ALONG * (np.arange(owner.size) - first[owner])
    # The brightness's slope across the segment, at half-pixel steps either side of it.
    offsets = np.arange(-_REACH, _REACH + _STEP_ACROSS / 2, _STEP_ACROSS)
    centre = start[owner] + t[:, None] * along[owner]
    xs = centre[:, None, 0] + offsets[None, :] * normal[owner, None, 0]
    ys = centre[:, None, 1] + offsets[None, :] * normal[owner, None, 1]
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    slope = _read(gx, xs, ys) * normal[owner, None, 0].astype(np.float32)
    slope += _read(gy, xs, ys) * normal[owner, None, 1].astype(np.float32)
    del gx, gy
    middle = slope.shape[1] // 2
    # The edge's polarity: the sign of the slope on the detected line, by the segment's median.
    polarity = np.sign(_group_medians(slope[:, middle], owner, len(segments)))
    slope *= polarity[owner][:, None]
    k = np.argmax(slope, axis=1)
    inside = (k > 0) & (k < slope.shape[1] - 1) & (polarity[owner] != 0)
    rows = np.flatnonzero(inside)
    kk = k[rows]
    below, peak, above = slope[rows, kk - 1], slope[rows, kk], slope[rows, kk + 1]
    curvature = below - 2 * peak + above
    sub = np.where(curvature < 0, 0.5 * (below - above) / np.where(curvature < 0, curvature, -1.0), 0.0)
    place = (kk - middle + sub) * _STEP_ACROSS
    who, ts, weight = owner[rows], t[rows], np.maximum(peak, 0.0).astype(np.float64)
    p, q, ok = _robust_lines(who, ts, place, weight, len(segments))
    shift_start, shift_end = p, p + q * length
    ok &= (np.abs(shift_start) <= _MAX_SHIFT) & (np.abs(shift_end) <= _MAX_SHIFT)
    refined[ok, :2] = start[ok] + shift_start[ok, None] * normal[ok] + (x0, y0)
    refined[ok, 2:] = end[ok] + shift_end[ok, None] * normal[ok] + (x0, y0)
    return refined


def _read(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The image interpolated at (xs, ys) (float arrays of one shape (n, m)), in blocks of rows
    cv2.remap takes (fewer than 32,767)."""
    out = np.empty(xs.shape, np.float32)
    for top in range(0, xs.shape[0], _BLOCK_ROWS):
        rows = slice(top, top + _BLOCK_ROWS)
        out[rows] = cv2.remap(
            image,
            xs[rows].astype(np.float32),
            ys[rows].astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
    return out


def _group_medians(values: np.ndarray, groups: np.ndarray, count: int) -> np.ndarray:
    """The median of values per group (0 for a group without values)."""
    medians = np.zeros(count, np.float64)
    if values.size == 0:
        return medians
    order = np.lexsort((values, groups))
    values, groups = values[order], groups[order]
    sizes = np.bincount(groups, minlength=count)
    starts = np.cumsum(sizes) - sizes
    has = sizes > 0
    lower = starts[has] + (sizes[has] - 1) // 2
    upper = starts[has] + sizes[has] // 2
    medians[has] = 0.5 * (values[lower] + values[upper])
    return medians


def _robust_lines(
    who: np.ndarray, t: np.ndarray, place: np.ndarray, weight: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per segment, the line place = p + q t fitted by weighted least squares, three times, each
    time without the places over three robust deviations from the last line: (p, q, fitted)."""
    p, q = np.zeros(count), np.zeros(count)
    keep = weight > 0
    fitted = np.zeros(count, bool)
    for _ in range(3):
        w = np.where(keep, weight, 0.0)
        sums = [np.bincount(who, weights=w * v, minlength=count) for v in (np.ones_like(t), t, t * t, place, t * place)]
        s0, st, stt, sp, stp = sums
        det = s0 * stt - st * st
        counted = np.bincount(who, weights=keep.astype(np.float64), minlength=count)
        fitted = (counted >= _MIN_SAMPLES) & (det > 1e-9 * np.maximum(s0 * stt, 1e-300))
        safe = np.where(fitted, det, 1.0)
        p = np.where(fitted, (stt * sp - st * stp) / safe, 0.0)
        q = np.where(fitted, (s0 * stp - st * sp) / safe, 0.0)
        residual = place - (p[who] + q[who] * t)
        spread = 1.4826 * _group_medians(np.abs(residual), who, count) + 0.05
        keep = (weight > 0) & (np.abs(residual) <= 3.0 * spread[who])
    return p, q, fitted
